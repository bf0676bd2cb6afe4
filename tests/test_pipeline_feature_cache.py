"""Per-image stage outputs are cached by content hash and reused across runs (train/eval/retrain)."""

from __future__ import annotations

import numpy as np

from skutag.catalog import Product
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from skutag.feature_cache import FeatureCache
from conftest import shared_path


def test_cache_round_trip_survives_a_new_instance(tmp_path):
    cache = FeatureCache("vision", "m/1.0+x", root=tmp_path)
    assert len(cache) == 0 and cache.get_many(["a"]) == {}
    cache.put_many({"a": ({"labels": [["水瓶", 898, 0.9]]}, b"\x00\x01"), "b": ({"error": "bad"}, None)})
    again = FeatureCache("vision", "m/1.0+x", root=tmp_path)
    assert len(again) == 2 and again.get_many(["a", "b", "c"]) == {
        "a": ({"labels": [["水瓶", 898, 0.9]]}, b"\x00\x01"), "b": ({"error": "bad"}, None)}


def test_second_collection_reads_the_cache_not_the_models(tmp_path, monkeypatch):
    monkeypatch.setenv("SKUTAG_HOME", str(tmp_path))
    photos = sorted(shared_path("cn_bottles", "images").glob("*.jpg"))[:3]
    products = [Product(id=p.stem, image=str(p)) for p in photos]
    # same bytes under another id: computed once
    products.append(Product(id="copy", image=photos[0].read_bytes()))
    config = SkutagConfig.load(environ={})
    first = EvidenceCollector(config)
    evidence = first.collect(products, ocr=True)
    assert first.stats["vision_run"] == 3 and first.stats["ocr_run"] == 3
    second = EvidenceCollector(config)
    again = second.collect(products, ocr=True)
    assert {k: second.stats[k] for k in ("vision_run", "vision_cached", "ocr_run", "ocr_cached")} == {
        "vision_run": 0, "vision_cached": 4, "ocr_run": 0, "ocr_cached": 4}
    for a, b in zip(evidence, again):
        assert a.vision.labels == b.vision.labels and np.array_equal(a.vision.embedding, b.vision.embedding)
        assert a.ocr == b.ocr
    assert np.array_equal(again[0].vision.embedding, again[3].vision.embedding)
