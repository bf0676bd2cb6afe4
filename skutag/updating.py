"""Incremental retraining: corrections folded into a fitted model without fitting it again from scratch.

A model qualifies when each of its fitted modality estimators can fit parts of itself again
(``NodeRefitter``: ``skutag.fusion.linear.HierarchicalLinearSVC`` refits the tree nodes on the corrected
categories' paths), it has one modality (no stacker whose weights were fitted on the old scores), the
corrections bring no new category and rename nothing, and the rows corrected since the last full fit stay under
``fusion.full_refit_share`` of the training rows. Otherwise a full refit is due and ``plan_update`` says why.

What an update keeps from the parent: the feature vocabulary (words new to the model wait for the next full
fit), the temperature, and the out-of-fold answers the per-class thresholds and the precision expectation were
fitted on (they describe the last full fit, named in the manifest's ``updates`` record).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class NodeRefitter(Protocol):
    """An estimator that can fit again only the parts that decide between ``labels`` (codes it knows)."""

    def refit_nodes(self, X, y, labels) -> list: ...


@dataclass(frozen=True)
class UpdatePlan:
    incremental: bool
    reason: str  # why a full refit is due, or what the update does
    corrected_rows: int  # rows corrected since the last full fit, these included


def corrected_labels(old_paths: dict[str, str], fresh_ids: list[str], fresh_paths: list[str]) -> set[str]:
    """Every category a correction touches: its new one and, for a row that was in the training data, its old one
    (both paths' nodes decide differently now)."""
    touched = set(fresh_paths)
    touched.update(old_paths[pid] for pid in fresh_ids if pid in old_paths)
    return touched


def plan_update(model: Any, manifest: dict[str, Any], fresh_paths: list[str], n_rows: int,
                full_refit_share: float, renamed: dict[str, str] | None) -> UpdatePlan:
    """Whether ``model`` (a fitted ``FusionModel``) can take ``fresh_paths``' corrections incrementally."""
    since = int((manifest.get("updates") or {}).get("corrected_rows", 0)) + len(fresh_paths)
    tagger = model.tagger_

    def full(reason: str) -> UpdatePlan:
        return UpdatePlan(False, reason, since)

    if full_refit_share <= 0:
        return full("fusion.full_refit_share is 0 (every retraining is a full refit)")
    if not fresh_paths:
        return full("no corrections: the kept rows are fitted again")
    if renamed:
        return full("categories were renamed")
    new = sorted(set(fresh_paths) - set(map(str, model.classes_)))
    if new:
        return full(f"{len(new)} new categories")
    fitted = [(name, est) for name, est in zip(tagger.block_names_, tagger.base_estimators_) if est is not None]
    if len(fitted) != 1:
        return full(f"{len(fitted)} modalities (their stacker was fitted on the old scores)")
    name, estimator = fitted[0]
    if not isinstance(estimator, NodeRefitter):
        return full(f"the {name} estimator ({type(estimator).__name__}) cannot refit parts of itself")
    known = {str(model.classes_[int(code)]) for code in estimator.classes_}
    if not set(fresh_paths) <= known:
        return full(f"a corrected category has no training row with {name}")
    if since > full_refit_share * n_rows:
        return full(f"{since} rows corrected since the last full fit, over fusion.full_refit_share "
                    f"({full_refit_share:g} of {n_rows} rows)")
    return UpdatePlan(True, f"{name} estimator: nodes on the corrected categories' paths refitted", since)


def update_model(model: Any, features: Any, paths: list[str], labels: set[str]) -> dict[str, Any]:
    """Fit again, on all rows (``features``: their feature matrix, ``paths``), the parts of ``model``'s one fitted
    estimator that decide between ``labels``. Returns what was done (nodes refitted, seconds)."""
    started = time.perf_counter()
    tagger = model.tagger_
    b = next(i for i, est in enumerate(tagger.base_estimators_) if est is not None)
    estimator = tagger.base_estimators_[b]
    Xb = features[:, tagger.block_columns_[b]]
    rows = np.flatnonzero(Xb.getnnz(axis=1) > 0)  # rows without this modality never taught it
    classes = np.asarray(model.classes_, dtype=object)
    y_enc = np.searchsorted(classes, np.asarray(paths, dtype=object)[rows])
    codes = sorted(int(np.searchsorted(classes, label)) for label in labels)
    nodes = estimator.refit_nodes(Xb if len(rows) == Xb.shape[0] else Xb[rows], y_enc, codes)
    model.n_train_ = len(paths)
    seconds = round(time.perf_counter() - started, 2)
    return {"nodes_refitted": len(nodes), "rows": len(rows), "seconds": {"fit": seconds}}


def merged_features(parent: Any, model: Any, old: Any, fresh: Any, merged: Any) -> Any:
    """The merged rows' feature matrix from the parent's kept one and the corrections' (featurized here), or
    None when the parent keeps none that fits its training rows."""
    import scipy.sparse as sp

    from skutag.fusion import bundle as bundles

    kept = bundles.load_training_features(parent, len(old), model.featurizer_.n_features_out_)
    if kept is None:
        return None
    position = {pid: i for i, pid in enumerate(merged.ids)}
    source = np.arange(len(merged))  # row i of the merged set: kept row i, or a correction's row
    for j, pid in enumerate(fresh.ids):  # a later correction of the same id wins, as in TrainingSet.merged_with
        source[position[pid]] = len(old) + j
    both = sp.vstack([kept, model.featurizer_.transform(list(fresh.evidence))], format="csr")
    return both if np.array_equal(source, np.arange(both.shape[0])) else both[source]


def save_update(parent: Any, model: Any, manifest: dict[str, Any], plan: UpdatePlan, done: dict[str, Any],
                training: Any, training_data: dict[str, Any], out: Any, calibration: Any, tail: Any,
                features: Any = None) -> tuple[Any, dict]:
    """The updated ``model`` saved as a new version in ``out``: the parent's manifest with the new training data
    and an ``updates`` record (rows corrected since the last full fit, which version that was)."""
    from skutag.fusion import bundle as bundles

    previous = manifest.get("updates") or {}
    new_manifest = {k: v for k, v in manifest.items() if k not in ("format", "version", "created", "libraries")}
    new_manifest["training_data"] = {**training_data, "classes": len(model.classes_)}
    new_manifest["updates"] = {"corrected_rows": plan.corrected_rows,
                               "last_full_fit": previous.get("last_full_fit") or parent.name,
                               "nodes_refitted": done["nodes_refitted"]}
    new_manifest["metrics"] = {**manifest.get("metrics", {}), "n_train": int(model.n_train_)}
    started = time.perf_counter()
    version = bundles.save(out, model, new_manifest, training=training, calibration=calibration, vision_tail=tail,
                           features=features)
    done["seconds"]["save"] = round(time.perf_counter() - started, 2)
    summary = {"bundle": str(version.path), "version": version.name, **new_manifest["training_data"],
               "metrics": new_manifest["metrics"], "retraining": {"kind": "incremental", "why": plan.reason, **done}}
    return version, summary


def update_bundle(parent: Any, old: Any, fresh: Any, merged: Any, out: Any, config: Any, collector: Any,
                  source: dict[str, Any], renamed: dict[str, str] | None,
                  full_refit: bool) -> tuple[tuple[Any, dict[str, Any]] | None, str]:
    """(the parent version updated with the corrections and saved in ``out``, or None when a full refit is due;
    why). ``old``, ``fresh``, ``merged``: the parent's training rows, the corrections' and both
    (``skutag.training.TrainingSet``); ``full_refit``: one is asked for."""
    from dataclasses import replace

    from skutag.fusion import bundle as bundles

    if full_refit:
        return None, "asked for (--full)"
    try:
        bundles.check_compatible(parent.manifest(), parent.path)
    except bundles.BundleError:
        return None, "the model was saved with other library versions: it cannot be loaded, only fitted again"
    started = time.perf_counter()
    model, manifest, _ = bundles.load(parent.path)
    load_s = time.perf_counter() - started
    plan = plan_update(model, manifest, list(fresh.paths), len(merged), config.fusion.full_refit_share, renamed)
    if not plan.incremental:
        return None, plan.reason
    labels = corrected_labels(dict(zip(old.ids, old.paths)), list(fresh.ids), list(fresh.paths))
    started = time.perf_counter()
    features = merged_features(parent, model, old, fresh, merged)
    kept = features is not None
    if features is None:  # the parent keeps no features: every row is featurized again (the fixed vocabulary)
        features = model.featurizer_.transform(list(merged.evidence))
    features_s = time.perf_counter() - started
    done = update_model(model, features, merged.paths, labels)
    done["features_kept"] = kept
    done["seconds"].update(load=round(load_s, 2), features=round(features_s, 2))
    compact = replace(merged, evidence=[replace(ev, errors=()) for ev in merged.evidence])
    tail = collector.tail if "vision" in model.modalities_ else None
    training_data = {"sha256": merged.data_hash, "rows": len(merged), **source}
    keep = config.fusion.keep_training_features
    return save_update(parent, model, manifest, plan, done, compact, training_data, out,
                       bundles.load_calibration(parent), tail, features if keep else None), plan.reason
