"""Tail fine-tuning inside ``skutag train`` (``vision.tail = true``).

The backbone's last blocks are retrained on the shop's categories (``vision.tail``), and the fusion
model is trained on the fine-tuned embedding instead of the frozen one:

1. activations at the cut, for the centre crop, its mirror and ``tail_aug_views`` random views of every
   training photo (cached per photo under ``$SKUTAG_HOME/features``: a second run skips the backbone);
   the fitted tails too (``$SKUTAG_HOME/tails``, keyed by photos, labels, folds and settings: training
   again with other fusion modalities or estimators reuses them);
2. ``tail_folds`` tails, each fitted without one fold, embed that fold's rows: the *out-of-fold*
   embeddings the fusion stack is trained on (a tail's embedding of a photo it was trained on separates
   the classes too well, and the stack would trust vision more than it should on new photos);
3. one tail fitted on every row, its ONNX graphs exported at once (``serving_tail``): what the bundle keeps
   and serving runs on new photos, without torch.

A catalogue with more than ``vision.tail_max_photos`` photos fits steps 1-3 on a sample of them (``tail_sample``);
the other photos' activations are taken for the centre crop and mirror only, and the final tail embeds them: it
never saw them, so their embeddings are as honest as the out-of-fold ones.

Folds follow ``fusion.cv_shuffle`` like the stack's own: unshuffled folds are contiguous runs of rows
within each class, so near-duplicate photos of one capture session stay on one side.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, Sequence

import joblib
import numpy as np

from skutag.catalog import Product
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector, Record, _cpu_threads, load_image_bytes, read_through
from skutag.grouping import training_groups
from skutag.feature_cache import FeatureCache

Progress = Callable[[int], None]


def tail_views(config: SkutagConfig) -> list[str]:
    """The views each training photo is seen in: centre crop, mirror, then random views."""
    return ["center", "flip"] + [f"aug{k}" for k in range(max(0, int(config.vision.tail_aug_views)))]


OUT_OF_FOLD_VIEWS = ("center", "flip")
"""The serving views the out-of-fold embeddings (what the fusion stack learns from) average. Not the whole
photo: averaged in there too it measured worse (vision/README.md, ``bench_fusion_variants tail-oof-views``),
so the stack learns from the crops and serving adds the whole photo."""


def serving_views(config: SkutagConfig) -> tuple[str, ...]:
    """The views a trained tail embeds each photo in when it serves (their embeddings averaged)."""
    cfg = config.vision
    return ("center",) + (("flip",) if cfg.tail_tta else ()) + (("full",) if cfg.tail_full_view else ())


TAIL_CLASS_FLOOR = 8
"""A sampled tail still sees at least this many photos of every category (all it has, if fewer)."""


def tail_sample(y: np.ndarray, cap: int, seed: int, groups: np.ndarray | None = None,
                floor: int | None = None) -> np.ndarray:
    """The rows (sorted indices into ``y``) a tail is fitted on: every row when ``cap`` is 0 or there are no more
    rows than it; else about ``cap`` of them: each category's share as in ``y``, at least ``floor`` rows of each
    (default ``TAIL_CLASS_FLOOR``; so more than ``cap`` where categories are many), whole ``groups`` (photo
    series) at a time, seeded."""
    floor = TAIL_CLASS_FLOOR if floor is None else floor
    if cap < 0:
        raise ValueError(f"vision.tail_max_photos must be >= 0 (0 = every photo), got {cap}")
    y = np.asarray(y, dtype=object)
    if not cap or len(y) <= cap:
        return np.arange(len(y))
    _, y_enc, counts = np.unique(y, return_inverse=True, return_counts=True)
    quotas = np.minimum(counts, np.maximum(floor, np.round(cap * counts / len(y)).astype(int)))
    series = np.arange(len(y)) if groups is None else np.asarray(groups)
    rng, chosen = np.random.default_rng(seed), []
    for label, quota in enumerate(quotas):
        members: dict = {}
        for row in np.flatnonzero(y_enc == label):
            members.setdefault(series[row], []).append(int(row))
        taken = 0
        for k in rng.permutation(len(members)):
            if taken >= quota:
                break
            group = list(members.values())[k]
            chosen += group
            taken += len(group)
    return np.sort(np.asarray(chosen, dtype=np.int64))


def tail_folds(y: np.ndarray, n_splits: int, shuffle: bool, seed: int,
               groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held rows) pairs made by the stack's own splitter (``skutag.fusion.estimators.make_folds``);
    empty when ``n_splits`` < 2 (in-sample embeddings). ``groups``: photo series (``skutag.grouping``) kept on one
    side of every fold, so a held-out photo's series was not seen. Folds whose fit rows hold one class are left out."""
    from skutag.fusion.estimators import make_folds

    _, y_enc = np.unique(y, return_inverse=True)
    folds = make_folds(y_enc, n_splits, shuffle=shuffle, seed=seed if shuffle else None, groups=groups)
    return [(fit, held) for fit, held in folds if len(np.unique(y[fit])) >= 2]


def cut_activations(collector: EvidenceCollector, images: Sequence[Any], views: Sequence[str], cut: str,
                    progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Backbone activations at ``cut`` for each view of each (readable) photo (``load_image_bytes``),
    cached per photo and view; what tail fine-tuning trains on. Random views are seeded by the photo's
    content hash. Counts ``cut_run`` / ``cut_cached`` in ``collector.stats``."""
    from skutag.vision.image import ImageLimits
    from skutag.vision.tail.train import CutExtractor

    cfg, model = collector.config.vision, collector.vision_model
    cache = FeatureCache("cut", f"{model.model_id}-{model.model_version}-{cut}-onnx") if collector.use_cache else None
    extractor: list[CutExtractor] = []  # made when a photo is missing from the cache

    def run(rows: list[int]) -> dict[str, Record]:
        if not extractor:
            extractor.append(CutExtractor(cfg.backbone, cut, cfg.weights or None,
                                          threads=cfg.threads or _cpu_threads(),
                                          limits=ImageLimits(max_pixels=cfg.max_pixels)))
        acts = extractor[0].transform_views([images[i].data for i in rows], views, [images[i].digest for i in rows])
        return {f"{images[i].digest}:{view}": ({"shape": list(acts[view].shape[1:])}, acts[view][k].tobytes())
                for view in views for k, i in enumerate(rows)}

    found, missing = read_through(cache, range(len(images)), lambda i: [f"{images[i].digest}:{view}" for view in views],
                                  run, chunk=64, progress=progress)
    for name, count in (("cut_run", len(missing)), ("cut_cached", len(images) - len(missing))):
        collector.stats[name] = collector.stats.get(name, 0) + count
    return {view: np.stack([_activation(found[f"{img.digest}:{view}"]) for img in images]) for view in views}


def _activation(record: Record) -> np.ndarray:
    meta, blob = record
    return np.frombuffer(blob, dtype=np.float16).reshape(meta["shape"])


def fit_training_tail(collector: EvidenceCollector, labelled: Sequence[Product], training: Any,
                      config: SkutagConfig, progress: Progress | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Fit the tail on the training rows that have a readable photo.

    ``labelled[i]`` is the product of ``training`` row ``i``. Returns (the fitted ``VisionTail``, the
    training set with out-of-fold fine-tuned embeddings in place of the frozen ones, what the manifest
    records about the tail)."""
    from skutag.vision.tail import default_cut
    from skutag.vision.tail.train import TailClassifier, out_of_fold_embeddings, serving_tail

    cfg = config.vision
    cut = cfg.tail_cut or default_cut(cfg.backbone)
    rows = [i for i, ev in enumerate(training.evidence) if ev.vision is not None]
    y = np.asarray([training.paths[i] for i in rows], dtype=object)
    if len(set(y)) < 2:
        raise ValueError("vision.tail needs readable photos of at least 2 categories; "
                         f"the catalog has {len(set(y))} (turn vision.tail off to train without it)")
    views, served = tail_views(config), serving_views(config)
    embedded = [view for view in served if view in OUT_OF_FOLD_VIEWS]
    started = time.perf_counter()
    images = [load_image_bytes(labelled[i].image) for i in rows]
    groups = training_groups([training.evidence[i] for i in rows], list(y), config)
    fitted = tail_sample(y, cfg.tail_max_photos, config.fusion.random_state, groups)
    others = np.setdiff1d(np.arange(len(rows)), fitted)
    images_fit, y_fit = [images[k] for k in fitted], y[fitted]
    acts = cut_activations(collector, images_fit, list(dict.fromkeys(views + embedded)), cut, progress=progress)
    acts_others = cut_activations(collector, [images[k] for k in others], embedded, cut, progress=progress) \
        if len(others) else None
    extracted = time.perf_counter()
    threads = cfg.threads or _cpu_threads()
    classifier = TailClassifier(cfg.backbone, cut=cut, weights=cfg.weights or None, epochs=cfg.tail_epochs,
                                threads=threads, random_state=config.fusion.random_state)
    X = [acts[view] for view in views]
    folds = tail_folds(y_fit, cfg.tail_folds, config.fusion.cv_shuffle, config.fusion.random_state,
                       None if groups is None else groups[fitted])
    cache = _fit_cache_file(classifier, views, embedded, folds, images_fit, y_fit) if collector.use_cache else None
    if cache is not None and cache.is_file():  # same photos, labels and settings: e.g. other fusion modalities
        classifier, oof = joblib.load(cache)
    else:
        embed_views = [acts[view] for view in embedded]
        oof = out_of_fold_embeddings(classifier, X, y_fit, folds=folds, embed_views=embed_views) if folds else None
        classifier.fit(X, y_fit)
        if cache is not None:
            _dump_atomically((classifier, oof), cache)
    tail = serving_tail(classifier, views=served, threads=threads)  # its serving graph exported here, once
    if oof is None:  # no folds: in-sample embeddings
        oof = classifier.embed([acts[view] for view in embedded])
    never_held = np.linalg.norm(oof, axis=1) == 0  # rows of folds skipped for having a single class
    if never_held.any():
        oof[never_held] = classifier.embed([acts[view][never_held] for view in embedded])
    embeddings = np.zeros((len(rows), oof.shape[1]), dtype=np.float32)
    embeddings[fitted] = oof
    if acts_others is not None:  # photos the final tail never saw
        embeddings[others] = classifier.embed([acts_others[view] for view in embedded])
    evidence = list(training.evidence)
    for k, i in enumerate(rows):
        evidence[i] = replace(evidence[i], vision=replace(evidence[i].vision, embedding=embeddings[k]))
    record = {
        "backbone": cfg.backbone, "cut": cut, "epochs": int(cfg.tail_epochs), "train_views": len(views),
        "serving_views": list(tail.views), "out_of_fold_views": embedded, "folds": len(folds), "rows": len(rows),
        "fitted_rows": len(fitted), "digest": tail.digest,
        "final_train_loss": round(float(classifier.history_[-1]), 4),
        "seconds": {"activations": round(extracted - started, 1), "fit": round(time.perf_counter() - extracted, 1)},
    }
    return tail, replace(training, evidence=evidence), record


def _fit_cache_file(classifier: Any, views: Sequence[str], embedded: Sequence[str], folds: list,
                    images: Sequence[Any], y: np.ndarray):
    """Where a tail fitted on exactly these photos, labels, views, folds and settings (and its out-of-fold
    embeddings of the ``embedded`` views) is kept."""
    import hashlib
    import json

    from skutag.paths import artifact_dir

    h = hashlib.sha256(json.dumps({"params": {k: v for k, v in classifier.get_params().items() if k != "threads"},
                                   "views": list(views), "activations": "onnx",
                                   # the default views leave the key as it was before they were a setting
                                   **({} if tuple(embedded) == OUT_OF_FOLD_VIEWS else {"embedded": list(embedded)})},
                                  sort_keys=True, default=str).encode())
    for image, label in zip(images, y):
        h.update(f"{image.digest}\t{label}\n".encode())
    for _, held in folds:
        h.update(np.asarray(held, np.int64).tobytes())
    return artifact_dir("tails") / f"{h.hexdigest()[:32]}.joblib"


def _dump_atomically(value, path) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    joblib.dump(value, tmp, compress=3)
    os.replace(tmp, path)
