"""The GroceryStore manifest (``../shared/data/grocery``), read one way for every test."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from conftest import shared_path


@dataclass(frozen=True)
class GroceryRow:
    split: str
    image: Path  # absolute
    top: str
    coarse: str
    fine: str
    title: str  # the shop's Swedish product title
    brand: str | None

    @property
    def path(self) -> str:
        return f"{self.top} > {self.coarse} > {self.fine}"

    def catalog_row(self, product_id: str) -> dict:
        """This photo as a catalog row (``skutag.catalog_io`` columns)."""
        return {"id": product_id, "image": str(self.image), "title": self.title, "category": self.path,
                "brand": self.brand}


@functools.lru_cache(maxsize=None)
def _read(root: Path) -> tuple[GroceryRow, ...]:
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return tuple(GroceryRow(row["split"], (root / row["image"]).resolve(), row["top_level"], row["coarse"],
                                row["fine"], row["title_sv"], row["brand"] or None)
                     for row in csv.DictReader(handle))


def grocery_manifest(split: str | None = None) -> list[GroceryRow]:
    """Every row of the manifest (of one split), in the manifest's order."""
    return [row for row in _read(shared_path("grocery")) if split is None or row.split == split]
