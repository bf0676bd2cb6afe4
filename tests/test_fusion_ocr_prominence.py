"""OCR text features weighted by line prominence: the product's own label over the shelf behind it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from skutag.fusion.config import FusionConfig
from skutag.fusion.evidence import Evidence, OcrEvidence
from skutag.fusion.features import EvidenceFeaturizer
from skutag.catalog_io import row_to_product
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from fusion_fixtures import grocery_rows

MEDIUM, STANDARD = "MELLANMJÖLK", "STANDARDMJÖLK"


def _ocr(*lines: tuple[str, float]) -> Evidence:
    return Evidence(id="x", ocr=OcrEvidence(lines=tuple((text, 0.95) for text, _ in lines),
                                            prominence=tuple(p for _, p in lines)))


def _featurizer(weighting: str) -> EvidenceFeaturizer:
    training = [_ocr((MEDIUM, 0.9), ("FÄRSK", 0.5)), _ocr((STANDARD, 0.9), ("FÄRSK", 0.5)),
                _ocr((MEDIUM, 0.8)), _ocr((STANDARD, 0.8))]
    return EvidenceFeaturizer(modalities=("ocr",), ocr_text_weighting=weighting).fit(training)


def _similarity(featurizer: EvidenceFeaturizer, a: Evidence, b: Evidence) -> float:
    x = featurizer.transform([a, b]).toarray()
    return float(x[0] @ x[1] / (np.linalg.norm(x[0]) * np.linalg.norm(x[1])))


def test_collected_ocr_evidence_has_a_prominence_for_every_line():
    rows = grocery_rows("val", classes=("Arla-Medium-Fat-Milk", "Arla-Standard-Milk"), per_class=3)
    products = [row_to_product(row, i) for i, row in enumerate(rows)]
    evidence = EvidenceCollector(SkutagConfig.load(environ={})).collect(products, ocr=True)
    read = [e.ocr for e in evidence if e.ocr is not None and e.ocr.lines]
    assert len(read) >= 4  # milk cartons: text on every one of them in practice
    for ocr in read:
        assert len(ocr.prominence) == len(ocr.lines)
        assert all(0.0 <= p <= 1.0 for p in ocr.prominence)
        assert max(ocr.prominence) >= 0.5  # the largest text of a photo counts fully for its size


def test_the_large_central_line_decides_not_the_neighbours_small_text():
    shelf_photo = _ocr((MEDIUM, 0.95), (STANDARD, 0.35))  # our carton up front, the neighbour's at the edge
    medium, standard = _ocr((MEDIUM, 0.9)), _ocr((STANDARD, 0.9))
    weighted, flat = _featurizer("prominence"), _featurizer("flat")

    def lead(featurizer):  # how much closer the photo is to the medium-fat carton than to the standard one
        return _similarity(featurizer, shelf_photo, medium) - _similarity(featurizer, shelf_photo, standard)

    assert lead(weighted) > 0.25
    assert abs(lead(flat)) < 0.05  # flat text cannot tell which carton the photo shows


def test_one_line_or_no_recorded_prominence_reads_as_flat_text():
    weighted, flat = _featurizer("prominence"), _featurizer("flat")
    one_line = [_ocr((MEDIUM, 0.3)), _ocr(("FÄRSK", 0.9))]
    assert np.allclose(weighted.transform(one_line).toarray(), flat.transform(one_line).toarray())
    unrecorded = [Evidence(id="u", ocr=OcrEvidence(lines=((MEDIUM, 0.9), ("FÄRSK", 0.9))))]
    recorded_equal = [_ocr((MEDIUM, 0.7), ("FÄRSK", 0.7))]
    assert np.allclose(weighted.transform(unrecorded).toarray(), weighted.transform(recorded_equal).toarray())
    with pytest.raises(ValueError, match="ocr_text_weighting"):
        EvidenceFeaturizer(modalities=("ocr",), ocr_text_weighting="loudest").fit([_ocr((MEDIUM, 1.0))] * 2)


def test_bundles_trained_before_the_setting_keep_flat_text():
    """A format-1 featurizer pickled before the setting existed is brought up by the bundle migration
    (skutag.fusion.migrate) as what it was trained as: flat OCR text."""
    from skutag.fusion.migrate import upgrade_manifest, upgrade_object
    from skutag.training import _config_from_manifest

    fitted = _featurizer("prominence")
    old = pickle.loads(pickle.dumps(fitted))  # as pickled before the setting: neither object has it
    del old.parts_["ocr"].weighting
    del old.__dict__["ocr_text_weighting"]
    old = upgrade_object(pickle.loads(pickle.dumps(old)), file_format=1)
    assert old.get_params()["ocr_text_weighting"] == "flat"
    shelf_photo = [_ocr((MEDIUM, 0.95), (STANDARD, 0.35))]
    flat = _featurizer("flat")
    assert np.allclose(old.transform(shelf_photo).toarray(), flat.transform(shelf_photo).toarray())
    assert not np.allclose(fitted.transform(shelf_photo).toarray(), flat.transform(shelf_photo).toarray())

    config = SkutagConfig.load(environ={})
    assert config.fusion.ocr_text_weighting == FusionConfig().ocr_text_weighting == "prominence"
    parent_before = upgrade_manifest({"format": 1, "config": {"fusion": {"modalities": ["vision", "ocr"]}}})
    assert _config_from_manifest(config, parent_before).fusion.ocr_text_weighting == "flat"
    parent_after = {"config": {"fusion": {"modalities": ["vision", "ocr"], "ocr_text_weighting": "prominence"}}}
    assert _config_from_manifest(config, parent_after).fusion.ocr_text_weighting == "prominence"
