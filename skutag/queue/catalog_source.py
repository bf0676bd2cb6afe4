"""Stream a catalog file (JSONL or CSV) as products, row errors carried with their line number.

Batches run over catalogs of millions of rows, so rows are read lazily, never all at once
(``skutag.catalog_io.read_catalog`` builds the whole list). Each row is turned into a product by
``skutag.catalog_io.row_to_product``, so a row means the same to ``batch`` as to ``tag``/``train``
(price text like "¥12.5", relative image paths, a missing id becoming ``line-N``, a row with
neither image nor title being malformed).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from skutag.catalog import Product
from skutag.catalog_io import CatalogError, row_to_product

JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
CSV_SUFFIXES = {".csv", ".tsv"}
FIELDS = ("id", "image", "title", "price", "category", "brand")


class CatalogFormatError(CatalogError):
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
        return sum(1 for raw in handle if raw.strip() and not raw.lstrip().startswith(b"#"))


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip() or text.lstrip().startswith("#"):
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
        reader = csv.reader(handle, delimiter=delimiter)
        header = [name.strip().lower() for name in next(reader, [])]
        if not {"image", "title"} & set(header):
            raise CatalogFormatError(f"{path}: the header must name an 'image' or 'title' column; got {header}")
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, RowError(reader.line_num, f"not valid CSV ({exc})")
                continue
            line = reader.line_num
            if not values or all(not value.strip() for value in values):
                continue
            if len(values) != len(header):
                yield line, RowError(line, f"expected {len(header)} fields, got {len(values)}")
                continue
            yield line, dict(zip(header, values))


def _product(row: Mapping[str, Any], line: int, base: Path) -> Product | RowError:
    try:
        return row_to_product(row, line, base_dir=base)
    except ValueError as exc:
        product_id = row.get("id")
        return RowError(line, str(exc), str(product_id).strip() if isinstance(product_id, (str, int)) else None)
