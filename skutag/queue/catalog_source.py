"""Stream a catalog file (JSONL or CSV) as products, row errors carried with their line number.

Batches run over catalogs of millions of rows, so rows are read lazily, never all at once
(``skutag.catalog_io.read_catalog`` builds the whole list). Each row is turned into a product by
``skutag.catalog_io.row_to_product``, so a row means the same to ``batch`` as to ``tag``/``train``
(price text like "¥12.5", relative image paths, a missing id becoming ``line-N``, a row with
neither image nor title being malformed).

An id belongs to the first row that names it, valid or malformed: a later row with the same id is a
duplicate (reported by its line), so a malformed repeat never displaces a product already read. With
``id_prefix`` (batches into a database shared by many catalogs) a row without an id becomes
``<id_prefix>:line-N`` instead, unique to its catalog.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterator

from skutag.catalog import Product
from skutag.catalog_io import CatalogError, RowError, catalog_kind, iter_products, iter_rows

__all__ = ["CatalogFormatError", "RowError", "catalog_id_prefix", "count_rows", "iter_catalog"]

ID_PREFIX_MAX_CHARS = 80  # leaves room for ":line-N" within the 128 characters of a stored id


class CatalogFormatError(CatalogError):
    """The catalog file itself cannot be read (missing, unknown format, no header)."""


def iter_catalog(path: str | Path, id_prefix: str | None = None) -> Iterator[Product | RowError]:
    """Products in file order; malformed rows as :class:`RowError`; a repeated id is an error on the later row."""
    path, kind = _checked(path)
    with path.open("rb") as handle:  # decoded line by line: a row that is not UTF-8 is reported alone
        try:
            yield from iter_products(handle, kind, base_dir=path.parent, id_prefix=id_prefix)
        except CatalogFormatError:
            raise
        except CatalogError as exc:
            raise CatalogFormatError(f"{path}: {exc}") from None


def catalog_id_prefix(path: str | Path) -> str:
    """The catalog's file stem as an id prefix the HTTP API accepts (letters, digits and . _ -); a stem with other
    characters keeps a hash of it, so two catalogs never share the prefix."""
    stem = Path(path).stem
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("._-")[:ID_PREFIX_MAX_CHARS - 9]
    if safe == stem:
        return safe
    digest = hashlib.sha256(stem.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else f"catalog-{digest}"


def count_rows(path: str | Path) -> int:
    """Number of data rows (for the progress bar's total), without building products."""
    path, kind = _checked(path)
    if kind == "jsonl":
        with path.open("rb") as handle:
            return sum(1 for raw in handle if raw.strip() and not raw.lstrip().startswith(b"#"))
    with path.open("rb") as handle:
        try:
            return sum(1 for _ in iter_rows(handle, kind))
        except CatalogError as exc:
            raise CatalogFormatError(f"{path}: {exc}") from None


def _checked(path: str | Path) -> tuple[Path, str]:
    path = Path(path)
    if not path.is_file():
        raise CatalogFormatError(f"catalog not found: {path}")
    try:
        return path, catalog_kind(path)
    except CatalogError:
        raise CatalogFormatError(f"catalog must be .jsonl or .csv (or .tsv): {path}") from None
