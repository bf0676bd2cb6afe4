"""`skutag train` with a fine-tuned vision tail (vision.tail): trained on out-of-fold fine-tuned
embeddings, kept in the bundle, run by serving, carried by retrain and calibrate; real GroceryStore photos."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_fixtures import tail_catalogs, tail_config, train_tail_bundle, write_catalog

pytestmark = pytest.mark.slow

_config = tail_config


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory):
    return tail_catalogs(tmp_path_factory.mktemp("tail-catalogs"))


@pytest.fixture(scope="module")
def trained(catalogs, tmp_path_factory):
    return train_tail_bundle(catalogs["train"], tmp_path_factory.mktemp("tail-model") / "shop")


def _products(rows):
    from skutag.catalog import Product

    return [Product(id=r["id"], image=r["image"], title=r["title"], category=r["category"]) for r in rows]


def _frozen_embeddings(products):
    from skutag.evidence import EvidenceCollector

    collector = EvidenceCollector(_config(), use_cache=False)
    return np.stack([ev.embedding for ev, _ in collector.vision(collector.photos(products, ocr=False))])


def test_the_bundle_keeps_the_tail_and_the_fusion_model_learned_out_of_fold_embeddings(trained, catalogs):
    from skutag.fusion import bundle as bundles

    version, summary = trained
    tail = bundles.load_tail(version)
    record = version.manifest()["stages"]["vision"]["tail"]
    assert record["digest"] == tail.digest and summary["vision_tail"]["digest"] == tail.digest
    assert (record["cut"], record["folds"], record["train_views"], record["rows"]) == ("5.1", 2, 3, 24)
    assert list(tail.views) == ["center", "flip", "full"] == record["serving_views"]  # vision.tail_full_view

    training = bundles.load_training(version)
    stored = np.stack([ev.vision.embedding for ev in training.evidence])
    products = _products(catalogs["train_rows"])
    assert training.ids == [p.id for p in products]
    final = np.stack(tail.embed([p.image for p in products]))
    frozen = _frozen_embeddings(products)
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-4)
    # out-of-fold: neither the frozen backbone's embedding nor the final tail's (which saw these rows)
    assert np.abs(stored - frozen).max(axis=1).min() > 1e-3
    assert np.abs(stored - final).max(axis=1).min() > 1e-3


def test_serving_runs_the_bundles_tail_and_caches_its_embeddings(trained, catalogs):
    from skutag.fusion import bundle as bundles
    from skutag.pipeline import load_pipeline

    version, _ = trained
    config = _config(**{"vision.tail": False})  # serving follows the bundle, not the training flag
    pipeline = load_pipeline(config, version.store)
    assert pipeline.collector.tail is not None and pipeline.collector.tail.digest == bundles.load_tail(version).digest
    products = _products(catalogs["val_rows"])
    evidence = pipeline.gather(products, ocr_gate="never")
    expected = np.stack(pipeline.collector.tail.embed([p.image for p in products]))
    assert np.allclose(np.stack([ev.vision.embedding for ev in evidence]), expected, atol=1e-5)
    assert not np.allclose(expected, _frozen_embeddings(products), atol=1e-2)

    results = pipeline.tag_evidence(evidence, audit=False)
    correct = sum(r.path == p.category for r, p in zip(results, products))
    assert correct >= 9, [(r.path, p.category) for r, p in zip(results, products)]

    again = load_pipeline(config, version.store)
    again.gather(products, ocr_gate="never")
    assert again.collector.stats["tail_cached"] == len(products) and again.collector.stats["tail_run"] == 0


def test_one_pass_of_the_frozen_part_gives_the_plain_labels_and_the_tuned_embedding(trained, catalogs):
    from dataclasses import replace
    from types import SimpleNamespace

    from skutag.fusion import bundle as bundles
    from skutag.vision import load_model

    version, _ = trained
    tail = bundles.load_tail(version)
    model = load_model("efficientnet-lite0", runtime="onnx", threads=2)
    photos = [r["image"] for r in catalogs["val_rows"][:6]] + [b"not a photo"]
    assert tail.serves_labels_of(model)
    results, tuned = tail.label_and_embed(model, photos, top_k=5, batch_size=4)
    alone = model.predict(photos, top_k=5, batch_size=4)
    for joint, plain in zip(results[:-1], alone[:-1]):
        assert joint.top_k[0].index == plain.top_k[0].index
        assert np.allclose([s.prob for s in joint.top_k], [s.prob for s in plain.top_k], atol=1e-4)
        assert np.allclose(joint.embedding, plain.embedding, atol=1e-4)
    assert results[-1].error == alone[-1].error and results[-1].error and tuned[-1] is None
    assert np.allclose(np.stack(tuned[:-1]), np.stack(tail.embed(photos[:-1])), atol=1e-5)
    # the whole photo (cut from the same decode) is averaged in; without it the graph gives other embeddings
    assert "full" in tail.views
    cropped_only = replace(tail, views=("center", "flip"))
    _, cropped = cropped_only.label_and_embed(model, photos[:4], top_k=5, batch_size=4)
    assert np.allclose(np.stack(cropped), np.stack(cropped_only.embed(photos[:4])), atol=1e-5)
    assert np.abs(np.stack(cropped) - np.stack(tuned[:4])).max() > 1e-3
    with pytest.raises(ValueError, match="deterministic"):  # random views: not served
        replace(tail, views=("center", "aug0"))
    # labels from another network or the INT8 export cannot come from the tail's graph
    assert not tail.serves_labels_of(load_model("efficientnet-lite0", runtime="torch", threads=2))
    like = dict(runtime="onnx", int8=False, model_id=model.model_id, model_version=model.model_version)
    assert tail.serves_labels_of(SimpleNamespace(**like))
    assert not tail.serves_labels_of(SimpleNamespace(**{**like, "int8": True}))
    assert not tail.serves_labels_of(SimpleNamespace(**{**like, "model_id": "efficientnet-lite2"}))


def test_int8_serving_runs_quantized_copies_of_the_tails_graphs_with_close_answers(trained, catalogs):
    import onnx

    from skutag.fusion import bundle as bundles
    from skutag.pipeline import load_pipeline

    version, _ = trained
    products = _products(catalogs["val_rows"])
    uncached = {"fusion.cache_features": False}  # every answer below is computed here, none read back
    fp32 = load_pipeline(_config(**uncached), version.store)
    fp32_evidence = fp32.gather(products, ocr_gate="never")
    quantized = load_pipeline(_config(**uncached, **{"vision.int8": True}), version.store)
    evidence = quantized.gather(products, ocr_gate="never")
    tail, stats = quantized.collector.tail, quantized.collector.stats
    # the quantized graph gave the labels and the tuned embedding in one pass
    assert tail.int8 and tail.serves_labels_of(quantized.collector.vision_model)
    assert stats["vision_run"] == len(products) and stats["tail_run"] == len(products)
    assert set(tail._sessions) == {("onnx", tail.precision)}
    graph = tail.int8_file()
    assert graph.name.endswith(f".{tail.precision}.onnx") and tail.precision.startswith("int8-")
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(str(graph)).graph.node}
    served = np.stack([ev.vision.embedding for ev in evidence])
    reference = np.stack([ev.vision.embedding for ev in fp32_evidence])
    cosine = np.sum(served * reference, axis=1)
    assert cosine.min() > 0.95 and np.abs(served - reference).max() > 1e-4, cosine
    assert np.allclose(served, np.stack(tail.embed([p.image for p in products])), atol=1e-5)
    # the tail graph's labels stand in for the INT8 backbone's own (quantized apart: close, not equal)
    alone = quantized.collector.vision_model.predict([p.image for p in products], top_k=5)
    joint = [ev.vision.labels[0][1] for ev in evidence]
    assert sum(a.top_k[0].index == j for a, j in zip(alone, joint)) >= len(products) - 1

    results = quantized.tag_evidence(evidence, audit=False)
    references = fp32.tag_evidence(fp32_evidence, audit=False)
    assert sum(r.path == p.category for r, p in zip(results, products)) >= 9
    assert sum(r.path == f.path for r, f in zip(results, references)) >= len(products) - 2
    # an fp32 tail does not stand in for an INT8 backbone, nor the other way round; a saved tail is fp32
    assert not bundles.load_tail(version).serves_labels_of(quantized.collector.vision_model)
    assert not tail.serves_labels_of(fp32.collector.vision_model)
    from copy import copy

    assert copy(tail).int8 is False and copy(tail).calibration_dir == ""


def test_training_again_with_other_fusion_settings_reuses_the_fitted_tail(trained, catalogs, tmp_path):
    from skutag.fusion import bundle as bundles
    from skutag.training import train_catalog

    version, _ = trained
    again, summary, _ = train_catalog(catalogs["train"], tmp_path / "again", _config(**{"fusion.cv": 2}))
    assert bundles.load_tail(again).digest == bundles.load_tail(version).digest
    first_rows = [ev.vision.embedding for ev in bundles.load_training(version).evidence]
    assert np.array_equal(np.stack(first_rows), np.stack([ev.vision.embedding for ev in bundles.load_training(again).evidence]))
    other, _, _ = train_catalog(catalogs["train"], tmp_path / "other", _config(**{"vision.tail_epochs": 2}))
    assert bundles.load_tail(other).digest != bundles.load_tail(version).digest


def test_retrain_and_calibrate_keep_the_parents_tail(trained, catalogs, tmp_path):
    from skutag.fusion import bundle as bundles
    from skutag.training import calibrate_bundle, retrain_bundle
    from skutag.vision.runtime import resolve_runtime, tail_runtime

    version, _ = trained
    tail = bundles.load_tail(version)
    corrections = write_catalog(tmp_path / "corrections.jsonl", catalogs["val_rows"][:4])
    retrained, summary, _ = retrain_bundle(version.store, corrections, tmp_path / "retrained", _config())
    assert bundles.load_tail(retrained).digest == tail.digest
    carried = retrained.manifest()["stages"]["vision"]["tail"]
    assert carried["carried_from"] == version.name and carried["digest"] == tail.digest
    training = bundles.load_training(retrained)
    new_rows = [training.ids.index(r["id"]) for r in catalogs["val_rows"][:4]]
    tail.runtime = tail_runtime(resolve_runtime(_config().vision.runtime, one_graph_tail=True))  # where retraining ran it
    expected = np.stack(tail.embed([r["image"] for r in catalogs["val_rows"][:4]]))
    assert np.allclose(np.stack([training.evidence[i].vision.embedding for i in new_rows]), expected, atol=1e-5)

    calibrated, _, _ = calibrate_bundle(retrained.path, catalogs["val"], tmp_path / "calibrated", _config())
    assert bundles.load_tail(calibrated).digest == tail.digest
    assert calibrated.manifest()["stages"]["vision"]["tail"]["digest"] == tail.digest


def test_cut_activations_are_cached_per_photo_and_view_whatever_the_order(catalogs, tmp_path, monkeypatch):
    import functools

    import skutag.tail_training
    from skutag.evidence import EvidenceCollector, load_image_bytes
    from skutag.feature_cache import FeatureCache
    from skutag.tail_training import cut_activations

    monkeypatch.setattr(skutag.tail_training, "FeatureCache", functools.partial(FeatureCache, root=tmp_path))
    images = [load_image_bytes(r["image"]) for r in catalogs["train_rows"][:3]]
    first = EvidenceCollector(_config())
    acts = cut_activations(first, images, ["center", "aug0"], "5.1")
    assert acts["aug0"].shape == (3, 192, 7, 7) and first.stats["cut_run"] == 3
    second = EvidenceCollector(_config())
    backwards = cut_activations(second, images[::-1], ["center", "aug0"], "5.1")
    assert second.stats["cut_run"] == 0 and second.stats["cut_cached"] == 3
    assert np.array_equal(backwards["aug0"], acts["aug0"][::-1])
    fresh = cut_activations(EvidenceCollector(_config(), use_cache=False), images[::-1], ["aug0"], "5.1")
    assert np.array_equal(fresh["aug0"], acts["aug0"][::-1]), "a photo's random view depends on the photo only"


def test_a_backbone_without_blocks_to_tune_is_refused_with_the_setting_to_change():
    from skutag.vision.tail import default_cut

    assert default_cut("efficientnet-lite2") == "5.2"
    with pytest.raises(ValueError, match="vision.tail"):
        default_cut("wwts")
