"""skutag.vision.tail: cut activations of real GroceryStore photos, a tail fine-tuned on them, and the
serving object exported from it."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
from sklearn.base import clone

from conftest import shared_path



@pytest.fixture(scope="module")
def grocery_rows() -> list[tuple[str, str]]:
    """4 train photos of each of 3 classes, and 1 val photo of each: (path, fine class)."""
    folder = shared_path("grocery")
    rows = list(csv.DictReader((folder / "manifest.csv").open(encoding="utf-8")))
    chosen = []
    for fine in ("Golden-Delicious", "Oatly-Oat-Milk", "Yoggi-Strawberry-Yoghurt"):
        train = [r for r in rows if r["fine"] == fine and r["split"] == "train"][:4]
        val = [r for r in rows if r["fine"] == fine and r["split"] == "val"][:1]
        assert len(train) == 4 and len(val) == 1, fine
        chosen += [(str(folder / r["image"]), fine, r["split"]) for r in train + val]
    return chosen


@pytest.fixture(scope="module")
def extractor():
    from skutag.vision.tail.train import CutExtractor

    return CutExtractor("efficientnet-lite0", cut="5.1")


@pytest.fixture(scope="module")
def train_views(extractor, grocery_rows):
    paths = [p for p, _, split in grocery_rows if split == "train"]
    return [extractor.transform(paths, view) for view in ("center", "flip", "aug0")]


@pytest.fixture(scope="module")
def train_labels(grocery_rows):
    return np.array([fine for _, fine, split in grocery_rows if split == "train"])


@pytest.fixture(scope="module")
def fitted(train_views, train_labels):
    from skutag.vision.tail.train import TailClassifier

    return TailClassifier("efficientnet-lite0", cut="5.1", epochs=4, batch_size=4).fit(train_views, train_labels)


def test_cut_activations_shape_and_views(extractor, grocery_rows):
    paths = [p for p, _, _ in grocery_rows[:2]]
    center = extractor.transform(paths, "center")
    assert center.shape == (2, 192, 7, 7) and center.dtype == np.float16
    again = extractor.transform(paths, "aug1")
    assert np.array_equal(again, extractor.transform(paths, "aug1")), "augmented views are seeded"
    assert not np.array_equal(again, extractor.transform(paths, "aug2"))
    with pytest.raises(ValueError, match="unknown view"):
        extractor.transform(paths, "rotate")


def test_onnx_runtime_activations_match_eager_torch(extractor, grocery_rows):
    from skutag.vision.tail.train import CutExtractor

    paths = [p for p, _, _ in grocery_rows[:4]]
    assert extractor.runtime == "onnx"
    eager = CutExtractor("efficientnet-lite0", cut="5.1", runtime="torch")
    keys = [str(k) for k in range(len(paths))]
    ours, reference = extractor.transform_views(paths, ["aug0"], keys)["aug0"], eager.transform_views(paths, ["aug0"], keys)["aug0"]
    assert np.abs(ours.astype(np.float32) - reference.astype(np.float32)).max() < 0.05  # a float16 step or two
    with pytest.raises(ValueError, match="runtime"):
        CutExtractor("efficientnet-lite0", runtime="tensorrt")


def test_untrained_tail_reproduces_the_backbone_embedding(extractor, grocery_rows):
    import torch

    from skutag import vision
    from skutag.vision.tail.network import build_tail
    from skutag.vision.tail.views import Cut

    paths = [p for p, _, _ in grocery_rows[:3]]
    tail = build_tail(extractor.network.model, Cut.parse("5.1"), n_classes=3).eval()
    with torch.inference_mode():
        features = tail.features(torch.from_numpy(extractor.transform(paths).astype(np.float32))).numpy()
    ours = features / np.linalg.norm(features, axis=1, keepdims=True)
    reference = [r.embedding for r in vision.load_model("efficientnet-lite0", runtime="torch", threads=1).predict(paths)]
    # the cut activation is stored as float16: tiny differences only
    assert np.abs(ours - np.stack(reference)).max() < 2e-3


def test_fit_learns_the_training_classes(fitted, train_views, train_labels):
    assert list(fitted.classes_) == sorted(set(train_labels))
    proba = fitted.predict_proba(train_views[:2])
    assert proba.shape == (12, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert (fitted.predict(train_views[0]) == train_labels).mean() >= 0.9
    assert fitted.history_[-1] < fitted.history_[0]


def test_val_photos_are_recognised(fitted, extractor, grocery_rows):
    val = [(p, fine) for p, fine, split in grocery_rows if split == "val"]
    views = [extractor.transform([p for p, _ in val], view) for view in ("center", "flip")]
    assert (fitted.predict(views) == np.array([fine for _, fine in val])).sum() >= 2


def test_fit_is_deterministic(fitted, train_views, train_labels):
    again = clone(fitted).fit(train_views, train_labels)
    assert np.allclose(again.predict_proba(train_views[0]), fitted.predict_proba(train_views[0]), atol=1e-6)


def test_pickle_round_trip_keeps_predictions(fitted, train_views):
    restored = pickle.loads(pickle.dumps(fitted))
    assert "_module" not in restored.__dict__
    assert np.allclose(restored.predict_proba(train_views[0]), fitted.predict_proba(train_views[0]), atol=1e-6)
    emb = restored.embed(train_views[:2])
    assert emb.shape == (12, 1280) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_bad_inputs_are_refused(train_views, train_labels):
    from skutag.vision.tail import Cut
    from skutag.vision.tail.train import TailClassifier

    with pytest.raises(ValueError, match="labels"):
        TailClassifier(epochs=1).fit(train_views, train_labels[:-1])
    with pytest.raises(ValueError, match="same shape"):
        TailClassifier(epochs=1).fit([train_views[0], train_views[1][:-1]], train_labels)
    with pytest.raises(ValueError, match="two classes"):
        TailClassifier(epochs=1).fit(train_views[0][:4], train_labels[:4])
    with pytest.raises(ValueError, match="STAGE.BLOCK"):
        Cut.parse("five")
    with pytest.raises(ValueError, match="not a block"):
        TailClassifier(cut="9.0", epochs=1).fit(train_views[0], train_labels)


def test_out_of_fold_embeddings_come_from_tails_that_did_not_see_the_row(fitted, train_views, train_labels):
    from skutag.vision.tail.train import out_of_fold_embeddings

    tail = clone(fitted).set_params(epochs=1)
    labels = np.asarray(train_labels)
    first = np.concatenate([np.flatnonzero(labels == c)[::2] for c in np.unique(labels)])
    second = np.setdiff1d(np.arange(len(labels)), first)
    folds = [(first, second), (second, first)]
    oof = out_of_fold_embeddings(tail, train_views, labels, folds=folds)
    assert oof.shape == (12, 1280) and np.allclose(np.linalg.norm(oof, axis=1), 1, atol=1e-5)
    for fit_rows, held_rows in folds:  # each row's embedding is the one a tail fitted without it gives
        alone = clone(tail).fit([v[fit_rows] for v in train_views], labels[fit_rows])
        assert np.allclose(oof[held_rows], alone.embed([v[held_rows] for v in train_views[:2]]), atol=1e-5)
    seen = clone(tail).fit(train_views, labels)  # the same training, having seen every row
    assert not np.allclose(oof, seen.embed(train_views[:2]), atol=1e-3)


def test_the_serving_tail_runs_the_exported_graphs_and_gives_the_torch_embedding(fitted, extractor, grocery_rows):
    from skutag.vision.tail import VisionTail
    from skutag.vision.tail.train import serving_tail, tail_digest

    paths = [p for p, _, split in grocery_rows if split == "val"]
    served = serving_tail(fitted, views=("center", "flip"), threads=1)
    assert isinstance(served, VisionTail) and isinstance(served.graph, bytes)
    assert served.digest == tail_digest(fitted, ("center", "flip"))
    restored = pickle.loads(pickle.dumps(served))
    assert "TailClassifier" not in repr(restored.__dict__) and restored.digest == served.digest
    ours = np.stack(restored.embed(paths + [b"not a photo"])[:-1])
    reference = fitted.embed([extractor.transform(paths, view) for view in ("center", "flip")])
    assert np.abs(ours - reference).max() < 5e-3  # the torch path keeps cut activations in float16
    with pytest.raises(ValueError, match="deterministic"):
        serving_tail(fitted, views=("center", "aug0"))


@pytest.mark.parametrize("file_format", [1, 2])
def test_a_tail_pickled_before_the_split_loads_as_the_serving_tail(fitted, extractor, grocery_rows, tmp_path,
                                                                   file_format):
    """Bundles written before serving kept its own graphs hold a ``VisionTail`` wrapping the fitted
    ``TailClassifier`` (format 1: named ``vision.tail.*``); the migration converts it, digest kept."""
    from contextlib import ExitStack
    from unittest import mock

    import joblib

    from skutag.fusion.migrate import legacy_module_names, load_file, upgrade_object
    from skutag.vision.tail import VisionTail
    from skutag.vision.tail.train import TailClassifier, tail_digest

    views = ("center", "flip")
    old = VisionTail.__new__(VisionTail)
    old.__dict__.update({"classifier": fitted, "views": views, "threads": 1, "_extractor": None, "_digest": "",
                         "_session": None})
    if file_format == 2:
        old.__dict__.update({"runtime": "onnx", "joint": True, "int8": False, "calibration_dir": "", "_joint": None,
                             "_files": {}, "_calibrations": {}, "_source_id": None})
    path = tmp_path / "vision_tail.joblib"
    with ExitStack() as names:
        if file_format == 1:  # written when the stage packages were top-level: vision.tail.VisionTail
            names.enter_context(legacy_module_names())
            for cls in (VisionTail, TailClassifier):
                names.enter_context(mock.patch.object(cls, "__module__", "vision.tail"))
        joblib.dump(old, path)
    assert (b"vision.tail" in path.read_bytes()) and (file_format == 2 or b"skutag.vision" not in path.read_bytes())

    loaded = upgrade_object(load_file(path, file_format), file_format)
    assert isinstance(loaded, VisionTail) and isinstance(loaded.graph, bytes) and "graphs" not in vars(loaded)
    assert "classifier" not in loaded.__dict__ and loaded.views == views and loaded.joint
    assert loaded.digest == tail_digest(fitted, views)  # cached embeddings of the old tail stay valid
    paths = [p for p, _, split in grocery_rows if split == "val"]
    reference = fitted.embed([extractor.transform(paths, view) for view in views])
    assert np.abs(np.stack(loaded.embed(paths)) - reference).max() < 5e-3
