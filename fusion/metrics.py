"""Evaluation metrics for tagging results against true category paths."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import f1_score

from .thresholds import coverage_at_precision, precision_interval
from .result import PATH_SEPARATOR, Decision, TagResult


def level_accuracy(truth: Sequence[str], predicted: Sequence[str | None]) -> list[float]:
    """Accuracy of each level's path prefix (level 1 = top level), over rows whose truth has that level."""
    split_truth = [t.split(PATH_SEPARATOR) for t in truth]
    split_pred = [(p or "").split(PATH_SEPARATOR) if p else [] for p in predicted]
    depth = max((len(t) for t in split_truth), default=0)
    out = []
    for level in range(1, depth + 1):
        rows = [(t, p) for t, p in zip(split_truth, split_pred) if len(t) >= level]
        hits = sum(t[:level] == p[:level] for t, p in rows)
        out.append(round(hits / len(rows), 4) if rows else 0.0)
    return out


def tagging_metrics(truth: Sequence[str], results: Sequence[TagResult], target_precision: float = 0.95) -> dict[str, Any]:
    """n, accuracy (leaf = full path), macro_f1, level_accuracy, auto_rate, auto_precision and the
    coverage reachable at ``target_precision`` with one global threshold. ``auto_precision`` is None when
    nothing was auto-tagged (a precision of nothing is undefined, not 0)."""
    n = len(truth)
    key = int(round(target_precision * 100))
    if n == 0:
        return {"n": 0, "accuracy": 0.0, "macro_f1": 0.0, "level_accuracy": [], "auto_rate": 0.0,
                "auto_precision": None, "auto_precision_interval": None, "review_rate": 0.0, "manual_rate": 0.0, f"auto_rate_at_{key}": 0.0,
                f"threshold_at_{key}": 1.0, "errors": 0}
    predicted = [r.path or "" for r in results]
    correct = np.array([p == t for p, t in zip(predicted, truth)])
    auto = np.array([r.decision is Decision.AUTO for r in results])
    review = np.array([r.decision is Decision.REVIEW for r in results])
    confidence = np.array([r.confidence if r.path else 0.0 for r in results])
    coverage, threshold = coverage_at_precision(confidence, correct, target_precision)
    return {
        "n": n,
        "accuracy": round(float(correct.mean()), 4),
        "macro_f1": round(float(f1_score(list(truth), predicted, average="macro", zero_division=0)), 4),
        "level_accuracy": level_accuracy(truth, predicted),
        "auto_rate": round(float(auto.mean()), 4),
        "auto_precision": round(float(correct[auto].mean()), 4) if auto.any() else None,
        "auto_precision_interval": _interval(int((auto & correct).sum()), int(auto.sum())),
        "review_rate": round(float(review.mean()), 4),
        "manual_rate": round(float((~auto & ~review).mean()), 4),
        f"auto_rate_at_{key}": round(coverage, 4),
        f"threshold_at_{key}": round(threshold, 4),
        "errors": int(sum(1 for r in results if r.error)),
    }


def _interval(correct: int, total: int) -> list[float] | None:
    found = precision_interval(correct, total)
    return None if found is None else [round(found[0], 4), round(found[1], 4)]


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += abs(correct[mask].mean() - confidence[mask].mean()) * mask.mean()
    return round(float(total), 4)
