"""OCR results: typed, frozen, JSON-ready."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Point = tuple[float, float]


@dataclass(frozen=True)
class OcrLine:
    """One recognised text line: its text, recognition score (0..1) and quadrilateral box (4 x/y points)."""

    text: str
    score: float
    box: tuple[Point, Point, Point, Point]

    @property
    def width(self) -> float:
        xs = [p[0] for p in self.box]
        return max(xs) - min(xs)

    @property
    def height(self) -> float:
        ys = [p[1] for p in self.box]
        return max(ys) - min(ys)

    @property
    def area(self) -> float:
        """Area of the box (shoelace formula), in pixels."""
        pts = self.box
        total = 0.0
        for i in range(len(pts)):
            x1, y1 = pts[i]
            x2, y2 = pts[(i + 1) % len(pts)]
            total += x1 * y2 - x2 * y1
        return abs(total) / 2.0

    @property
    def center(self) -> Point:
        return (sum(p[0] for p in self.box) / 4.0, sum(p[1] for p in self.box) / 4.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "score": round(float(self.score), 4),
            "box": [[round(float(x), 1), round(float(y), 1)] for x, y in self.box],
        }


@dataclass(frozen=True)
class OcrResult:
    """The lines read from one image, or the reason it could not be read (``error``)."""

    image: str
    lines: tuple[OcrLine, ...] = ()
    error: str | None = None
    width: int = 0
    height: int = 0
    content_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        """All lines joined by newlines (reading order of the backend)."""
        return "\n".join(line.text for line in self.lines)

    def with_image(self, image: str) -> "OcrResult":
        return OcrResult(image, self.lines, self.error, self.width, self.height, self.content_hash, self.meta)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "lines": [line.to_json() for line in self.lines],
            "error": self.error,
        }
