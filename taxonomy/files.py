"""Reading a managed table's file, one way for the category tree and the label map: a table (.tsv/.csv/.txt)
or a document (.json/.yaml/.yml), UTF-8 (a BOM is fine), every problem an error naming the file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

TABLE_SUFFIXES = {".tsv": "\t", ".txt": "\t", ".csv": ","}
DOCUMENT_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class Table:
    text: str
    delimiter: str


def read_table_or_document(path: Path, error: type[Exception], what: str) -> Table | Any:
    """The file as a ``Table`` (its text and delimiter) or as the parsed document; ``error`` (the table's own
    error class) for a file that is not UTF-8, not valid JSON/YAML, or of another kind."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return Table(text, TABLE_SUFFIXES[suffix])
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"{path.name}: not valid JSON: {exc}") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise error(f"{path.name}: not valid YAML: {exc}") from None
    raise error(f"{path}: {what} files must be .tsv, .csv, .json, .yaml or .yml")


def document_records(
    items: Any, source: str, key: str, noun: str, fields: str, error: type[Exception]
) -> list[tuple[str, Mapping[str, Any]]]:
    """A document's list of records (``{"nodes": [...]}``'s list ...) as ``(where, record)`` pairs; anything
    that is not a list of mappings is ``error`` naming the source and the record."""
    if not isinstance(items, list):
        raise error(f"{source}: {key!r} must be a list")
    records = []
    for number, item in enumerate(items, start=1):
        where = f"{source} {noun} {number}"
        if not isinstance(item, Mapping):
            raise error(f"{where}: expected a mapping with {fields}, got {item!r}")
        records.append((where, item))
    return records
