"""A tail serves from one ONNX graph: the plain network's labels and the tuned embedding of every view come from
one session run per batch of photos (the frozen part shared up to the cut), and give what the two graphs tails
kept before gave (the plain backbone's labels, the tuned graph's embedding); tails written with the two graphs
are joined into one at load. Real GroceryStore photos."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import shared_path

VIEWS = ("center", "flip", "full")


@pytest.fixture(scope="module")
def photos() -> dict[str, list[str]]:
    """3 train photos of each of 3 classes, and 2 val photos of each."""
    folder = shared_path("grocery")
    rows = list(csv.DictReader((folder / "manifest.csv").open(encoding="utf-8")))
    chosen: dict[str, list] = {"train": [], "labels": [], "val": []}
    for fine in ("Golden-Delicious", "Oatly-Oat-Milk", "Yoggi-Strawberry-Yoghurt"):
        for split, count in (("train", 3), ("val", 2)):
            picked = [r for r in rows if r["fine"] == fine and r["split"] == split][:count]
            assert len(picked) == count, (fine, split)
            chosen[split] += [str(folder / r["image"]) for r in picked]
            chosen["labels"] += [fine] * count if split == "train" else []
    return chosen


@pytest.fixture(scope="module")
def fitted(photos):
    from skutag.vision.tail.train import CutExtractor, TailClassifier

    extractor = CutExtractor("efficientnet-lite0", cut="5.1")
    views = [extractor.transform(photos["train"], view) for view in ("center", "flip")]
    return TailClassifier("efficientnet-lite0", cut="5.1", epochs=3, batch_size=3).fit(views, photos["labels"])


@pytest.fixture(scope="module")
def served(fitted):
    from skutag.vision.tail.train import serving_tail

    return serving_tail(fitted, views=VIEWS, threads=2)


@pytest.fixture(scope="module")
def two_graphs(fitted) -> dict[str, bytes]:
    """The two graphs tails kept before the one graph, exported as that code did: ``joint`` (photo -> plain
    logits, plain embedding, tuned features) and ``tuned`` (photo -> tuned features)."""
    from skutag.vision.tail.network import export_graph, frozen_model, load_network, run_after_cut, run_to_cut
    from skutag.vision.tail.views import Cut

    cut, tail = Cut.parse(fitted.cut), fitted._fitted_module()
    frozen = frozen_model(load_network(fitted.backbone, fitted.weights), 224)

    def joint(model, tuned, x):
        act = run_to_cut(model, cut, x)
        embedding = model.forward_head(run_after_cut(model, cut, act), pre_logits=True)
        return model.get_classifier()(embedding), embedding, tuned.features(act)

    return {"joint": export_graph(joint, 224, ("logits", "embedding", "features"), frozen, tail),
            "tuned": export_graph(lambda model, tuned, x: tuned.features(run_to_cut(model, cut, x)), 224,
                                  ("features",), frozen, tail)}


def _two_graph_serving(graphs: dict[str, bytes], model, sources) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What serving computed with the two graphs: the joint graph on the centre crops (plain logits and
    embedding, tuned features), the tuned graph on the mirrors, again on the whole photos; the tuned
    embedding averages the three views' normalised features."""
    from skutag.inference import onnx_session
    from skutag.vision.preprocess import normalize_batch
    from skutag.vision.tail.views import l2_normalize, view_crop

    spec = model.preprocess
    joint, tuned = onnx_session(graphs["joint"], 2), onnx_session(graphs["tuned"], 2)
    crops, whole, _, errors = model.load_batch_with(sources, lambda image: view_crop(image, "full", spec))
    assert not errors
    centre = normalize_batch(np.stack(crops), spec)
    logits, plain, features = joint.run(None, {"input": centre})
    mirrored = tuned.run(None, {"input": np.ascontiguousarray(centre[:, :, :, ::-1])})[0]
    full = tuned.run(None, {"input": normalize_batch(np.stack(whole), spec)})[0]
    embedding = l2_normalize(np.mean([l2_normalize(f) for f in (features, mirrored, full)], axis=0))
    return logits, plain, embedding


class _Counted:
    """An ONNX Runtime session that counts its runs."""

    def __init__(self, session, runs: list):
        self._session, self._runs = session, runs

    def run(self, *args, **kwargs):
        self._runs.append(len(args[1]["input"]) if len(args) > 1 and "input" in args[1] else None)
        return self._session.run(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._session, name)


@pytest.fixture
def session_runs(monkeypatch) -> list:
    """Every ONNX Runtime session made from here on (the one factory, ``skutag.inference.onnx_session``)
    counts its runs into the returned list (the rows of its ``input`` per run); models are loaded afresh."""
    import skutag.inference
    from skutag.vision import clear_model_cache

    runs: list = []
    factory = skutag.inference.onnx_session
    monkeypatch.setattr(skutag.inference, "onnx_session", lambda *a, **k: _Counted(factory(*a, **k), runs))
    clear_model_cache()
    yield runs
    clear_model_cache()


def test_the_one_graph_gives_what_the_plain_model_and_the_two_graphs_gave(served, two_graphs, photos):
    from skutag.vision import load_model

    assert isinstance(served.graph, bytes) and "graphs" not in vars(served)
    model = load_model("efficientnet-lite0", runtime="onnx", threads=2)
    sources = photos["val"]
    results, tuned = served.label_and_embed(model, sources + [b"not a photo"], top_k=5, batch_size=4)
    logits, plain, reference = _two_graph_serving(two_graphs, model, sources)
    alone = model.predict(sources, top_k=5, batch_size=4)  # the plain ONNX backbone itself
    for result, own, row in zip(results, alone, range(len(sources))):
        assert [s.index for s in result.top_k] == [s.index for s in own.top_k]
        assert np.allclose([s.prob for s in result.top_k], [s.prob for s in own.top_k], atol=1e-5)
        assert np.allclose(result.embedding, own.embedding, atol=1e-5)
        assert result.top_k[0].index == int(np.argmax(logits[row]))
    assert results[-1].error and tuned[-1] is None
    ours = np.stack(tuned[:-1])
    assert np.abs(ours - reference).max() < 1e-5
    assert np.abs(ours - np.stack([r.embedding for r in alone])).max() > 1e-2  # tuned, not the plain embedding
    # the tail alone (no labels asked) gives the same embedding from the same graph
    assert np.abs(np.stack(served.embed(sources, batch_size=4)) - reference).max() < 1e-5


def test_one_session_run_per_batch_of_photos(served, photos, session_runs):
    from copy import copy

    from skutag.catalog import Product
    from skutag.config import SkutagConfig
    from skutag.evidence import EvidenceCollector

    config = SkutagConfig.load(environ={}, overrides={"vision.threads": 2, "vision.batch_size": 4,
                                                      "vision.runtime": "onnx"})  # the sessions counted
    tail = copy(served)  # sessions of its own, opened under the counting factory
    tail._sessions = {}
    collector = EvidenceCollector(config, use_cache=False, tail=tail)
    sources = photos["val"]  # 6 photos: batches of 4 and 2
    out = collector.vision(collector.photos([Product(id=str(k), image=p) for k, p in enumerate(sources)], ocr=False))
    assert all(ev is not None and err is None for ev, err in out)
    assert collector.stats["vision_run"] == collector.stats["tail_run"] == len(sources)
    assert session_runs == [4, 2], "one run of the tail's graph per batch, the plain backbone's never"
    del session_runs[:]
    tail.embed(sources, batch_size=4)
    assert session_runs == [0, 0], "the tail alone: one run per batch, no centre crops for labels"


def test_a_tail_kept_as_two_graphs_is_joined_into_one_at_load(served, two_graphs, photos, tmp_path, session_runs):
    import joblib

    from skutag.fusion.migrate import load_file, upgrade_object
    from skutag.vision import load_model
    from skutag.vision.tail import VisionTail

    old = VisionTail.__new__(VisionTail)  # as the code before the one graph pickled it
    old.__dict__.update({k: v for k, v in vars(served).items() if k != "graph"})
    old.__dict__.update({"graphs": two_graphs, "_sessions": {}, "_files": {}, "_calibrations": {}})
    path = tmp_path / "vision_tail.joblib"
    joblib.dump(old, path)

    loaded = upgrade_object(load_file(path, 3), 3)
    assert isinstance(loaded, VisionTail) and "graphs" not in vars(loaded) and isinstance(loaded.graph, bytes)
    assert loaded.digest == served.digest and loaded.views == VIEWS  # cached embeddings stay valid
    model = load_model("efficientnet-lite0", runtime="onnx", threads=2)
    sources = photos["val"]
    del session_runs[:]
    results, tuned = loaded.label_and_embed(model, sources, top_k=5, batch_size=8)
    assert session_runs == [len(sources)]
    _, _, reference = _two_graph_serving(two_graphs, model, sources)
    assert np.abs(np.stack(tuned) - reference).max() < 1e-5
    alone = model.predict(sources, top_k=5)
    assert [r.top_k[0].index for r in results] == [r.top_k[0].index for r in alone]


def test_on_openvino_the_graph_serves_what_it_serves_on_onnx_runtime(served, photos):
    """Beside a plain network on OpenVINO (``vision.runtime = openvino``) the tail's graph runs there too and still
    serves the labels: the same top label, embeddings at cosine 0.99+ (bf16 inside); INT8 stays ONNX Runtime's,
    and the runtime is a serving setting, not kept in the bundle."""
    import pickle
    from copy import copy

    from skutag.vision import load_model
    from skutag.vision.runtime import answers_of

    on_onnx, on_openvino = copy(served), copy(served)
    on_onnx._sessions, on_openvino._sessions = {}, {}
    on_openvino.runtime = "openvino"
    plain_onnx = load_model("efficientnet-lite0", runtime="onnx", threads=2)
    plain_openvino = load_model("efficientnet-lite0", runtime="openvino", threads=2)
    assert on_openvino.serves_labels_of(plain_openvino) and not on_openvino.serves_labels_of(plain_onnx)
    assert on_onnx.serves_labels_of(plain_onnx) and not on_onnx.serves_labels_of(plain_openvino)
    assert (on_onnx.answers, on_openvino.answers) == ("onnx", answers_of("openvino"))

    sources = photos["val"] + [b"not a photo"]
    reference, reference_tuned = on_onnx.label_and_embed(plain_onnx, sources, top_k=5, batch_size=4)
    results, tuned = on_openvino.label_and_embed(plain_openvino, sources, top_k=5, batch_size=4)
    assert results[-1].error == reference[-1].error and results[-1].error and tuned[-1] is None
    assert [r.top_k[0].index for r in results[:-1]] == [r.top_k[0].index for r in reference[:-1]]
    cosine = np.sum(np.stack(tuned[:-1]) * np.stack(reference_tuned[:-1]), axis=1)  # both L2-normalised
    assert cosine.min() > 0.99, cosine
    alone = np.stack(on_openvino.embed(sources[:-1], batch_size=4))  # the tail alone: no centre rows for labels
    assert np.sum(alone * np.stack(tuned[:-1]), axis=1).min() > 0.999
    assert list(on_openvino._sessions) == [("openvino", "fp32")]

    on_openvino.int8 = True
    assert on_openvino.serving_runtime == "onnx"
    on_openvino.int8 = False
    assert pickle.loads(pickle.dumps(on_openvino)).runtime == "onnx"
    on_openvino.runtime = "tensorrt"
    with pytest.raises(ValueError, match="onnx or openvino"):
        on_openvino.session()
