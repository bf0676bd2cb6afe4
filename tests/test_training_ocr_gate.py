"""Training reads OCR for the photos the train gate picks (``fusion.ocr_train_gate``), on real GroceryStore
photos: two branded milks that differ only in the print, and two fruits."""

from __future__ import annotations

import numpy as np
import pytest

from skutag.config import SkutagConfig
from skutag.fusion import bundle as bundles
from skutag.fusion.train_gate import gates_training_ocr, sample_rows
from fusion_fixtures import grocery_rows, write_catalog

pytestmark = pytest.mark.slow

MILKS = ("Arla-Standard-Milk", "Arla-Medium-Fat-Milk")


def config(**overrides) -> SkutagConfig:
    return SkutagConfig.load(environ={}, overrides={"vision.threads": 2, "fusion.modalities": ("vision", "ocr"),
                                                     "fusion.cv": 3, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The same 32 training photos trained with each train gate: (summary, training rows kept in the bundle)."""
    from skutag.training import train_catalog

    root = tmp_path_factory.mktemp("train-gate")
    rows = grocery_rows("train", per_class=8)
    catalog = write_catalog(root / "train.jsonl", rows)
    out = {}
    for mode in ("auto", "all"):
        version, summary, _ = train_catalog(catalog, root / mode, config(**{"fusion.ocr_train_gate": mode}))
        out[mode] = (summary, bundles.load_training(version), rows)
    return out


def test_auto_reads_every_branded_photo_and_leaves_easy_unbranded_ones(trained):
    summary, training, rows = trained["auto"]
    record = summary["ocr_read"]
    read = np.array([ev.ocr is not None for ev in training.evidence])
    milk = np.array([any(m in row["category"] for m in MILKS) for row in rows])
    assert record["mode"] == "auto" and record["photos"] == len(rows) == 32
    assert record["read"] == int(read.sum()) < len(rows)
    assert read[milk].all()  # branded in the catalog: the print tells the two milks apart
    assert record["branded_classes"] == 2 and record["branded_rows"] == int(milk.sum())
    sample = sample_rows(len(rows), 0.25, 0)
    assert read[sample].all()  # the random sample is read whatever vision says
    assert (~read[~milk & ~sample]).any()  # some fruit photos vision is sure of go unread


def test_all_reads_every_photo(trained):
    summary, training, _ = trained["all"]
    assert summary["ocr_read"] == {"mode": "all"}
    assert all(ev.ocr is not None for ev in training.evidence)


def test_the_gate_applies_only_to_models_read_through_the_auto_gate():
    assert gates_training_ocr(config().fusion)
    assert not gates_training_ocr(config(**{"fusion.ocr_gate": "always"}).fusion)
    assert not gates_training_ocr(config(**{"fusion.modalities": ("ocr", "title")}).fusion)
    assert not gates_training_ocr(config(**{"fusion.ocr_train_gate": "all"}).fusion)


@pytest.mark.parametrize("key,value,message", [
    ("fusion.ocr_train_gate", "some", "must be 'auto' or 'all'"),
    ("fusion.ocr_train_sample", 1.5, "fusion.ocr_train_sample must be between 0 and 1"),
])
def test_bad_settings_are_named(key, value, message):
    with pytest.raises(ValueError, match=message):
        config(**{key: value})
