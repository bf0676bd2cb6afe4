"""The pipeline: composes the stages into the tagging contract (``skutag.tagger.Tagger``).

Every path (CLI ``tag``/``batch``, the HTTP service, local pool workers, Celery workers) calls
``Tagger.tag``; nothing else decides how a product is tagged.

    pipeline = load_pipeline()                       # cold start: default taxonomy, label map, lexicon
    pipeline = load_pipeline(model_dir="models/x")   # a trained bundle (its CURRENT version)
    results = pipeline.tag_batch([Product(id="1", image="a.jpg", title="...", price=3.5)])

Per batch: vision and title features first; OCR only for the products where it can change the answer
(``fusion.ocr_gate``); then the fusion model (or the cold-start scorer) and the decider.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from skutag.fusion import bundle as bundles
from skutag.fusion.coldstart import ColdStartScorer
from skutag.fusion.decision import Decider
from skutag.fusion.drift import ConfidenceHistogram
from skutag.fusion.thresholds import fit_thresholds
from skutag.fusion.evidence import Evidence
from skutag.fusion.model import FusionModel, Scores
from skutag.fusion.result import TagResult
from skutag.catalog import Product
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from skutag.paths import artifact_dir
from skutag.tagger import TaggedBatch, Tagger
from skutag.taxonomy import managed_versions
from skutag.taxonomy.aliases import ALIASES_FILE_NAME, load_aliases
from skutag.taxonomy.brands import BrandLexicon
from skutag.vision.photo import PhotoNeeds

log = logging.getLogger(__name__)


class IncompatibleModelError(bundles.BundleError):
    """The bundle was trained with stage settings this config does not reproduce (e.g. another backbone)."""


@dataclass
class GateStats:
    """What OCR gating did: how many products could have been read, and how many were."""

    candidates: int = 0
    ran: int = 0
    seconds_vision_title: float = 0.0
    seconds_ocr: float = 0.0

    @property
    def skipped(self) -> int:
        return self.candidates - self.ran

    def to_json(self) -> dict[str, Any]:
        return {"candidates": self.candidates, "ran": self.ran, "skipped": self.skipped,
                "saved_share": round(self.skipped / self.candidates, 4) if self.candidates else 0.0,
                "seconds_vision_title": round(self.seconds_vision_title, 3), "seconds_ocr": round(self.seconds_ocr, 3)}


@dataclass(eq=False)
class Pipeline(Tagger):
    """Vision + OCR (gated) + title + price -> fusion model or cold start -> decider."""

    config: SkutagConfig
    model: FusionModel | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    bundle: bundles.BundleVersion | None = None
    collector: EvidenceCollector | None = None
    gate_stats: GateStats = field(default_factory=GateStats)
    path_aliases: dict[str, str] = field(default_factory=dict)
    """Old category path -> today's (``taxonomy.aliases``): a model trained before a rename answers,
    thresholds and checks its paths under the new names."""

    def __post_init__(self) -> None:
        if self.collector is None:
            self.collector = EvidenceCollector(self.config, use_cache=self.config.fusion.cache_features)
        self._cold: ColdStartScorer | None = None
        self._lock = threading.Lock()
        self.decider = self._make_decider()

    # ------------------------------------------------------------------ identity
    @property
    def model_version(self) -> str:
        if self.bundle is None:
            return f"cold-start@{self.cold_start.versions['taxonomy']}"
        return f"{self.bundle.store.name}/{self.bundle.name}"

    @property
    def cold_start(self) -> ColdStartScorer:
        if self._cold is None:
            self._cold = ColdStartScorer(lexicon=self.collector.lexicon, config=self.config.fusion)
        return self._cold

    @property
    def lexicon(self) -> BrandLexicon:
        return self.collector.lexicon

    def use_lexicon(self, lexicon: BrandLexicon) -> bool:
        """Read brands with ``lexicon`` from the next batch on: the OCR and title brand readers, and the cold
        start's brand votes (a trained model learnt its brand features from the lexicon it was trained with;
        brands added since count once it is retrained)."""
        self.collector.lexicon = lexicon
        if self.model is None:
            self._cold = ColdStartScorer(lexicon=lexicon, config=self.config.fusion)
        return True

    @property
    def training_confidences(self) -> ConfidenceHistogram | None:
        """The bundle's out-of-fold training confidences (manifest ``training_confidences``, filled at load for
        bundles older than it); None for the cold start."""
        record = self.manifest.get("training_confidences")
        return ConfidenceHistogram.from_json(record) if record else None

    def categories(self) -> list[str]:
        classes = self.cold_start.classes if self.model is None else self.model.classes_
        return sorted({self._renamed(str(c)) for c in classes})

    def _make_decider(self, **overrides: Any) -> Decider:
        cfg = self.config.decision
        if self.model is None:
            known = [str(c) for c in self.cold_start.classes]
            return Decider(cfg, known_paths=known, top_k=self.config.fusion.top_k)
        known = [self._renamed(str(c)) for c in self.model.classes_]
        return Decider(cfg, class_thresholds=self._class_thresholds(known), known_paths=known,
                       top_k=self.config.fusion.top_k)

    def _class_thresholds(self, known: Sequence[str]) -> dict[str, float]:
        """Per-class auto thresholds (``skutag.fusion.thresholds``) on the model's calibration set, else on its
        out-of-fold training answers."""
        predicted, confidence, truth = self.model.threshold_rows_
        predicted, truth = [self._renamed(p) for p in predicted], [self._renamed(t) for t in truth]
        return fit_thresholds(predicted, confidence, truth, known, self.config.decision,
                              calibration_set=self.model.calibrated_)

    # ------------------------------------------------------------------ tagging
    def tag(self, products: Sequence[Product], *, audit: bool = True) -> TaggedBatch:
        results: list[TagResult | None] = [None] * len(products)
        kept: list[Evidence | None] = [None] * len(products)
        usable = []
        for i, product in enumerate(products):
            if not product.has_input:
                results[i] = TagResult.failed(product.id, "product has neither an image nor a title")
            else:
                usable.append(i)
        if usable:
            batch = [products[i] for i in usable]
            evidence = self.gather(batch)
            for i, ev, result in zip(usable, evidence, self.tag_evidence(evidence, audit=audit)):
                results[i], kept[i] = result, ev
        return TaggedBatch(results, kept)  # type: ignore[arg-type]

    def gather(self, products: Sequence[Product], *, ocr_gate: str | None = None) -> list[Evidence]:
        """Evidence for products, with OCR read where the gate says it can change the answer. Each photo is read,
        hashed and decoded once for vision and OCR both (``EvidenceCollector.photos``)."""
        gate = ocr_gate or self.config.fusion.ocr_gate
        uses_ocr = self._uses_ocr()
        started = time.perf_counter()
        photos = self.collector.photos(products, ocr=uses_ocr and gate != "never")
        if gate == "always" and uses_ocr:
            evidence = self.collector.collect(products, ocr=[p.image is not None for p in products], photos=photos)
            self._count_gate(sum(p.image is not None for p in products), sum(p.image is not None for p in products),
                             0.0, time.perf_counter() - started)
            return evidence
        evidence = self.collector.collect(products, ocr=False, photos=photos)
        first_pass = time.perf_counter() - started
        if gate == "never" or not uses_ocr:
            self._count_gate(0, 0, first_pass, 0.0)
            return evidence
        candidates = np.array([p.image is not None and ev.vision is not None for p, ev in zip(products, evidence)])
        need = candidates & self._needs_ocr(evidence, gate)
        started = time.perf_counter()
        chosen = np.flatnonzero(need)
        for i in np.flatnonzero(~need):  # OCR will not read these: their pixels can go now
            photos[i].release()
        if len(chosen):
            read = self.collector.add_ocr([products[i] for i in chosen], [evidence[i] for i in chosen],
                                          photos=[photos[i] for i in chosen])
            for i, ev in zip(chosen, read):
                evidence[i] = ev
        self._count_gate(int(candidates.sum()), len(chosen), first_pass, time.perf_counter() - started)
        return evidence

    @property
    def photo_needs(self) -> PhotoNeeds:
        """The sizes its stages read a photo at (vision, and OCR where the model reads it): a ``Photo`` made with
        these needs (``skutag.vision.photo``) is decoded once for all of them."""
        return self.collector.photo_needs(ocr=self._uses_ocr() and self.config.fusion.ocr_gate != "never")

    def prepare(self) -> None:
        """The vision model, and the OCR engine when the model may read OCR (in a fresh ``SKUTAG_HOME`` its
        INT8 copies are made here, not inside the first product's OCR read)."""
        _ = self.collector.vision_model  # built on first access
        if self._uses_ocr() and self.config.fusion.ocr_gate != "never":
            _ = self.collector.ocr_engine

    def _count_gate(self, candidates: int, ran: int, first: float, ocr_seconds: float) -> None:
        with self._lock:
            self.gate_stats.candidates += candidates
            self.gate_stats.ran += ran
            self.gate_stats.seconds_vision_title += first
            self.gate_stats.seconds_ocr += ocr_seconds

    def _uses_ocr(self) -> bool:
        if self.model is not None:
            return "ocr" in self.model.modalities_
        return "ocr" in self.config.fusion.modalities

    def _needs_ocr(self, evidence: Sequence[Evidence], gate: str) -> np.ndarray:
        scores = self.score(evidence)
        if self.model is not None:
            model = self.model
            if gate != model.config.ocr_gate:
                model = _with_gate(model, gate)
            return model.needs_ocr(scores)
        # cold start: the brand is often the strongest clue there is; read unless already confident
        _, confidence = scores.best()
        return confidence < self.config.fusion.ocr_gate_confidence

    def score(self, evidence: Sequence[Evidence]) -> Scores:
        if self.model is None:
            return self.cold_start.score(evidence)
        scores = self.model.score(evidence)
        if self.path_aliases:
            scores.classes = np.asarray([self._renamed(str(c)) for c in scores.classes], dtype=object)
        return scores

    def _renamed(self, path: str) -> str:
        return self.path_aliases.get(path, path)

    def tag_evidence(self, evidence: Sequence[Evidence], *, audit: bool = True) -> list[TagResult]:
        scores = self.score(evidence)
        results = self.decider.decide_batch([ev.id for ev in evidence], scores, model_version=self.model_version,
                                            errors=[ev.errors for ev in evidence], audit=audit)
        usable = scores.usable if scores.usable is not None else np.ones(len(evidence), dtype=bool)
        return [result if ev.has_any and ok else TagResult.failed(ev.id, self._unusable_reason(ev))
                for ev, ok, result in zip(evidence, usable, results)]

    def _unusable_reason(self, ev: Evidence) -> str:
        """Why a product got no answer: nothing at all, or nothing the trained model reads (e.g. a photo for a
        title-only model, a title whose words it never saw)."""
        if not ev.has_any or self.model is None:
            return "; ".join(ev.errors) or "no usable evidence"
        reads = ", ".join(self.model.modalities_)
        given = ", ".join(ev.modalities)
        reason = f"no evidence this model can use: it reads {reads}; the product gives {given} (none it knows)"
        return "; ".join((reason, *ev.errors))


def _with_gate(model: FusionModel, gate: str) -> FusionModel:
    import copy
    from dataclasses import replace

    clone = copy.copy(model)
    clone.config = replace(model.config, ocr_gate=gate)
    return clone


# ---------------------------------------------------------------------- loading
def load_pipeline(config: SkutagConfig | None = None, model_dir: str | Path | None = None,
                  path_aliases: dict[str, str] | None = None) -> Pipeline:
    """A ready pipeline: cold start on the bundled defaults, or the trained bundle in ``model_dir``.
    ``path_aliases``: old category path -> new for a bundle trained before renames (default: the map
    ``skutag taxonomy update`` keeps beside the managed tree)."""
    config = config or SkutagConfig.load()
    if model_dir is None:
        return Pipeline(config)
    model, manifest, version = bundles.load(model_dir)
    if not isinstance(model, FusionModel):
        raise bundles.BundleError(f"{version.path}: the bundle does not hold a fusion model")
    config = _config_for_bundle(config, manifest, version)
    collector = EvidenceCollector(config, use_cache=config.fusion.cache_features, tail=bundles.load_tail(version))
    aliases = managed_path_aliases() if path_aliases is None else dict(path_aliases)
    pipeline = Pipeline(config, model=model, manifest=manifest, bundle=version, collector=collector,
                        path_aliases=aliases)
    _warn_version_drift(pipeline, manifest, version)
    return pipeline


def managed_aliases_file() -> Path:
    """Where ``skutag taxonomy update`` records renames: beside the managed tree."""
    return artifact_dir("taxonomy") / ALIASES_FILE_NAME


def managed_path_aliases() -> dict[str, str]:
    """The renames ``skutag taxonomy update`` recorded beside the managed tree (empty when none)."""
    return load_aliases(managed_aliases_file())


def _config_for_bundle(config: SkutagConfig, manifest: dict[str, Any], version: bundles.BundleVersion) -> SkutagConfig:
    """The bundle's vision settings must be reproduced: embeddings of another backbone mean nothing to it."""
    stages = manifest.get("stages", {})
    vision = stages.get("vision")
    if vision and vision.get("backbone") and vision["backbone"] != config.vision.backbone:
        raise IncompatibleModelError(
            f"model bundle {version.path} was trained on vision features of {vision['backbone']!r}, but the config "
            f"asks for {config.vision.backbone!r}. Set vision.backbone = {vision['backbone']!r} "
            f"(SKUTAG_VISION__BACKBONE={vision['backbone']}) or retrain with this backbone.")
    return config


_DRIFT_MEANS = {
    "taxonomy": "categories added since are unknown to it, removed ones it may still answer (renamed ones follow "
                "through the path aliases)",
    "label_map": "vision labels mapped since do not change its answers",
    "lexicon": "brands added since are unknown to it",
}


def _warn_version_drift(pipeline: Pipeline, manifest: dict[str, Any], version: bundles.BundleVersion) -> None:
    """The managed taxonomy, label map or brand lexicon changed since the bundle was trained: warn (or, with
    ``fusion.strict_versions``, refuse)."""
    recorded = manifest.get("versions", {})
    if not recorded:
        return
    now = managed_versions(pipeline.collector.lexicon)
    drifted = [kind for kind in _DRIFT_MEANS if recorded.get(kind) and recorded[kind] != now[kind]]
    if not drifted:
        return
    changes = "; ".join(f"{kind.replace('_', ' ')} {recorded[kind]} -> {now[kind]}: {_DRIFT_MEANS[kind]}"
                        for kind in drifted)
    message = (f"model bundle {version.path} was trained with other versions of what it reads ({changes}); "
               "retrain it from a catalog labelled with today's categories (`skutag train`, or `skutag retrain` with "
               "corrections for the categories that changed) to follow these edits.")
    if pipeline.config.fusion.strict_versions:
        raise bundles.BundleError(message + " (fusion.strict_versions is on)")
    log.warning(message)
