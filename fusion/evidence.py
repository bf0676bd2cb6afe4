"""What the fusion stage gets about one product: per-modality evidence, any of it possibly missing.

The application turns stage outputs (``vision.VisionResult``, ``ocr.OcrResult`` + brand matches, the
title and price from the catalog) into these plain records; the fusion stage never imports the stages'
runtime code, so a model can be trained and evaluated from cached evidence alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class VisionEvidence:
    """Top-k labels ``(label, index, prob)`` (highest first) and the L2-normalised embedding."""

    labels: tuple[tuple[str, int, float], ...] = ()
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    model_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"labels": [list(x) for x in self.labels], "model_id": self.model_id}


@dataclass(frozen=True)
class OcrEvidence:
    """Text read on the package and the brands recognised in it."""

    lines: tuple[tuple[str, float], ...] = ()  # (text, recognition score)
    brands: tuple[tuple[str, float], ...] = ()  # (canonical brand, match score 0..1), best first
    # per line, 0..1: glyph size against the photo's largest text and closeness to its centre
    # (``ocr.brands.line_prominence``); empty for evidence recorded without boxes
    prominence: tuple[float, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(text for text, _ in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {"lines": [list(x) for x in self.lines], "brands": [list(x) for x in self.brands],
                "prominence": list(self.prominence)}


@dataclass(frozen=True)
class Evidence:
    """All that is known about one product. ``title_brands`` are brands the title names."""

    id: str
    vision: VisionEvidence | None = None
    ocr: OcrEvidence | None = None
    title: str | None = None
    price: float | None = None
    title_brands: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # per-stage problems (e.g. "image: not an image"); the rest still counts

    @property
    def modalities(self) -> tuple[str, ...]:
        present = []
        if self.vision is not None:
            present.append("vision")
        if self.ocr is not None:
            present.append("ocr")
        if self.title:
            present.append("title")
        if self.price is not None:
            present.append("price")
        return tuple(present)

    @property
    def has_any(self) -> bool:
        return bool(self.modalities)

    def without(self, *modalities: str) -> "Evidence":
        """A copy with the given modalities removed (for ablations and gating)."""
        changes: dict[str, Any] = {}
        for name in modalities:
            try:
                changes.update(_EMPTY[name])
            except KeyError:
                raise ValueError(f"unknown modality {name!r}; known: {sorted(_EMPTY)}") from None
        return replace(self, **changes)


# what a product looks like without each modality
_EMPTY: dict[str, dict[str, Any]] = {
    "vision": {"vision": None},
    "ocr": {"ocr": None},
    "title": {"title": None, "title_brands": ()},
    "price": {"price": None},
}
