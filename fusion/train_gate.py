"""Which training photos OCR reads (``fusion.ocr_train_gate``): the policy, without the reading.

Serving reads a photo's text only where the gate says it can change the answer (``FusionModel.needs_ocr``),
while reading every training photo was most of a cold ``skutag train`` of a photo catalog. With ``"auto"``
training reads:

1. a seeded random sample (``fusion.ocr_train_sample``): the OCR block sees typical photos of every kind, and
   the sample tells which categories carry brands on the package (``brand_sensitive``);
2. every photo of those categories: variants of one brand look alike and the print decides (the gate reads
   them at serving too);
3. the photos a model without OCR, fitted out of fold, gets wrong or answers below
   ``fusion.ocr_gate_brand_confidence``: where the text can change the answer.

Left unread: photos of unbranded categories that the other evidence already tells apart. ``"all"`` reads
every photo (docs/fusion.md compares both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .config import FusionConfig
from .evidence import Evidence
from .model import brand_sensitive


def gates_training_ocr(config: FusionConfig) -> bool:
    """Whether training reads OCR for some photos only: ``ocr_train_gate = "auto"``, a model that reads OCR
    through the auto gate (served ``"always"``, it reads every photo at training too), and vision to be unsure."""
    return (config.ocr_train_gate == "auto" and config.ocr_gate == "auto"
            and "ocr" in config.modalities and "vision" in config.modalities)


def sample_rows(n_rows: int, share: float, seed: int) -> np.ndarray:
    """The random sample (a boolean per row), the same for the same rows, share and seed."""
    return np.random.default_rng(seed).random(n_rows) < share


@dataclass(frozen=True)
class TrainingReads:
    """The rows to read after the sample, and why."""

    rows: np.ndarray  # bool per row: read next (never a sampled row)
    branded_classes: tuple[str, ...]  # categories the sample found brands in
    branded_rows: int  # rows of those categories
    unsure_rows: int  # rows the model without OCR got wrong or answered below the confidence floor

    def record(self) -> dict:
        return {"branded_classes": len(self.branded_classes), "branded_rows": self.branded_rows,
                "unsure_rows": self.unsure_rows}


def rows_after_sample(evidence: Sequence[Evidence], paths: Sequence[str], brands: Sequence[str | None] | None,
                      sample: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
                      config: FusionConfig) -> TrainingReads:
    """``evidence``: the training rows with OCR read for the ``sample`` rows only; ``predicted`` /
    ``confidence``: out-of-fold answers of a model fitted without OCR."""
    truth = np.asarray(paths, dtype=object)
    classes = np.unique(truth)
    sensitive = brand_sensitive(classes, evidence, truth, brands)
    branded = np.isin(truth, classes[sensitive])
    unsure = (np.asarray(confidence) < config.ocr_gate_brand_confidence) | (np.asarray(predicted, dtype=object) != truth)
    return TrainingReads(rows=~np.asarray(sample, bool) & (branded | unsure),
                         branded_classes=tuple(str(c) for c in classes[sensitive]),
                         branded_rows=int(branded.sum()), unsure_rows=int(unsure.sum()))
