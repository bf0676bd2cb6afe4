"""Catalog rows: the unit users work in (JSONL or CSV, one product per row).

Columns: ``id``, ``image`` (path relative to the catalog file), ``title``, ``price``,
``category`` (levels joined by `` > ``), ``brand`` (optional). Any of image/title/price may
be missing. Readers (in ``skutag.catalog_io``) report malformed rows with their line number
and go on with the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skutag.taxonomy.nodes import PATH_SEPARATOR  # noqa: F401  (catalog categories are paths)

if TYPE_CHECKING:
    from skutag.vision.photo import Photo


@dataclass(frozen=True)
class Product:
    """One product as the pipeline sees it. ``image`` is a path (absolute or resolved), raw bytes, or a
    ``skutag.vision.photo.Photo`` (read and decoded once for every stage: the service's uploads)."""

    id: str
    image: str | Path | bytes | Photo | None = None
    title: str | None = None
    price: float | None = None
    category: str | None = None  # the true path, when known (training, eval, corrections)
    brand: str | None = None

    def __post_init__(self) -> None:
        if self.price is not None and (not isinstance(self.price, (int, float)) or math.isnan(self.price)):
            object.__setattr__(self, "price", None)
        if isinstance(self.title, str) and not self.title.strip():
            object.__setattr__(self, "title", None)

    @property
    def has_input(self) -> bool:
        return self.image is not None or self.title is not None
