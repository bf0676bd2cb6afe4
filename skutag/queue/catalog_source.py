"""Stream a catalog file (JSONL or CSV) as products, row errors carried with their line number.

Batches run over catalogs of millions of rows, so rows are read lazily, never all at once.
Uses :mod:`skutag.catalog_io` when it offers a streaming reader; this module's own reader
follows the same catalog format (``id``, ``image`` relative to the file, ``title``, ``price``,
``category``, ``brand``) so ``skutag batch`` works on its own.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from skutag.catalog import Product

JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
CSV_SUFFIXES = {".csv", ".tsv"}
FIELDS = ("id", "image", "title", "price", "category", "brand")


class CatalogFormatError(ValueError):
    """The catalog file itself cannot be read (missing, unknown format, no header)."""


@dataclass(frozen=True)
class RowError:
    """A malformed row: skipped, reported with its line number."""

    line: int
    message: str
    id: str | None = None

    def describe(self, catalog: Path | str) -> str:
        return f"{catalog}:{self.line}: {self.message}"


def iter_catalog(path: str | Path) -> Iterator[Product | RowError]:
    """Products in file order; malformed rows as :class:`RowError`; duplicate ids are errors."""
    path = Path(path)
    if not path.is_file():
        raise CatalogFormatError(f"catalog not found: {path}")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        rows = _jsonl_rows(path)
    elif suffix in CSV_SUFFIXES:
        rows = _csv_rows(path, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        raise CatalogFormatError(f"catalog must be .jsonl or .csv: {path}")
    seen: dict[str, int] = {}
    for line, raw in rows:
        item = raw if isinstance(raw, RowError) else _product(raw, line, path.parent)
        if isinstance(item, Product):
            if item.id in seen:
                # reported under its line, so it never shadows the first row's result
                item = RowError(line, f"duplicate id {item.id!r} (first on line {seen[item.id]})")
            else:
                seen[item.id] = line
        yield item


def count_rows(path: str | Path) -> int:
    """Number of data rows (for the progress bar's total), without building products."""
    path = Path(path)
    if not path.is_file():
        raise CatalogFormatError(f"catalog not found: {path}")
    if path.suffix.lower() in CSV_SUFFIXES:
        return sum(1 for _ in _csv_rows(path, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    with path.open("rb") as handle:
        return sum(1 for raw in handle if raw.strip())


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, RowError(line, f"not valid JSON: {exc.msg}")
                continue
            if not isinstance(data, dict):
                yield line, RowError(line, f"a row must be a JSON object, got {type(data).__name__}")
                continue
            yield line, data


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if not reader.fieldnames or "id" not in reader.fieldnames:
            raise CatalogFormatError(f"{path}: the CSV header must name an 'id' column")
        for row in reader:
            line = reader.line_num
            if None in row:
                yield line, RowError(line, f"{len(row[None])} more cells than header columns", row.get("id"))
                continue
            yield line, row


def _product(row: Mapping[str, Any], line: int, base: Path) -> Product | RowError:
    product_id = _text(row.get("id"))
    if product_id is None:
        return RowError(line, "missing 'id'")
    try:
        price = _price(row.get("price"))
    except ValueError:
        return RowError(line, f"price is not a number: {row.get('price')!r}", product_id)
    image = _text(row.get("image"))
    return Product(
        id=product_id,
        image=str(base / image) if image else None,
        title=_text(row.get("title")),
        price=price,
        category=_text(row.get("category")),
        brand=_text(row.get("brand")),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def _price(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    price = float(value.strip()) if isinstance(value, str) else float(value)
    if math.isnan(price) or math.isinf(price) or price < 0:
        raise ValueError(value)
    return price
