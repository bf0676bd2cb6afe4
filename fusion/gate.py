"""The OCR gate's rule (``fusion.ocr_gate = "auto"``) and its thresholds fitted on out-of-fold answers.

OCR is most of a product's cost, so the gate reads a photo's text only where it can change the answer:

* the answer without OCR is below ``confidence``;
* or the leading candidate is brand-sensitive (its products are told apart by the print) and a rival among the
  top ``candidates`` is too;
* or the leading candidate is brand-sensitive and below ``brand_confidence``.

``fit_gate`` (``fusion.ocr_gate_fit``, off by default) lowers the two confidences, never above the configured
ones, to the pair that reads the fewest rows of a labelled set while still reading every row where the configured
pair's read turned a wrong answer right. Each row is answered without its OCR and with it by the model itself: out
of fold on the training rows (``FusionTagger.oof_without_``), or on a calibration set's rows. Rows the text turned
from right to wrong do not lower the pair further: a fix is never traded for a row the text spoiled.
Training rows answered out of fold can be surer than new photos (other shelves, other light), and a pair fitted
on them can then skip photos whose text would have fixed the answer (measured in docs/scale-out.md): the fit is
opt-in, and a calibration set of photos like the ones to tag is the better place to fit it.
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
    """The gate's two confidences and, for a fitted pair, what it did on the rows it was fitted on."""

    confidence: float
    brand_confidence: float
    read_share: float | None = None  # rows the pair reads
    configured_read_share: float | None = None  # ... that the configured pair reads
    fixes: int | None = None  # rows the text turned from wrong to right that the configured pair reads (all read)

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
    """The pair at most ``configured`` that reads the fewest rows and every row the configured pair reads where
    the text fixes the answer. ``top_*``: the rows' candidates without OCR; ``correct_without`` /
    ``correct_with``: whether the answer without / with the row's OCR is right (the same where it has none)."""
    fixed = np.asarray(correct_with, bool) & ~np.asarray(correct_without, bool)

    def reads(confidence: float, brand_confidence: float) -> np.ndarray:
        return gate_reads(top_classes, top_proba, sensitive, confidence, brand_confidence, brand_rules)

    configured_reads = reads(configured.confidence, configured.brand_confidence)
    must = fixed & configured_reads
    best = (int(configured_reads.sum()), -configured.confidence, -configured.brand_confidence)
    confidences = [float(c) for c in CONFIDENCE_GRID if c < configured.confidence] + [configured.confidence]
    for confidence in confidences:
        brands = [float(b) for b in BRAND_GRID if confidence <= b < configured.brand_confidence]
        for brand_confidence in brands + [configured.brand_confidence]:
            read = reads(confidence, brand_confidence)
            key = (int(read.sum()), -confidence, -brand_confidence)  # fewest reads; then the higher thresholds
            if key < best and not (must & ~read).any():
                best = key
    n = max(len(fixed), 1)
    return GateThresholds(confidence=-best[1], brand_confidence=-best[2], read_share=best[0] / n,
                          configured_read_share=float(configured_reads.sum()) / n, fixes=int(must.sum()))
