"""FusionModel on real evidence (GroceryStore photos through the vision and OCR stages, Swedish titles)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from skutag.fusion.config import FusionConfig
from skutag.fusion.evidence import Evidence, OcrEvidence, VisionEvidence
from skutag.fusion.gate import GateThresholds, fit_gate, gate_reads
from skutag.fusion.migrate import upgrade_object
from skutag.fusion.model import FusionModel
from skutag.catalog_io import row_to_product
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from fusion_fixtures import grocery_rows


@pytest.fixture(scope="module")
def evidence():
    collector = EvidenceCollector(SkutagConfig.load(environ={}))
    out = {}
    for split, per_class in (("train", 8), ("val", 3)):
        products = [row_to_product(r, i) for i, r in enumerate(grocery_rows(split, per_class=per_class))]
        out[split] = (collector.collect(products, ocr=True), [p.category for p in products], [p.brand for p in products])
    return out


def test_fused_model_tags_photos_and_explains_itself(evidence):
    train, paths, brands = evidence["train"]
    model = FusionModel(FusionConfig(cv=3)).fit(train, paths, brands)
    assert model.modalities_ == ["vision", "ocr", "title"]  # no prices in this data set
    val, val_paths, _ = evidence["val"]
    scores = model.score(val)
    predicted, confidence = scores.best()
    assert (predicted == np.asarray(val_paths, dtype=object)).mean() >= 0.9
    assert np.allclose(scores.proba.sum(axis=1), 1.0) and np.all((confidence > 0) & (confidence <= 1))
    for ev, shares in zip(val, scores.contributions):  # Granny Smith has no shop title in this data set
        assert set(shares) == set(ev.modalities) and sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    # milk cartons that differ by print are brand-sensitive; fruit is not
    sensitive = dict(zip(model.classes_, model.brand_sensitive_))
    assert sensitive["Packages > Milk > Arla-Standard-Milk"] and not sensitive["Fruit > Banana > Banana"]


def test_missing_modalities_still_tag_and_gating_reads_only_where_it_matters(evidence):
    train, paths, brands = evidence["train"]
    model = FusionModel(FusionConfig(cv=3)).fit([e.without("title") for e in train], paths, brands)
    assert "title" not in model.modalities_ and model.gate_ is None
    val, val_paths, _ = evidence["val"]
    photo_only = [e.without("ocr") for e in val]
    scores = model.score(photo_only)
    fruit = np.array(["Fruit" in p for p in val_paths])
    predicted, _ = scores.best()
    assert (predicted[fruit] == np.asarray(val_paths, dtype=object)[fruit]).all()
    assert all(set(c) == {"vision"} for c in scores.contributions)
    need = model.needs_ocr(scores)
    assert need.sum() < len(val)  # some answers cannot change: OCR skipped there
    assert not need[fruit & (scores.proba.max(axis=1) >= 0.9)].any()
    # a brand-sensitive leading candidate is read below ocr_gate_brand_confidence, however sure vision is
    leader = scores.proba.argmax(axis=1)
    branded = model.brand_sensitive_[leader] & (scores.proba.max(axis=1) >= 0.02)
    model.config = replace(model.config, ocr_gate_brand_confidence=1.01)
    strict = model.needs_ocr(scores)
    assert strict[branded].all() and branded.any()
    model.config = replace(model.config, ocr_gate_brand_confidence=0.0)
    off = model.needs_ocr(scores)
    assert (off <= need).all() and (need <= strict).all() and off.sum() < strict.sum()
    title_only = [Evidence(id=e.id, title="Banana Ecological Class 1") for e in val[:2]]
    assert model.score(title_only).proba.shape == (2, len(model.classes_))  # no usable block: the prior


def test_the_fitted_gate_reads_fewer_photos_and_every_one_the_text_fixed(evidence):
    """Fitted on the model's own out-of-fold answers without and with OCR: thresholds at most the configured
    ones, fewer training rows read, none of the configured pair's fixes lost; on unseen photos it reads a subset
    of what the configured thresholds read. Off (the default), the configured pair serves."""
    train, paths, brands = evidence["train"]
    photos = [e.without("title") for e in train]
    model = FusionModel(FusionConfig(cv=3, ocr_gate_fit=True)).fit(photos, paths, brands)
    gate, configured = model.gate_, model.configured_gate
    assert gate is not None and model.gate_thresholds == gate
    assert gate.confidence <= configured.confidence and gate.brand_confidence <= configured.brand_confidence
    assert gate.read_share <= gate.configured_read_share
    # the candidates it was fitted on are the model's own answers without OCR: right about as often as a
    # model fitted without any OCR at all, out of fold
    top_classes, top_proba = model.tagger_.oof_without_
    truth = np.asarray(paths, dtype=object)
    right_without = model.classes_[top_classes[:, 0]] == truth
    without_ocr = FusionModel(FusionConfig(cv=3, modalities=("vision",))).fit(photos, paths, brands)
    assert abs(right_without.mean() - (without_ocr.oof_[0] == truth).mean()) < 0.1
    assert np.all(np.diff(top_proba, axis=1) <= 0) and model.summary()["ocr_gate"]["confidence"] == gate.confidence
    # every training row the text fixed that the configured pair read, the fitted pair reads
    fixed = (model.tagger_.oof_predictions_ == truth) & ~right_without
    reads = [gate_reads(top_classes, top_proba, model.brand_sensitive_, g.confidence, g.brand_confidence)
             for g in (configured, gate)]
    assert not (fixed & reads[0] & ~reads[1]).any() and gate.fixes == (fixed & reads[0]).sum()
    val, val_paths, _ = evidence["val"]
    scores = model.score([e.without("title", "ocr") for e in val])
    fitted_reads = model.needs_ocr(scores)
    model.gate_ = None  # as a bundle written before the fit (format 4) reads
    assert (fitted_reads <= model.needs_ocr(scores)).all()
    assert FusionModel(FusionConfig(cv=3)).fit(photos, paths, brands).gate_ is None  # off by default
    # with a calibration set, fitted on its rows
    val_photos = [e.without("title") for e in val]
    calibrated = FusionModel(FusionConfig(cv=3, ocr_gate_fit=True)).fit(photos, paths, brands)
    calibrated.calibrate(val_photos, val_paths)
    on_val, calibrated.gate_ = calibrated.gate_, None
    read_configured = calibrated.needs_ocr(calibrated.score([e.without("ocr") for e in val_photos]))
    assert on_val.configured_read_share * len(val) == pytest.approx(read_configured.sum())
    assert on_val.confidence <= configured.confidence


def test_the_gate_fit_lowers_the_confidence_only_as_far_as_no_fix_is_lost():
    """Rows 0-4 (0.3-0.7): the text fixes them; rows 5-9 are sure and right either way. The fit keeps reading up
    to row 4 and no further; a text that fixes nothing is not read; a row the text spoils is no reason to skip
    one it fixes."""
    top_proba = np.array([[c, 1 - c] for c in (0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 0.9, 0.95, 0.97, 0.99)])
    top_classes = np.tile([0, 1], (10, 1))
    unbranded = np.zeros(2, dtype=bool)
    configured = GateThresholds(0.9, 0.98)
    everything = np.ones(10, dtype=bool)
    right_without = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=bool)
    fitted = fit_gate(top_classes, top_proba, right_without, everything, unbranded, configured)
    assert 0.7 < fitted.confidence <= 0.85 and fitted.fixes == 5
    assert fitted.read_share == 0.5 and fitted.configured_read_share == 0.6
    useless = fit_gate(top_classes, top_proba, everything, everything, unbranded, configured)
    assert useless.confidence == 0.5 and useless.read_share == 0.2  # the lowest it tries: 0.3 and 0.4 still read
    fixes_then_spoils = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype=bool)  # row 3 (0.6) fixed, row 4 (0.7) spoiled
    fitted = fit_gate(top_classes, top_proba, ~np.eye(10, dtype=bool)[3], fixes_then_spoils, unbranded, configured)
    assert 0.6 < fitted.confidence <= 0.7 and fitted.fixes == 1
    # brand-sensitive leaders: the brand confidence is fitted the same way
    branded = np.ones(2, dtype=bool)
    top_proba_sure = np.column_stack([top_proba[:, 0], np.full(10, 0.01)])
    fixed_at_95 = ~np.eye(10, dtype=bool)[7]
    fitted = fit_gate(top_classes, top_proba_sure, fixed_at_95, everything, branded, configured)
    assert 0.95 < fitted.brand_confidence <= 0.98 and fitted.fixes == 1


def test_a_model_pickled_before_the_fitted_gate_reads_by_its_configured_thresholds(evidence):
    train, paths, brands = evidence["train"]
    model = FusionModel(FusionConfig(cv=3, ocr_gate_fit=True)).fit([e.without("title") for e in train], paths, brands)
    for obj, names in ((model, ("gate_",)), (model.tagger_, ("oof_without", "oof_top_k", "oof_without_"))):
        for name in names:
            del obj.__dict__[name]
    upgrade_object(model, 4)
    assert model.gate_ is None and model.gate_thresholds == model.configured_gate
    assert model.tagger_.get_params()["oof_without"] is None and model.tagger_.oof_without_ is None


def test_featurizer_rejects_embeddings_of_another_backbone(evidence):
    train, paths, brands = evidence["train"]
    model = FusionModel(FusionConfig(cv=3, modalities=("vision",))).fit(train, paths)
    other = Evidence(id="x", vision=VisionEvidence(labels=(("水瓶", 898, 0.9),), embedding=np.ones(64, np.float32)))
    with pytest.raises(ValueError, match="another vision backbone"):
        model.score([other])
    with pytest.raises(ValueError, match="none of the modalities"):
        FusionModel(FusionConfig(modalities=("price",))).fit(train, paths)
    ocr_only = [Evidence(id=str(i), ocr=OcrEvidence(lines=(("ARLA", 0.9),))) for i in range(4)]
    fitted = FusionModel(FusionConfig(cv=2, modalities=("ocr",))).fit(ocr_only, ["a > b", "a > b", "a > c", "a > c"])
    assert fitted.modalities_ == ["ocr"]


def test_price_block_learns_price_ranges_and_missing_prices_fall_back():
    rng = np.random.RandomState(0)
    water = [Evidence(id=f"w{i}", price=float(p)) for i, p in enumerate(rng.uniform(1.5, 5, 30))]
    phones = [Evidence(id=f"p{i}", price=float(p)) for i, p in enumerate(rng.uniform(2000, 8000, 30))]
    paths = ["食品 > 饮料 > 饮用水"] * 30 + ["手机 > 手机通讯 > 手机"] * 30
    model = FusionModel(FusionConfig(cv=3)).fit(water + phones, paths)
    assert model.modalities_ == ["price"]
    scores = model.score([Evidence(id="a", price=2.5), Evidence(id="b", price=4999.0), Evidence(id="c", title="x")])
    predicted, confidence = scores.best()
    assert list(predicted[:2]) == ["食品 > 饮料 > 饮用水", "手机 > 手机通讯 > 手机"] and confidence[:2].min() > 0.8
    assert confidence[2] < 0.75 and scores.contributions[2] == {}  # no evidence: no confident answer


def test_a_model_trained_with_titles_is_less_sure_of_a_photo_without_one(evidence):
    """The shop titles name every product exactly: with one the model is sure, from the photo alone it is
    calibrated on how often the photo alone was right out of fold, and the OCR gate reads the package."""
    train, paths, brands = evidence["train"]
    model = FusionModel(FusionConfig(cv=3)).fit(train, paths, brands)
    val, val_paths, _ = evidence["val"]
    titled = [e for e in val if e.title]
    photo_only = [e.without("title", "ocr") for e in titled]
    sure = model.score(titled).proba.max(axis=1)
    unsure = model.score(photo_only).proba.max(axis=1)
    assert sure.min() > 0.95 and unsure.mean() < sure.mean() - 0.1
    assert model.needs_ocr(model.score(photo_only)).sum() > model.needs_ocr(model.score(titled)).sum()
