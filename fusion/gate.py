"""The OCR gate's rule (``fusion.ocr_gate = "auto"``) and its thresholds fitted on out-of-fold answers.

OCR is most of a product's cost, so the gate reads a photo's text only where it can change the answer:

* the answer without OCR is below ``confidence``;
* or the leading candidate is brand-sensitive (its products are told apart by the print) and a rival among the
  top ``candidates`` is too;
* or the leading candidate is brand-sensitive and below ``brand_confidence``.

``fit_gate`` (``fusion.ocr_gate_fit``) lowers the two confidences, never above the configured ones, to the
pair that reads the fewest training rows while answering at least as many of them right, out of fold, as the
configured pair: each row is answered without its OCR where the pair skips it and with it where the pair reads
it. Both answers come from the fitted model itself (``FusionTagger.oof_without_``), so the thresholds follow how
sure this catalog's photos make it, not a constant chosen on another catalog.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MIN_CANDIDATE_PROBA = 0.02  # a rival below this is not a candidate
CONFIDENCE_GRID = np.round(np.arange(0.50, 0.99, 0.05), 2)  # confidences tried by the fit (plus the configured)
BRAND_GRID = np.round(np.arange(0.50, 0.995, 0.02), 2)


@dataclass(frozen=True)
class GateThresholds:
    """The gate's two confidences and, for a fitted pair, what it did on the training rows (out of fold)."""

    confidence: float
    brand_confidence: float
    read_share: float | None = None  # training rows the pair reads
    configured_read_share: float | None = None  # ... that the configured pair reads
    correct: int | None = None  # training rows answered right under the pair
    configured_correct: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def gate_reads(top_classes: np.ndarray, top_proba: np.ndarray, sensitive: np.ndarray, confidence: float,
               brand_confidence: float, brand_rules: bool = True) -> np.ndarray:
    """Per row, whether the gate reads OCR. ``top_classes`` / ``top_proba``: each row's leading candidates
    (class indices and probabilities, best first, without OCR); ``sensitive``: brand-sensitive per class."""
    top_conf = top_proba[:, 0]
    unsure = top_conf < confidence
    if not brand_rules:
        return unsure
    candidate = sensitive[top_classes] & (top_proba >= MIN_CANDIDATE_PROBA)
    contested = candidate[:, 0] & (candidate[:, 1:].sum(axis=1) >= 1)
    branded_unsure = candidate[:, 0] & (top_conf < brand_confidence)
    return unsure | contested | branded_unsure


def top_candidates(proba: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` most probable classes and their probabilities, best first."""
    k = max(1, min(int(k), proba.shape[1]))
    order = np.argsort(-proba, axis=1)[:, :k]
    return order, np.take_along_axis(proba, order, axis=1)


def fit_gate(top_classes: np.ndarray, top_proba: np.ndarray, correct_without: np.ndarray,
             correct_with: np.ndarray, sensitive: np.ndarray, configured: GateThresholds,
             brand_rules: bool = True) -> GateThresholds:
    """The pair at most ``configured`` that reads the fewest rows with at least its correct answers.
    ``top_*``: out-of-fold candidates without OCR; ``correct_without`` / ``correct_with``: whether the
    out-of-fold answer without / with the row's OCR is right (the same where the row has none)."""
    correct_without = np.asarray(correct_without, bool)
    correct_with = np.asarray(correct_with, bool)

    def outcome(confidence: float, brand_confidence: float) -> tuple[int, int]:
        reads = gate_reads(top_classes, top_proba, sensitive, confidence, brand_confidence, brand_rules)
        return int(reads.sum()), int(np.where(reads, correct_with, correct_without).sum())

    base_reads, base_correct = outcome(configured.confidence, configured.brand_confidence)
    best = (base_reads, -configured.confidence, -configured.brand_confidence)
    chosen = (configured.confidence, configured.brand_confidence, base_reads, base_correct)
    confidences = [c for c in CONFIDENCE_GRID if c < configured.confidence] + [configured.confidence]
    for confidence in confidences:
        brands = [b for b in BRAND_GRID if confidence <= b < configured.brand_confidence]
        for brand_confidence in brands + [max(confidence, configured.brand_confidence)]:
            if brand_confidence > configured.brand_confidence:
                continue
            reads, correct = outcome(confidence, brand_confidence)
            # fewest reads; among equals the higher (safer) thresholds
            key = (reads, -confidence, -brand_confidence)
            if correct >= base_correct and key < best:
                best, chosen = key, (float(confidence), float(brand_confidence), reads, correct)
    n = max(len(correct_with), 1)
    return GateThresholds(confidence=chosen[0], brand_confidence=chosen[1], read_share=chosen[2] / n,
                          configured_read_share=base_reads / n, correct=chosen[3], configured_correct=base_correct)
