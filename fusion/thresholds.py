"""Auto-tag thresholds: the confidence above which a class is tagged without a human, chosen on held-out answers
(out-of-fold training answers, or a calibration catalogue) for ``decision.target_precision``.

``decision.threshold_method``:

- ``"bound"`` (default): a class's cut is the lowest confidence at which a lower bound of its precision still
  reaches the target: the ``decision.threshold_confidence`` quantile of the Beta posterior of its precision,
  from its own held-out answers above the cut plus ``decision.threshold_prior_rows`` pseudo-answers at the
  precision all classes have there (so a class with few answers leans on the pooled figure, and one whose
  answers are wrong cannot auto-tag at all). Classes with fewer than ``decision.min_class_support`` answers get
  the pooled cut: the lowest at which the same bound over all classes' answers reaches the target. Nothing
  is auto-tagged below the target's bound, and no class falls back to the global ``auto_threshold``.
- ``"empirical"``: the lowest cut whose observed precision reaches the target, per class with enough
  answers; the others keep ``auto_threshold`` (skutag 0.1's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .config import DecisionConfig

NEVER = 1.000001  # a threshold no confidence reaches: the class is never auto-tagged


@dataclass(frozen=True)
class ThresholdFit:
    """Per-class cuts (every class the model knows has one), the pooled cut, and what they promise on the
    answers they were chosen on: auto-rate and precision with its interval."""

    thresholds: dict[str, float]
    pooled: float
    expected_auto_rate: float
    expected_precision: float | None
    precision_interval: tuple[float, float] | None
    rows: int

    def to_json(self) -> dict:
        return {"pooled_threshold": round(self.pooled, 4), "expected_auto_rate": round(self.expected_auto_rate, 4),
                "expected_precision": None if self.expected_precision is None else round(self.expected_precision, 4),
                "precision_interval": None if self.precision_interval is None else
                [round(x, 4) for x in self.precision_interval], "rows": self.rows,
                "never_auto": sorted(c for c, t in self.thresholds.items() if t >= NEVER)}


def precision_interval(correct: int, total: int, level: float = 0.95) -> tuple[float, float] | None:
    """Two-sided Clopper-Pearson interval of a precision of ``correct`` out of ``total``; None for no rows."""
    if total <= 0:
        return None
    from scipy.stats import beta

    tail = (1.0 - level) / 2
    low = 0.0 if correct == 0 else float(beta.ppf(tail, correct, total - correct + 1))
    high = 1.0 if correct == total else float(beta.ppf(1 - tail, correct + 1, total - correct))
    return low, high


def _lower_bounds(hits: np.ndarray, counts: np.ndarray, prior_precision: np.ndarray, prior_rows: float,
                  confidence: float) -> np.ndarray:
    """The ``1 - confidence`` quantile of Beta(1 + hits + m p, 1 + misses + m (1 - p)) per cut."""
    from scipy.stats import beta

    a = 1.0 + hits + prior_rows * prior_precision
    b = 1.0 + (counts - hits) + prior_rows * (1.0 - prior_precision)
    return beta.ppf(1.0 - confidence, a, b)


def _pooled_precision_at(confidence: np.ndarray, correct: np.ndarray):
    """precision(t): the pooled precision of the answers at or above ``t`` (step function)."""
    order = np.argsort(-confidence, kind="stable")
    sorted_conf = confidence[order]
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)

    def at(cuts: np.ndarray) -> np.ndarray:
        # number of answers with confidence >= cut, for a descending array: searchsorted on the negation
        n = np.searchsorted(-sorted_conf, -cuts, side="right")
        return np.where(n > 0, precision[np.maximum(n - 1, 0)], 1.0)

    return at


def fit_bound_thresholds(predicted: Sequence[str], confidence: Sequence[float], truth: Sequence[str],
                         classes: Iterable[str], config: DecisionConfig) -> ThresholdFit:
    """The ``"bound"`` method (see the module's docstring) for every class in ``classes``."""
    predicted = np.asarray(predicted, dtype=object)
    confidence = np.asarray(confidence, dtype=float)
    correct = predicted == np.asarray(truth, dtype=object)
    target, level, prior_rows = config.target_precision, config.threshold_confidence, config.threshold_prior_rows
    pooled_at = _pooled_precision_at(confidence, correct)
    order = np.argsort(-confidence, kind="stable")
    hits, counts = np.cumsum(correct[order]), np.arange(1, len(order) + 1)
    pooled_bound = _lower_bounds(hits, counts, np.zeros(len(order)), 0.0, level) if len(order) else np.zeros(0)
    ok = np.flatnonzero(pooled_bound >= target)
    pooled = float(confidence[order][ok[-1]]) if len(ok) else NEVER
    thresholds: dict[str, float] = {}
    for cls in classes:
        rows = np.flatnonzero(predicted == cls)
        if len(rows) < config.min_class_support:
            thresholds[str(cls)] = pooled
            continue
        rows = rows[np.argsort(-confidence[rows], kind="stable")]
        cuts = confidence[rows]
        bound = _lower_bounds(np.cumsum(correct[rows]), np.arange(1, len(rows) + 1), pooled_at(cuts), prior_rows,
                              level)
        good = np.flatnonzero(bound >= target)
        thresholds[str(cls)] = float(cuts[good[-1]]) if len(good) else NEVER
    # what these cuts promise on the answers they were chosen on
    cut = np.array([thresholds.get(str(p), NEVER) for p in predicted]) if len(predicted) else np.zeros(0)
    auto = confidence >= cut
    n_auto, n_right = int(auto.sum()), int((auto & correct).sum())
    return ThresholdFit(thresholds, pooled, expected_auto_rate=float(auto.mean()) if len(auto) else 0.0,
                        expected_precision=n_right / n_auto if n_auto else None,
                        precision_interval=precision_interval(n_right, n_auto), rows=len(predicted))


def fit_thresholds(predicted: Sequence[str], confidence: Sequence[float], truth: Sequence[str],
                   classes: Iterable[str], config: DecisionConfig, *, calibration_set: bool = False) -> dict[str, float]:
    """Per-class auto thresholds by ``config.threshold_method`` (one home for the choice)."""
    classes = list(classes)
    if config.threshold_method == "bound":
        return fit_bound_thresholds(predicted, confidence, truth, classes, config).thresholds
    if calibration_set:
        return fit_calibrated_thresholds(predicted, confidence, truth, classes, config.target_precision,
                                         config.min_class_support)
    return fit_class_thresholds(predicted, confidence, truth, config.target_precision, config.min_class_support)


def fit_class_thresholds(predicted: Sequence[str], confidence: Sequence[float], truth: Sequence[str],
                         target_precision: float, min_support: int) -> dict[str, float]:
    """Per predicted class: the lowest confidence cut whose auto-tags reach ``target_precision`` on these
    held-out rows (above every confidence when none does). Classes predicted fewer than ``min_support``
    times get no entry (they use the global threshold)."""
    predicted = np.asarray(predicted, dtype=object)
    confidence = np.asarray(confidence, dtype=float)
    correct = predicted == np.asarray(truth, dtype=object)
    thresholds: dict[str, float] = {}
    for cls in np.unique(predicted):
        rows = np.flatnonzero(predicted == cls)
        if len(rows) < min_support:
            continue
        order = rows[np.argsort(-confidence[rows], kind="stable")]
        precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
        ok = np.flatnonzero(precision >= target_precision)
        if len(ok) == 0:
            thresholds[str(cls)] = float(min(1.0, confidence[order[0]] + 1e-6))
        else:
            thresholds[str(cls)] = float(confidence[order[ok[-1]]])
    return thresholds


def fit_calibrated_thresholds(predicted: Sequence[str], confidence: Sequence[float], truth: Sequence[str],
                              classes: Iterable[str], target_precision: float, min_support: int) -> dict[str, float]:
    """Thresholds from a separate calibration set: per-class cuts where a class has ``min_support`` rows, and
    for every other class the one global cut that reaches ``target_precision`` on all calibration rows."""
    correct = np.asarray(predicted, dtype=object) == np.asarray(truth, dtype=object)
    _, fallback = coverage_at_precision(confidence, correct, target_precision)
    per_class = fit_class_thresholds(predicted, confidence, truth, target_precision, min_support)
    return {**{str(c): fallback for c in classes}, **per_class}


def coverage_precision_curve(confidence: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, coverage, precision) when everything at or above a global threshold is auto-tagged."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    counts = np.arange(1, len(order) + 1)
    return confidence[order], counts / max(len(order), 1), hits / counts


def coverage_at_precision(confidence: Sequence[float], correct: Sequence[bool], target: float) -> tuple[float, float]:
    """(largest coverage whose precision >= target, the threshold giving it); (0, 1) when none does."""
    thresholds, coverage, precision = coverage_precision_curve(confidence, correct)
    ok = np.flatnonzero(precision >= target)
    if len(ok) == 0:
        return 0.0, 1.0
    i = ok[-1]
    return float(coverage[i]), float(thresholds[i])
