"""``FusionModel``: evidence featurizer + ``FusionTagger`` + what the decisions need (class paths,
brand-sensitive classes, held-out answers for per-class thresholds). This is what a model bundle holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .config import FusionConfig
from .estimators import make_base_estimator
from .evidence import Evidence
from .features import EvidenceFeaturizer
from .gate import GateThresholds, fit_gate, gate_reads, top_candidates
from .stacking import FusionTagger


@dataclass
class Scores:
    """Class probabilities for a batch of products, from a trained model or the cold-start scorer."""

    classes: np.ndarray  # category paths, one per column
    proba: np.ndarray  # (n, len(classes)), rows sum to 1
    contributions: list[dict[str, float]] = field(default_factory=list)  # modality -> share, per row
    source: str = "model"
    usable: np.ndarray | None = None  # per row: any modality the scorer reads was there (None: every row)

    def top(self, row: int, k: int) -> list[tuple[str, float]]:
        order = np.argsort(-self.proba[row])[:k]
        return [(str(self.classes[j]), float(self.proba[row, j])) for j in order]

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        index = self.proba.argmax(axis=1)
        return self.classes[index], self.proba[np.arange(len(index)), index]


def contribution_shares(raw: np.ndarray, present: np.ndarray, names: Sequence[str]) -> list[dict[str, float]]:
    """Per row: each present modality's share of the positive push towards the chosen class."""
    out = []
    for values, mask in zip(raw, present):
        positive = np.where(mask, np.maximum(values, 0.0), 0.0)
        total = positive.sum()
        shares = {}
        for name, value, has in zip(names, positive, mask):
            if has:
                shares[name] = round(float(value / total), 3) if total > 0 else round(1.0 / mask.sum(), 3)
        out.append(shares)
    return out


class FusionModel:
    """Train on evidence + category paths; score new evidence.

    ``fit(evidence, paths, brands=None)``: ``brands`` (the catalog's brand column) marks which classes are
    brand-sensitive (OCR gating).
    """

    def __init__(self, config: FusionConfig | None = None, title_featurizer: Any = None):
        self.config = config or FusionConfig()
        self.title_featurizer = title_featurizer  # unfitted; None: text.TitleFeaturizer on the default TextConfig

    # ------------------------------------------------------------------ training
    def fit(self, evidence: Sequence[Evidence], paths: Sequence[str], brands: Sequence[str | None] | None = None,
            groups: Sequence[int] | None = None) -> "FusionModel":
        """``groups``: rows kept together by the out-of-fold splits (photo series, ``skutag.grouping``)."""
        self.fit_and_featurize(evidence, paths, brands, groups)
        return self

    def fit_and_featurize(self, evidence: Sequence[Evidence], paths: Sequence[str],
                          brands: Sequence[str | None] | None = None, groups: Sequence[int] | None = None):
        """``fit``, returning the training rows' feature matrix it fitted on (kept with the bundle, so an
        incremental update featurizes only the corrections)."""
        if len(evidence) != len(paths):
            raise ValueError(f"{len(evidence)} evidence rows but {len(paths)} category paths")
        self.calibration_ = None
        cfg = self.config
        started = time.perf_counter()
        self.featurizer_ = EvidenceFeaturizer(modalities=cfg.modalities, vision_top_k=cfg.vision_top_k,
                                              ocr_text_weighting=cfg.ocr_text_weighting,
                                              title_featurizer=self.title_featurizer)
        X = self.featurizer_.fit_transform(list(evidence))
        blocks = [(name, columns, make_base_estimator(getattr(cfg, f"{name}_estimator")))
                  for name, columns in self.featurizer_.blocks_]
        self.tagger_ = FusionTagger(
            blocks=blocks, cv=cfg.cv, shuffle=cfg.cv_shuffle, meta_l2=cfg.meta_l2, modality_dropout=cfg.modality_dropout,
            calibration=cfg.calibration, n_jobs=cfg.n_jobs, random_state=cfg.random_state,
            oof_without="ocr" if cfg.ocr_gate_fit else None, oof_top_k=cfg.ocr_gate_candidates,
        ).fit(X, np.asarray(paths, dtype=object), groups=groups)
        self.classes_ = np.asarray(self.tagger_.classes_, dtype=object)
        self.brand_sensitive_ = brand_sensitive(self.classes_, evidence, paths, brands)
        self.gate_ = self._fit_gate(np.asarray(paths, dtype=object))
        self.n_train_ = len(paths)
        self.train_paths_ = np.asarray(paths, dtype=object)
        self.fit_seconds_ = time.perf_counter() - started
        return X

    def _fit_gate(self, truth: np.ndarray) -> GateThresholds | None:
        """The OCR gate's thresholds fitted on the out-of-fold answers (``fusion.gate``), or None: the
        configured ones serve (no OCR block, ``ocr_gate_fit`` off, or a gate that is not ``auto``)."""
        cfg = self.config
        without = self.tagger_.oof_without_
        if without is None or cfg.ocr_gate != "auto":
            return None
        top_classes, top_proba = without
        return fit_gate(top_classes, top_proba, correct_without=self.classes_[top_classes[:, 0]] == truth,
                        correct_with=self.tagger_.oof_predictions_ == truth, sensitive=self.brand_sensitive_,
                        configured=self.configured_gate, brand_rules=cfg.ocr_gate_brand_sensitive)

    @property
    def configured_gate(self) -> GateThresholds:
        return GateThresholds(self.config.ocr_gate_confidence, self.config.ocr_gate_brand_confidence)

    @property
    def gate_thresholds(self) -> GateThresholds:
        """What the auto gate reads by: the fitted pair, else the configured one."""
        return self.gate_ if self.gate_ is not None else self.configured_gate

    # ------------------------------------------------------------------ scoring
    @property
    def modalities_(self) -> list[str]:
        return list(self.tagger_.block_names_)

    def score(self, evidence: Sequence[Evidence]) -> Scores:
        X = self.featurizer_.transform(list(evidence))
        proba, raw, present = self.tagger_.explain(X)
        shares = contribution_shares(raw, present, self.tagger_.block_names_)
        return Scores(classes=self.classes_, proba=proba, contributions=shares, source="model",
                      usable=present.any(axis=1))

    def needs_ocr(self, scores: Scores) -> np.ndarray:
        """OCR gating: for which rows reading the package can still change the answer."""
        cfg = self.config
        if cfg.ocr_gate not in GATES:
            raise ValueError(f"fusion.ocr_gate must be one of {sorted(GATES)}, got {cfg.ocr_gate!r}")
        if "ocr" not in self.modalities_:
            return np.zeros(len(scores.proba), dtype=bool)
        return GATES[cfg.ocr_gate](self, scores)

    @property
    def oof_(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out (out-of-fold) predicted paths and confidences of the training rows."""
        return self.tagger_.oof_predictions_, self.tagger_.oof_confidences_

    def calibrate(self, evidence: Sequence[Evidence], paths: Sequence[str], *, temperature: bool = True
                  ) -> "FusionModel":
        """Fit the temperature (optional) and keep held-out answers on a separate labelled calibration set;
        per-class thresholds, and a fitted OCR gate, are then chosen on these rows instead of the out-of-fold
        training rows."""
        if len(evidence) != len(paths) or not len(paths):
            raise ValueError(f"calibration needs labelled rows; got {len(evidence)} evidence rows, {len(paths)} paths")
        truth = np.asarray(paths, dtype=object)
        if temperature:
            self.tagger_.refit_temperature(self.featurizer_.transform(list(evidence)), truth)
        predicted, confidence = self.score(evidence).best()
        if self.gate_ is not None:  # fitted again on these rows, as the temperature: they are held out
            top_classes, top_proba = top_candidates(self.score([ev.without("ocr") for ev in evidence]).proba,
                                                    self.config.ocr_gate_candidates)
            self.gate_ = fit_gate(top_classes, top_proba, correct_without=self.classes_[top_classes[:, 0]] == truth,
                                  correct_with=np.asarray(predicted, dtype=object) == truth,
                                  sensitive=self.brand_sensitive_, configured=self.configured_gate,
                                  brand_rules=self.config.ocr_gate_brand_sensitive)
        self.calibration_ = (np.asarray(predicted, dtype=object), np.asarray(confidence, dtype=float), truth)
        return self

    @property
    def calibrated_(self) -> bool:
        return self.calibration_ is not None

    @property
    def threshold_rows_(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(predicted, confidence, truth) held-out rows to choose per-class thresholds on: the calibration set
        when the model has one, else the out-of-fold training rows."""
        calibration = self.calibration_
        if calibration is not None:
            return calibration
        predicted, confidence = self.oof_
        return predicted, confidence, self.train_paths_

    def summary(self) -> dict[str, Any]:
        return {
            "classes": int(len(self.classes_)),
            "modalities": self.modalities_,
            "modality_weights": {k: round(v, 3) for k, v in self.tagger_.modality_weights_.items()},
            "modality_coverage": {n: round(float(c), 3) for n, c in zip(self.tagger_.block_names_,
                                                                          self.tagger_.block_coverage_)},
            "temperature": round(float(self.tagger_.temperature_), 3),
            "temperatures_by_modalities": {k: round(v, 3) for k, v in self.tagger_.modality_set_temperatures_.items()},
            "brand_sensitive_classes": int(self.brand_sensitive_.sum()),
            "n_train": int(self.n_train_),
            "fit_seconds": round(float(self.fit_seconds_), 2),
            "ocr_gate": self.gate_.to_json() if self.gate_ is not None else None,
        }


def brand_sensitive(classes: Sequence[str], evidence: Sequence[Evidence], paths: Sequence[str],
                    brands: Sequence[str | None] | None) -> np.ndarray:
    """Per class (``classes`` order): whether its products are told apart by brand. Half of its rows name a brand
    in the catalog (brand column or title), or OCR read at least 3 of its photos and found a brand on 30%."""
    index = {c: i for i, c in enumerate(classes)}
    branded = np.zeros(len(classes))
    ocr_brand = np.zeros(len(classes))
    with_ocr = np.zeros(len(classes))
    counts = np.zeros(len(classes))
    for i, (ev, path) in enumerate(zip(evidence, paths)):
        j = index[path]
        counts[j] += 1
        if (brands is not None and brands[i]) or ev.title_brands:
            branded[j] += 1
        if ev.ocr is not None:
            with_ocr[j] += 1
            ocr_brand[j] += bool(ev.ocr.brands)
    by_catalog = branded / np.maximum(counts, 1) >= 0.5
    by_ocr = (with_ocr >= 3) & (ocr_brand / np.maximum(with_ocr, 1) >= 0.3)
    return by_catalog | by_ocr


def _gate_auto(model: FusionModel, scores: Scores) -> np.ndarray:
    cfg = model.config
    thresholds = model.gate_thresholds
    top_classes, top_proba = top_candidates(scores.proba, cfg.ocr_gate_candidates)
    return gate_reads(top_classes, top_proba, model.brand_sensitive_, thresholds.confidence,
                      thresholds.brand_confidence, brand_rules=cfg.ocr_gate_brand_sensitive)


GATES = {
    "auto": _gate_auto,
    "always": lambda model, scores: np.ones(len(scores.proba), dtype=bool),
    "never": lambda model, scores: np.zeros(len(scores.proba), dtype=bool),
}
