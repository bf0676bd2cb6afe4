"""Helpers shared by the vision tests: the imagenet_retail photos with their true classes."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import shared_path


def retail_photos() -> list[tuple[Path, int]]:
    """The 80 imagenet_retail photos (tests only, never shipped) with their ImageNet class index."""
    folder = shared_path("imagenet_retail")
    with open(folder / "manifest.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [(folder / row["image"], int(row["class_index"])) for row in rows]


def retail_photo(class_index: int) -> Path:
    for path, index in retail_photos():
        if index == class_index:
            return path
    raise LookupError(class_index)


def hits(results, truths) -> tuple[int, int]:
    """(top-1 hits, top-5 hits)."""
    top1 = sum(r.top_k[0].index == t for r, t in zip(results, truths))
    top5 = sum(t in [s.index for s in r.top_k[:5]] for r, t in zip(results, truths))
    return top1, top5
