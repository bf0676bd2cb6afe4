"""Typed results of the vision stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LabelScore:
    """One of the top-k classes: its (Chinese) label, its index in the label list, its softmax probability."""

    label: str
    index: int
    prob: float

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "prob": round(float(self.prob), 6)}


@dataclass(frozen=True)
class VisionResult:
    """What the vision stage says about one image.

    ``top_k`` is sorted by probability (highest first). ``embedding`` is the L2-normalised
    penultimate feature vector (float32, ``VisionModel.embedding_dim`` long) for the fusion layer.
    When the image could not be used, ``error`` says why, ``top_k`` is empty and ``embedding`` is None.
    """

    image: str
    top_k: tuple[LabelScore, ...] = ()
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    model_id: str = ""
    model_version: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def best(self) -> LabelScore | None:
        return self.top_k[0] if self.top_k else None

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "top_k": [score.to_json() for score in self.top_k],
            "error": self.error,
        }
