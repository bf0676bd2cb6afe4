"""The parts a category tree is made of: nodes, category paths, and the rules for ids and word lists.

Kept apart from :mod:`tree` (the validated tree and its edits) and :mod:`tree_readers` (table and document
layouts) so that both import these without importing each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

PATH_SEPARATOR = " > "
LIST_SEPARATOR = "|"


class TaxonomyError(ValueError):
    """A category tree (file or edit) that breaks the rules; the message names the bad row or node."""


@dataclass(frozen=True)
class CategoryNode:
    """One category. ``parent`` is the parent's id, None for a root."""

    id: str
    name: str
    parent: str | None = None
    keywords: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "parent": self.parent,
            "keywords": list(self.keywords),
            "synonyms": list(self.synonyms),
        }


@dataclass
class NodeRow:
    """A node as read from a source, with where it came from (for error messages)."""

    node: CategoryNode
    where: str


def split_path(path: str | Sequence[str]) -> tuple[str, ...]:
    """``"A > B > C"`` (or a sequence of names) -> ``("A", "B", "C")``; ``>`` without spaces also works."""
    if isinstance(path, str):
        parts = path.split(">")
    else:
        parts = list(path)
    names = tuple(str(part).strip() for part in parts)
    if not names or any(not name for name in names):
        raise TaxonomyError(f"bad category path {path!r}: empty level")
    return names


def join_path(names: Iterable[str]) -> str:
    return PATH_SEPARATOR.join(names)


def split_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = value.split(LIST_SEPARATOR)
    else:
        items = [str(item) for item in value]
    seen: dict[str, None] = {}
    for item in items:
        item = item.strip()
        if item:
            seen.setdefault(item, None)
    return tuple(seen)


def derived_id(names: Sequence[str]) -> str:
    digest = hashlib.sha1(join_path(names).encode("utf-8")).hexdigest()[:10]
    return f"p{digest}"


def clean_id(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
