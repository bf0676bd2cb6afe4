"""Train, retrain on corrections, and calibrate fusion models on catalog files (scoring one: ``skutag.evaluation``).

    version, summary = train_catalog("train.jsonl", "models/shop", config)
    version, summary = retrain_bundle("models/shop", "corrections.jsonl", "models/shop", config)
    version, summary, _ = calibrate_bundle("models/shop", "holdout.jsonl", "models/shop", config)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from skutag.fusion import bundle as bundles
from skutag.fusion.config import MODALITIES
from skutag.fusion.drift import ConfidenceHistogram
from skutag.grouping import series_summary, training_groups
from skutag.fusion.thresholds import coverage_at_precision, fit_bound_thresholds, fit_class_thresholds
from skutag.fusion.evidence import Evidence
from skutag.fusion.metrics import expected_calibration_error
from skutag.fusion.model import FusionModel
from skutag.fusion.train_gate import gates_training_ocr
from skutag.catalog import Product
from skutag.catalog_io import Catalog, CatalogError, read_catalog
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from skutag.updating import update_bundle

Progress = Callable[[int], None]
# settings a retraining takes from the current config, not the parent
RETRAINING_POLICY = {"fusion.full_refit_share", "fusion.keep_training_features"}
COLLECT_CHUNK = 256  # products per evidence-collection call when building a training set


@dataclass
class TrainingSet:
    """What a model learned from; kept in the bundle so retraining needs no original photos."""

    ids: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    brands: list[str | None] = field(default_factory=list)
    data_hash: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def relabelled(self, renamed: dict[str, str]) -> "TrainingSet":
        """The same rows with category paths renamed (old path -> new); itself when nothing changes."""
        if not any(path in renamed for path in self.paths):
            return self
        return replace(self, paths=[renamed.get(path, path) for path in self.paths])

    def merged_with(self, other: "TrainingSet") -> tuple["TrainingSet", int, int]:
        """Rows of ``other`` replace rows with the same id and are appended otherwise.
        Returns (merged, replaced, added)."""
        position = {pid: i for i, pid in enumerate(self.ids)}
        merged = TrainingSet(list(self.ids), list(self.evidence), list(self.paths), list(self.brands))
        replaced = added = 0
        for pid, ev, path, brand in zip(other.ids, other.evidence, other.paths, other.brands):
            if pid in position:
                i = position[pid]
                merged.evidence[i], merged.paths[i], merged.brands[i] = ev, path, brand
                replaced += 1
            else:
                position[pid] = len(merged.ids)
                merged.ids.append(pid)
                merged.evidence.append(ev)
                merged.paths.append(path)
                merged.brands.append(brand)
                added += 1
        return merged, replaced, added


def modalities_wanted(config: SkutagConfig) -> set[str]:
    return set(config.fusion.modalities)


def collect_training_set(collector: EvidenceCollector, products: Sequence[Product], config: SkutagConfig,
                         progress: Progress | None = None, ocr: bool = True) -> TrainingSet:
    """Evidence for labelled products: vision and (when the model uses it and ``ocr``) OCR for every photo."""
    wanted = modalities_wanted(config)
    uses_ocr = ocr and "ocr" in wanted and config.fusion.ocr_gate != "never"
    labelled = [p for p in products if p.category]
    if not labelled:
        return TrainingSet()
    if "vision" not in wanted and not uses_ocr:
        evidence = [Evidence(id=p.id, title=p.title, price=p.price, title_brands=collector.title_brands(p.title))
                    for p in labelled]
    else:  # in chunks: stage outputs reach the feature cache as they come (an interrupted run resumes)
        evidence = []
        for start in range(0, len(labelled), COLLECT_CHUNK):
            chunk = labelled[start:start + COLLECT_CHUNK]
            evidence.extend(collector.collect(chunk, ocr=[uses_ocr and p.image is not None for p in chunk],
                                              progress=progress))
    evidence = [_keep(ev, wanted) for ev in evidence]
    return TrainingSet(ids=[p.id for p in labelled], evidence=evidence, paths=[p.category for p in labelled],
                       brands=[p.brand for p in labelled])


def unreadable_inputs(training: TrainingSet) -> list[str]:
    """``"<id>: <problem>"`` for every input a stage could not read (e.g. a broken photo): that row was
    trained without it."""
    return [f"{pid}: {error}" for pid, ev in zip(training.ids, training.evidence) for error in ev.errors]


def _keep(ev: Evidence, wanted: set[str]) -> Evidence:
    drop = [m for m in MODALITIES if m not in wanted]
    return ev.without(*drop) if drop else ev


def fit_and_save(training: TrainingSet, out: str | Path, config: SkutagConfig, collector: EvidenceCollector,
                 source: dict[str, Any], calibration: TrainingSet | None = None,
                 calibration_source: dict[str, Any] | None = None, tail_record: dict[str, Any] | None = None
                 ) -> tuple[bundles.BundleVersion, dict[str, Any]]:
    """Fit the fusion model and save it (with ``collector.tail``, the fine-tuned vision tail, if any)."""
    if len(training) == 0:
        raise ValueError("no labelled rows to train on (every row needs a category)")
    classes = sorted(set(training.paths))
    if len(classes) < 2:
        raise ValueError(f"training needs at least 2 categories; the catalog has {len(classes)}")
    if collector.tail is not None:
        config = config.with_overrides({"fusion.vision_top_k": config.fusion.vision_top_k_with_tail})
    groups = training_groups(training.evidence, training.paths, config)
    model = FusionModel(config.fusion, title_featurizer=_title_featurizer(config))
    features = model.fit_and_featurize(training.evidence, training.paths, training.brands, groups=groups)
    if not config.fusion.keep_training_features:
        features = None
    calibration_record = None
    if calibration is not None:
        calibration_record = {**_calibrate(model, calibration, config), **(calibration_source or {})}
    predicted, confidence = model.oof_
    truth = np.asarray(training.paths, dtype=object)
    correct = predicted == truth
    target = config.decision.target_precision
    coverage, threshold = coverage_at_precision(confidence, correct, target)
    expected = fit_bound_thresholds(predicted, confidence, truth, classes, config.decision)
    metrics = {
        "oof_accuracy": round(float(correct.mean()), 4),
        # what the auto thresholds promise on held-out answers (out of fold; by photo series, fusion.oof_groups)
        "expected_auto": expected.to_json(),
        "oof_groups": {"kind": config.fusion.oof_groups, **(series_summary(groups) if groups is not None else {})},
        "oof_log_loss": round(float(model.tagger_.oof_log_loss_), 4),
        "oof_ece": expected_calibration_error(confidence, correct),
        f"oof_auto_rate_at_{int(round(target * 100))}": round(coverage, 4),
        **model.summary(),
    }
    manifest = {
        "kind": "skutag-fusion",
        "training_data": {"sha256": training.data_hash, "rows": len(training), "classes": len(classes), **source},
        "versions": _managed_versions(collector),
        "stages": _stage_versions(collector, model, tail_record),
        "modalities": model.modalities_,
        "metrics": metrics,
        "config": {"fusion": _plain(config.fusion), "decision": _plain(config.decision), "text": _plain(config.text)},
        # the reference the service's drift chart compares this week's answers with (skutag.fusion.drift)
        "training_confidences": ConfidenceHistogram.of(confidence).to_json(),
    }
    if calibration_record is not None:
        manifest["calibration"] = calibration_record
        metrics["temperature"] = calibration_record["temperature"]
    training = replace(training, evidence=[_compact(ev) for ev in training.evidence])
    if calibration is not None:
        calibration = replace(calibration, evidence=[_compact(ev) for ev in calibration.evidence])
    tail = collector.tail if "vision" in model.modalities_ else None
    version = bundles.save(out, model, manifest, training=training, calibration=calibration, vision_tail=tail,
                           features=features)
    summary = {"bundle": str(version.path), "version": version.name, **manifest["training_data"], "metrics": metrics}
    if tail is not None:
        summary["vision_tail"] = tail_record
    if calibration_record is not None:
        summary["calibration"] = calibration_record
    return version, summary


def _title_featurizer(config: SkutagConfig):
    """The title features the ``text`` config section asks for (jieba words + character blocks)."""
    from skutag.text import TitleFeaturizer

    return TitleFeaturizer.from_config(config.text)


def _compact(ev: Evidence) -> Evidence:
    return replace(ev, errors=())


def _plain(section: Any) -> dict[str, Any]:
    import dataclasses

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(section).items()}


def _managed_versions(collector: EvidenceCollector) -> dict[str, str]:
    from skutag.taxonomy import managed_versions

    versions = managed_versions(collector.lexicon)
    if collector.brand_model[1]:
        versions["brand_model"] = collector.brand_model[1]
    return versions


def _stage_versions(collector: EvidenceCollector, model: FusionModel,
                    tail_record: dict[str, Any] | None = None) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    cfg = collector.config
    if "vision" in model.modalities_:
        vision = collector.vision_model
        stages["vision"] = {"backbone": cfg.vision.backbone, "model_id": vision.model_id,
                            "model_version": vision.model_version, "runtime": vision.engine.answers,
                            "embedding_dim": vision.embedding_dim}
        if collector.tail is not None:
            stages["vision"]["tail"] = tail_record or {"digest": collector.tail.digest}
    if "ocr" in model.modalities_:
        stages["ocr"] = {"key": collector.ocr_key()}
    return stages


# ---------------------------------------------------------------------- calibration
def _calibrate(model: FusionModel, calibration: TrainingSet, config: SkutagConfig) -> dict[str, Any]:
    """Refit the temperature and keep the held-out answers for per-class thresholds on a calibration set;
    returns what the manifest records about it."""
    if len(calibration) == 0:
        raise ValueError("the calibration catalog has no labelled rows (every row needs a category)")
    before = float(model.tagger_.temperature_)
    before_by_set = model.tagger_.modality_set_temperatures_
    model.calibrate(calibration.evidence, calibration.paths, temperature=config.fusion.calibration == "temperature")
    predicted, confidence, truth = model.threshold_rows_
    correct = predicted == truth
    target = config.decision.target_precision
    coverage, global_threshold = coverage_at_precision(confidence, correct, target)
    thresholds = fit_class_thresholds(predicted, confidence, truth, target, config.decision.min_class_support)
    known = np.isin(truth, model.classes_)
    return {
        "sha256": calibration.data_hash, "rows": len(calibration), "rows_of_unknown_classes": int((~known).sum()),
        "temperature_before": round(before, 4), "temperature": round(float(model.tagger_.temperature_), 4),
        "temperatures_by_modalities": {
            name: {"before": round(before_by_set[name], 4), "after": round(after, 4)}
            for name, after in model.tagger_.modality_set_temperatures_.items()},
        "accuracy": round(float(correct.mean()), 4), "ece": expected_calibration_error(confidence, correct),
        f"auto_rate_at_{int(round(target * 100))}": round(coverage, 4), "class_thresholds": len(thresholds),
        "global_threshold": round(global_threshold, 4),
    }


MIN_CALIBRATION_ROWS = 10
"""Labelled rows of known categories a calibration catalog needs (a temperature fitted on fewer is noise)."""


def check_calibration_set(calibration: TrainingSet, classes: Sequence[str] | set[str]) -> None:
    """Refuse a calibration catalog with too few rows of categories the model knows."""
    known = sum(path in set(classes) for path in calibration.paths)
    if known < MIN_CALIBRATION_ROWS:
        raise ValueError(f"the calibration catalog has {known} rows of categories the model knows "
                         f"({len(calibration)} labelled rows in all); calibrating needs at least "
                         f"{MIN_CALIBRATION_ROWS}")


def read_calibration_set(path: str | Path, collector: EvidenceCollector, config: SkutagConfig,
                         progress: Progress | None = None) -> tuple[TrainingSet, Catalog]:
    catalog = read_catalog(path, require_category=True)
    calibration = collect_training_set(collector, catalog.products, config, progress)
    calibration.data_hash = catalog.content_hash()
    return calibration, catalog


def calibrate_bundle(model_dir: str | Path, calibration_path: str | Path, out: str | Path, config: SkutagConfig,
                     progress: Progress | None = None) -> tuple[bundles.BundleVersion, dict[str, Any], Catalog]:
    """The current version of ``model_dir``, calibrated on a separate labelled catalog, saved as a new
    version in ``out`` (``model_dir`` itself to add a version there). No refit of the classifier."""
    started = time.perf_counter()
    model, manifest, parent = bundles.load(model_dir)
    config = _config_from_manifest(config, manifest)
    collector = EvidenceCollector(config, use_cache=config.fusion.cache_features, tail=bundles.load_tail(parent))
    calibration, catalog = read_calibration_set(calibration_path, collector, config, progress)
    check_calibration_set(calibration, [str(c) for c in model.classes_])
    record = _calibrate(model, calibration, config)
    record.update(catalog=str(Path(calibration_path).resolve()), skipped_rows=len(catalog.errors),
                  parent={"bundle": str(parent.path), "version": parent.name})
    new_manifest = {k: v for k, v in manifest.items() if k not in ("format", "version", "created", "libraries")}
    new_manifest["calibration"] = record
    by_set = {name: change["after"] for name, change in record["temperatures_by_modalities"].items()}
    new_manifest["metrics"] = {**manifest.get("metrics", {}), "temperature": record["temperature"],
                               "temperatures_by_modalities": by_set}
    training = bundles.load_training(parent) if (parent.path / bundles.TRAINING_FILE).is_file() else None
    calibration = replace(calibration, evidence=[_compact(ev) for ev in calibration.evidence])
    version = bundles.save(out, model, new_manifest, training=training, calibration=calibration,
                           vision_tail=collector.tail)
    summary = {"bundle": str(version.path), "version": version.name, "calibration": record,
               "seconds": {"total": round(time.perf_counter() - started, 2)}}
    return version, summary, catalog


# ---------------------------------------------------------------------- commands
def train_catalog(catalog_path: str | Path, out: str | Path, config: SkutagConfig,
                  progress: Progress | None = None, calibration_path: str | Path | None = None
                  ) -> tuple[bundles.BundleVersion, dict[str, Any], Catalog]:
    """Train on ``catalog_path``; with ``calibration_path``, fit the temperature and per-class thresholds on
    that separate labelled catalog instead of the training rows' out-of-fold answers."""
    started = time.perf_counter()
    catalog = read_catalog(catalog_path, require_category=True)
    collector = EvidenceCollector(config, use_cache=config.fusion.cache_features)
    ocr_later = gates_training_ocr(config.fusion)  # read once the other evidence says which photos need it
    if ocr_later:  # the engine (in a fresh SKUTAG_HOME its INT8 copies, a memory peak) made before the tail's buffers
        _ = collector.ocr_engine
    training = collect_training_set(collector, catalog.products, config, progress, ocr=not ocr_later)
    training.data_hash = catalog.content_hash()
    labelled = [p for p in catalog.products if p.category]
    tail_record = None
    if config.vision.tail and "vision" in modalities_wanted(config):
        from skutag.tail_training import fit_training_tail

        collector.tail, training, tail_record = fit_training_tail(collector, labelled, training, config, progress)
    reads_ocr = "ocr" in modalities_wanted(config) and config.fusion.ocr_gate != "never"
    ocr_record = {"mode": "all"} if reads_ocr else None
    if ocr_later:
        from skutag.ocr_training import read_training_ocr

        training, ocr_record = read_training_ocr(collector, labelled, training, config)
    problems = unreadable_inputs(training)
    calibration, calibration_source = None, None
    if calibration_path is not None:
        calibration, cal_catalog = read_calibration_set(calibration_path, collector, config, progress)
        check_calibration_set(calibration, set(training.paths))
        calibration_source = {"catalog": str(Path(calibration_path).resolve()), "skipped_rows": len(cal_catalog.errors)}
    features_seconds = time.perf_counter() - started
    version, summary = fit_and_save(training, out, config, collector,
                                    {"catalog": str(Path(catalog_path).resolve()), "skipped_rows": len(catalog.errors),
                                     "unreadable_inputs": len(problems), "ocr_read": ocr_record},
                                    calibration=calibration, calibration_source=calibration_source,
                                    tail_record=tail_record)
    summary["seconds"] = {"features": round(features_seconds, 2), "total": round(time.perf_counter() - started, 2)}
    summary["unreadable_inputs"] = problems
    summary["ocr_read"] = ocr_record
    return version, summary, catalog


@dataclass(frozen=True)
class RetrainOutcome:
    model_dir: Path
    version: str
    summary: dict[str, Any]


def retrain_from_corrections(model_dir: str | Path, corrections: Sequence[Product] | str | Path,
                             out_dir: str | Path, config: SkutagConfig | None = None,
                             renamed: dict[str, str] | None = None) -> RetrainOutcome:
    """Retrain the bundle in ``model_dir`` with corrected products; the new version goes to ``out_dir``
    (a new model directory, or ``model_dir`` itself to add a version there). ``renamed``: old category
    path -> new, for the parent's training rows (categories renamed since it was trained)."""
    version, summary, _ = retrain_bundle(model_dir, corrections, out_dir, config or SkutagConfig.load(),
                                         renamed=renamed)
    return RetrainOutcome(model_dir=version.store, version=version.name, summary=summary)


def retrain_bundle(model_dir: str | Path, corrections_path: str | Path | Sequence[Product], out: str | Path,
                   config: SkutagConfig, progress: Progress | None = None, renamed: dict[str, str] | None = None,
                   full_refit: bool = False) -> tuple[bundles.BundleVersion, dict[str, Any], Catalog]:
    """Old training rows + corrections (same id: replaced; new id: added) -> a new version in ``out``.

    ``corrections``: a catalog file, or products whose ``category`` is the right path. ``renamed``: old
    category path -> new (categories renamed since the parent was trained): the parent's training and
    calibration rows are relabelled, so the new model answers with the new names only.

    A model that can take the corrections incrementally is updated (``skutag.updating``: seconds, not a fit from
    scratch) unless ``full_refit`` or a full refit is due; ``summary["retraining"]`` says which and why."""
    started = time.perf_counter()
    parent = bundles.resolve(model_dir)
    manifest = parent.manifest()
    bundles.check_compatible(manifest, parent.path, refitting=True)  # the model is fitted again, not loaded
    old: TrainingSet = bundles.load_training(parent).relabelled(renamed or {})
    config = _config_from_manifest(config, manifest)
    if isinstance(corrections_path, (str, Path)):
        corrections = require_rows(read_catalog(corrections_path, require_category=True), "correction")
        where = str(Path(corrections_path).resolve())
    else:
        corrections = Catalog(path=None, products=[p for p in corrections_path if p.category])
        where = "<products>"
    # the parent's fine-tuned tail stays: the old rows' embeddings came from it (retraining needs no photos)
    collector = EvidenceCollector(config, use_cache=config.fusion.cache_features, tail=bundles.load_tail(parent))
    loaded = time.perf_counter()
    fresh = collect_training_set(collector, corrections.products, config, progress)
    collected = time.perf_counter()
    problems = unreadable_inputs(fresh)
    merged, replaced, added = old.merged_with(fresh)
    import hashlib

    merged.data_hash = hashlib.sha256((old.data_hash + corrections.content_hash()).encode()).hexdigest()
    calibration, calibration_source = _carried_calibration(parent, manifest, set(fresh.ids), renamed or {})
    source = {
        "parent": {"bundle": str(Path(parent.path).resolve()), "version": parent.name},
        "corrections": {"catalog": where, "rows": len(fresh),
                        "replaced": replaced, "added": added, "skipped_rows": len(corrections.errors),
                        "unreadable_inputs": len(problems)},
        **({"renamed": dict(renamed)} if renamed else {}),
    }
    update, why = update_bundle(parent, old, fresh, merged, out, config, collector, source, renamed, full_refit)
    if update is not None:
        version, summary = update
    else:
        version, summary = fit_and_save(merged, out, config, collector, source, calibration=calibration,
                                        calibration_source=calibration_source,
                                        tail_record=_carried_tail(manifest, parent))
        summary["retraining"] = {"kind": "full", "why": why}
    summary["seconds"] = {"parent": round(loaded - started, 2), "corrections": round(collected - loaded, 2),
                          "total": round(time.perf_counter() - started, 2)}
    summary["unreadable_inputs"] = problems
    summary["new_categories"] = sorted(set(fresh.paths) - set(old.paths))
    return version, summary, corrections


def _carried_calibration(parent: bundles.BundleVersion, manifest: dict[str, Any], corrected_ids: set[str],
                         renamed: dict[str, str]) -> tuple[TrainingSet | None, dict[str, Any] | None]:
    """A calibrated parent's calibration set, to calibrate the retrained model on again. Rows that came
    back as corrections are training rows now and leave it (a row is never in both)."""
    kept: TrainingSet | None = bundles.load_calibration(parent)
    if kept is None:
        return None, None
    kept = kept.relabelled(renamed)
    keep = [i for i, pid in enumerate(kept.ids) if pid not in corrected_ids]
    if not keep:
        return None, None
    pick = lambda values: [values[i] for i in keep]  # noqa: E731
    carried = TrainingSet(pick(kept.ids), pick(kept.evidence), pick(kept.paths), pick(kept.brands), kept.data_hash)
    previous = manifest.get("calibration", {})
    source = {"carried_from": parent.name, "catalog": previous.get("catalog"),
              "dropped_corrected_rows": len(kept) - len(carried)}
    return carried, source


def _carried_tail(manifest: dict[str, Any], parent: bundles.BundleVersion) -> dict[str, Any] | None:
    record = (manifest.get("stages", {}).get("vision") or {}).get("tail")
    if not record:
        return None
    return {**record, "carried_from": record.get("carried_from") or parent.name}


def _config_from_manifest(config: SkutagConfig, manifest: dict[str, Any]) -> SkutagConfig:
    """Retraining keeps the parent's fusion and title-feature settings (modalities, estimators, n-grams); how
    retraining itself goes (``fusion.full_refit_share``) is the current configuration's."""
    overrides = {}
    for section in ("fusion", "text"):
        recorded = manifest.get("config", {}).get(section, {})
        overrides.update({f"{section}.{k}": (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items()
                          if hasattr(getattr(config, section), k) and f"{section}.{k}" not in RETRAINING_POLICY})
    return config.with_overrides(overrides)



def require_rows(catalog: Catalog, what: str) -> Catalog:
    """``catalog`` when it has products; else a ``CatalogError`` saying why (its first skipped rows)."""
    if catalog.products:
        return catalog
    if not catalog.errors:
        raise CatalogError(f"{catalog.path}: no {what}: the file has no rows")
    shown = "; ".join(str(error) for error in catalog.errors[:3]) + ("; ..." if len(catalog.errors) > 3 else "")
    raise CatalogError(f"{catalog.path}: no {what}: all {len(catalog.errors)} rows were skipped ({shown})")
