"""Reading and writing catalog files (JSONL, CSV, TSV) and tagging results.

A catalog has one product per row: ``id``, ``image`` (path relative to the catalog file), ``title``,
``price``, ``category`` (levels joined by `` > ``), ``brand``. Any of image/title/price may be missing.
Column names are case-insensitive (``ID``, ``Title`` work) in every format. A malformed row (bad JSON,
bytes that are not UTF-8, bad price, no image and no title, duplicate id ...) is reported with its line
number and skipped; the rest of the file is read.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import re
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping, Sequence, TextIO

from skutag.catalog import PATH_SEPARATOR, Product
from skutag.policy.fields import InvalidInput, check_price, check_product
from skutag.text.price_parse import parse_price  # noqa: F401  (the catalog's price reading, for `skutag tag --price`)

COLUMNS = ("id", "image", "title", "price", "category", "brand")
CATALOG_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
# the keys of one row of `skutag tag --json`

_SEPARATOR = re.compile(r"\s*>\s*")
# a byte that is not UTF-8, as decoded with errors="surrogateescape" (valid UTF-8 never decodes to these)
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# split a line after a carriage return that is not followed by a newline (old Mac line ends)
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


class CatalogError(ValueError):
    """The catalog as a whole cannot be read (missing file, unknown format, no header)."""


@dataclass(frozen=True)
class RowError:
    """A malformed row: skipped, reported with its line number (and its id when the row had one). ``field``: the
    product field the row breaks a rule of (``skutag.policy.fields``; the API refuses such a product with a 422
    naming it, and nothing is stored), None for a row that could not be read at all."""

    line: int
    message: str
    id: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"

    def describe(self, catalog: Path | str) -> str:
        return f"{catalog}:{self.line}: {self.message}"


@dataclass
class Catalog:
    """The products read from one file, and the rows that were skipped."""

    path: Path | None
    products: list[Product] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.products)

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products)

    @property
    def labelled(self) -> list[Product]:
        return [p for p in self.products if p.category]

    def content_hash(self) -> str:
        """A hash of what a model learns from: ids, titles, prices, categories, brands and image bytes."""
        digest = hashlib.sha256()
        for product in self.products:
            digest.update(json.dumps([product.id, product.title, product.price, product.category,
                                      product.brand], ensure_ascii=False).encode("utf-8"))
            digest.update(image_digest(product.image).encode("ascii"))
        return digest.hexdigest()


def image_digest(image: Any) -> str:
    """sha256 of an image's bytes ('' when absent; 'missing:<path>' when the file is not there)."""
    if image is None:
        return ""
    if isinstance(image, (bytes, bytearray)):
        return hashlib.sha256(image).hexdigest()
    path = Path(image)
    try:
        return _file_digest(path)
    except OSError:
        return f"missing:{path}"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------- reading
def read_catalog(path: str | Path, *, require_category: bool = False) -> Catalog:
    """Read a JSONL/CSV/TSV catalog; ``require_category`` makes rows without a category malformed."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"catalog file not found: {path}")
    kind = catalog_kind(path)
    with path.open("rb") as handle:
        try:
            return parse_catalog(handle, kind, base_dir=path.parent, source=path, require_category=require_category)
        except CatalogError as exc:
            raise CatalogError(f"{path}: {exc}") from None


def parse_catalog(
    handle: TextIO | BinaryIO,
    kind: str,
    *,
    base_dir: Path | None = None,
    source: Path | None = None,
    require_category: bool = False,
) -> Catalog:
    catalog = Catalog(path=source)
    for item in iter_products(handle, kind, base_dir=base_dir, require_category=require_category):
        (catalog.errors if isinstance(item, RowError) else catalog.products).append(item)
    return catalog


def catalog_kind(path: Path) -> str:
    """'jsonl', 'csv' or 'tsv' from the file name, or a CatalogError."""
    kind = CATALOG_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise CatalogError(f"catalog must be .jsonl, .csv or .tsv: {path}")
    return kind


def iter_rows(handle: TextIO | BinaryIO, kind: str) -> Iterator[tuple[int, Any]]:
    """Raw rows (dicts with lower-case keys) with their line numbers, or RowError for rows that cannot be parsed."""
    lines = text_lines(handle)
    return _jsonl_rows(lines) if kind == "jsonl" else _csv_rows(lines, "\t" if kind == "tsv" else ",")


def iter_products(
    handle: TextIO | BinaryIO, kind: str, *, base_dir: Path | None = None, require_category: bool = False,
    id_prefix: str | None = None,
) -> Iterator[Product | RowError]:
    """Products in file order, lazily; malformed rows and duplicate ids as RowError.

    An id belongs to the first row that names it, valid or malformed: a later row with the same id is a
    duplicate, so a malformed repeat never displaces a product already read. ``id_prefix``: a row without an
    id becomes ``<id_prefix>:line-N`` (unique to its catalog) instead of ``line-N``."""
    first_line: dict[str, int] = {}
    for line, raw in iter_rows(handle, kind):
        item = raw if isinstance(raw, RowError) else _product_or_error(raw, line, base_dir, require_category, id_prefix)
        if item.id is not None and item.id in first_line:
            yield _duplicate(item, line, first_line[item.id])
            continue
        if item.id is not None:
            first_line[item.id] = line
        yield item


def _product_or_error(row: Mapping[str, Any], line: int, base_dir: Path | None, require_category: bool,
                      id_prefix: str | None) -> Product | RowError:
    try:
        product = row_to_product(row, line, base_dir=base_dir, require_category=require_category)
    except ValueError as exc:
        return RowError(line, str(exc), _row_id(row), field=exc.field if isinstance(exc, InvalidInput) else None)
    if id_prefix and _row_id(row) is None:
        return replace(product, id=f"{id_prefix}:line-{line}")
    return product


def _duplicate(item: Product | RowError, line: int, first: int) -> RowError:
    message = f"duplicate id {item.id!r} (first on line {first})"
    if isinstance(item, RowError):
        message += f"; the row is malformed too: {item.message}"
    return RowError(line, message)


def _row_id(row: Mapping[str, Any]) -> str | None:
    """The id a row names (None: none, so the reader makes one up)."""
    value = row.get("id")
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value).strip() or None if isinstance(value, (str, int, float)) else None


# ---------------------------------------------------------------------- lines and encoding
def text_lines(handle: TextIO | BinaryIO) -> Iterator[str]:
    """The physical lines of a catalog, line ends kept, as text.

    Bytes are decoded as UTF-8 one line at a time, a leading BOM dropped; a byte that is not UTF-8 is kept
    as a lone surrogate (``surrogateescape``) so that only the row holding it is reported
    (:func:`utf8_problem`) and the rest of the file is read. Text handles are read as they are.
    """
    raw = _byte_source(handle)
    if raw is None:
        yield from handle  # type: ignore[misc]
        return
    first = True
    for chunk in raw:
        for line in _LONE_CR.split(chunk):
            if not line:
                continue
            if first:
                _refuse_utf16(line)
                line, first = line.removeprefix(codecs.BOM_UTF8), False
            yield line.decode("utf-8", "surrogateescape")


def _refuse_utf16(first_line: bytes) -> None:
    """A UTF-16 file (BOM, or NUL bytes between ASCII letters) has no readable row: say so once."""
    if first_line.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in first_line[:200]:
        raise CatalogError("the catalog is UTF-16 (or has NUL bytes), not UTF-8: save it as UTF-8")


def _byte_source(handle: TextIO | BinaryIO) -> BinaryIO | None:
    return handle if isinstance(handle, (io.RawIOBase, io.BufferedIOBase)) else None  # type: ignore[return-value]


def utf8_problem(text: str) -> str | None:
    """Why a line decoded by :func:`text_lines` is not UTF-8 (its first bad byte), or None when it is."""
    bad = _UNDECODABLE.search(text)
    if bad is None:
        return None
    return (f"not valid UTF-8 (byte {ord(bad.group()) - 0xDC00:#04x} at column {bad.start() + 1}); "
            "save the catalog as UTF-8")


# ---------------------------------------------------------------------- JSONL
def _jsonl_rows(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for line_no, text in enumerate(lines, start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        problem = utf8_problem(text)
        if problem is not None:
            yield line_no, RowError(line_no, problem)
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line_no, RowError(line_no, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            yield line_no, RowError(line_no, f"a row must be a JSON object, got {type(row).__name__}")
            continue
        try:
            yield line_no, _lower_keys(row)
        except ValueError as exc:
            yield line_no, RowError(line_no, str(exc), _row_id(row))


def _lower_keys(row: Mapping[str, Any]) -> dict[str, Any]:
    """Keys as CSV headers are read (stripped, lower case); two keys that then clash are a ValueError."""
    lowered: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in row.items():
        name = key.strip().lower()
        if name in lowered:
            raise ValueError(f"keys {spelled[name]!r} and {key!r} name the same column (keys ignore case)")
        lowered[name], spelled[name] = value, key
    return lowered


# ---------------------------------------------------------------------- CSV / TSV
class _LineFeed:
    """Numbered physical lines for ``csv.reader``; remembers the lines of the current row, which can be fed
    again (a row whose quote is never closed swallowed the rows after it)."""

    def __init__(self, lines: Iterable[str]):
        self._lines = enumerate(lines, start=1)
        self._again: deque[tuple[int, str]] = deque()
        self.row: list[tuple[int, str]] = []
        self.exhausted = False

    def __iter__(self) -> "_LineFeed":
        return self

    def __next__(self) -> str:
        if self._again:
            item = self._again.popleft()
        else:
            try:
                item = next(self._lines)
            except StopIteration:
                self.exhausted = True
                raise
        self.row.append(item)
        return item[1]

    def start_row(self) -> None:
        self.row = []

    @property
    def first_line(self) -> int:
        return self.row[0][0] if self.row else 0

    @property
    def last_line(self) -> int:
        return self.row[-1][0] if self.row else 0

    def feed_again_after_first(self) -> int:
        """Queue the current row's lines after its first one to be read again; how many they are."""
        again = self.row[1:]
        self._again.extendleft(reversed(again))
        self.exhausted = False
        return len(again)


def _csv_rows(lines: Iterable[str], delimiter: str) -> Iterator[tuple[int, Any]]:
    feed = _LineFeed(lines)
    reader = csv.reader(feed, delimiter=delimiter)
    header = _csv_header(reader)
    if header is None:
        return
    while True:
        feed.start_row()
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield feed.last_line, RowError(feed.last_line, f"not valid CSV ({exc})")
            continue
        if feed.exhausted and len(feed.row) > 1:
            yield _unclosed_quote(feed)
            continue
        line_no = feed.last_line
        if not values or all(not v.strip() for v in values):
            continue
        problem = _csv_utf8_problem(values, header)
        if problem is not None:
            yield line_no, RowError(line_no, problem)
            continue
        if len(values) != len(header):
            yield line_no, RowError(line_no, _field_count_message(len(header), len(values), feed))
            continue
        yield line_no, dict(zip(header, values))


def _csv_header(reader: Any) -> list[str] | None:
    try:
        header = next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise CatalogError(f"cannot read the header: {exc}") from None
    problem = utf8_problem("".join(header))
    if problem is not None:
        raise CatalogError(f"the header (line 1) is {problem}")
    header = [name.strip().lower() for name in header]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CatalogError(f"the header names a column twice (names ignore case): {', '.join(map(repr, repeated))}")
    if not {"image", "title"} & set(header):
        raise CatalogError(f"the header must name an 'image' or 'title' column; got {header}")
    return header


def _unclosed_quote(feed: _LineFeed) -> tuple[int, RowError]:
    line_no, last = feed.first_line, feed.last_line
    count = feed.feed_again_after_first()
    return line_no, RowError(line_no, f"a quote opened on this line is never closed (it ran to the end of the "
                                      f"file, line {last}); skipped this line and read the {count} lines after "
                                      "it as rows")


def _field_count_message(expected: int, got: int, feed: _LineFeed) -> str:
    message = f"expected {expected} fields, got {got}"
    if len(feed.row) > 1:
        message += (f"; a quoted field runs from line {feed.first_line} to line {feed.last_line}, so those lines "
                    "were read as one row (a stray '\"'?)")
    return message


def _csv_utf8_problem(values: Sequence[str], header: Sequence[str]) -> str | None:
    for index, value in enumerate(values):
        bad = _UNDECODABLE.search(value)
        if bad is not None:
            column = header[index] if index < len(header) else f"field {index + 1}"
            return (f"not valid UTF-8 (byte {ord(bad.group()) - 0xDC00:#04x} in the {column!r} field); "
                    "save the catalog as UTF-8")
    return None


def row_to_product(row: Mapping[str, Any], line: int, *, base_dir: Path | None = None,
                   require_category: bool = False) -> Product:
    """One catalog row -> a Product; a ValueError names what is wrong with it."""
    product_id = _text(row.get("id"))
    if product_id is None:
        product_id = f"line-{line}"
    image = _text(row.get("image"))
    image_path: str | None = None
    if image is not None:
        candidate = Path(image).expanduser()
        if not candidate.is_absolute() and base_dir is not None:
            candidate = base_dir / candidate
        image_path = str(candidate)
    title = _text(row.get("title"))
    if image_path is None and title is None:
        raise ValueError("row has neither an image nor a title")
    category = normalize_path(row.get("category"))
    if require_category and category is None:
        raise ValueError("row has no category")
    # the fields as the API and `batch --db` check them (InvalidInput, a ValueError naming its field)
    product = Product(id=product_id, image=image_path, title=title, price=check_price(row.get("price")),
                      category=category, brand=_text(row.get("brand")))
    return check_product(product)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"expected text, got {type(value).__name__}: {value!r}")
    text = str(value).strip()
    return text or None


def normalize_path(value: Any) -> str | None:
    """A category path as 'a > b > c' from text with any spacing around '>' or a list of levels."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        levels = [str(level).strip() for level in value]
    elif isinstance(value, str):
        if not value.strip():
            return None
        levels = [level.strip() for level in _SEPARATOR.split(value.strip())]
    else:
        raise ValueError(f"category must be text or a list of levels, got {type(value).__name__}")
    if any(not level for level in levels):
        raise ValueError(f"category has an empty level: {value!r}")
    return PATH_SEPARATOR.join(levels)
