"""The brand lexicon: canonical brands with Chinese, Latin and pinyin aliases and optional categories.

Stored as CSV with a header ``brand,aliases,categories``; several aliases or categories are joined by
``|``; categories are paths in the category tree joined by `` > ``. The bundled lexicon is
``taxonomy/data/brands.csv``; a user's file replaces it (``BrandLexicon.load(path)``).

``match_text`` finds brands named verbatim (case-, width- and punctuation-insensitive) in a text such
as a product title; fuzzy matching of OCR output lives in ``ocr.brands``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .home import user_lexicon_path

HEADER = ("brand", "aliases", "categories")
LIST_SEPARATOR = "|"
DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "brands.csv"

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_DELETED = re.compile(r"['’`´®™©°·・]")
_SEPARATORS = re.compile(r"[^\w\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|_")


class LexiconError(ValueError):
    """A lexicon file or edit that cannot be accepted; the message says which row or brand."""


def normalize(text: str) -> str:
    """Full-width -> half-width, case-folded, marks like ' ® ™ removed, other punctuation -> one space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _DELETED.sub("", text)
    return " ".join(_SEPARATORS.sub(" ", text).split())


def compact(text: str) -> str:
    """``normalize`` without spaces: the key aliases are compared on."""
    return normalize(text).replace(" ", "")


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


@dataclass(frozen=True)
class Brand:
    name: str
    aliases: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by every alias."""
        return (self.name, *self.aliases)

    def to_json(self) -> dict:
        return {"brand": self.name, "aliases": list(self.aliases), "categories": list(self.categories)}


@dataclass(frozen=True)
class LexiconMatch:
    """A brand named verbatim in a text: which alias, and where (character offsets in the text)."""

    brand: str
    alias: str
    start: int
    end: int


class BrandLexicon:
    """An editable set of brands; ``version`` changes with every edit."""

    def __init__(self, brands: Iterable[Brand] = ()):
        self._brands: dict[str, Brand] = {}
        self._keys: dict[str, str] = {}  # compact alias -> brand name
        self._changed()
        for brand in brands:
            self._insert(_clean(brand))

    # -- loading and saving ----------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BrandLexicon":
        path = Path(path)
        if not path.is_file():
            raise LexiconError(f"brand lexicon file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise LexiconError(f"{path}: not UTF-8 text ({exc})") from None
        return cls.from_csv(text, source=str(path))

    @classmethod
    def from_csv(cls, text: str, source: str = "<csv>") -> "BrandLexicon":
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None or tuple(h.strip().lower() for h in header[:3]) != HEADER[: len(header[:3])] or len(header) < 1:
            raise LexiconError(f"{source}: the first line must be the header 'brand,aliases,categories', got {header!r}")
        lexicon = cls()
        for line_number, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) > 3:
                raise LexiconError(f"{source}:{line_number}: {len(row)} columns, expected at most 3 (quote cells containing commas)")
            row = row + [""] * (3 - len(row))
            name = row[0].strip()
            if not name:
                raise LexiconError(f"{source}:{line_number}: empty brand name")
            try:
                lexicon.add(name, _split(row[1]), _split(row[2]))
            except LexiconError as exc:
                raise LexiconError(f"{source}:{line_number}: {exc}") from None
        return lexicon

    @classmethod
    def default(cls) -> "BrandLexicon":
        """The bundled lexicon (``taxonomy/data/brands.csv``)."""
        return cls.load(DEFAULT_PATH)

    @classmethod
    def active(cls) -> "BrandLexicon":
        """The user's edited lexicon (``user_lexicon_path()``, written by ``skutag brands``) or the bundled one."""
        path = user_lexicon_path()
        return cls.load(path) if path.is_file() else cls.default()

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(HEADER)
        for brand in self._brands.values():
            writer.writerow([brand.name, LIST_SEPARATOR.join(brand.aliases), LIST_SEPARATOR.join(brand.categories)])
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_csv(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    # -- reading ---------------------------------------------------------------------------------

    @property
    def brands(self) -> list[str]:
        return list(self._brands)

    @property
    def entries(self) -> list[Brand]:
        return list(self._brands.values())

    @property
    def version(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical CSV: changes with every edit (kept until the
        next edit: brand matching asks for it once per title)."""
        if self._version_cache is None:
            self._version_cache = hashlib.sha256(self.to_csv().encode("utf-8")).hexdigest()[:12]
        return self._version_cache

    def _changed(self) -> None:
        """Every edit: the alias index and the version are computed again when next asked for."""
        self._index_cache: list[tuple[str, str, str]] | None = None
        self._version_cache: str | None = None

    def __len__(self) -> int:
        return len(self._brands)

    def __iter__(self) -> Iterator[Brand]:
        return iter(self._brands.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) is not None

    def get(self, name: str) -> Brand:
        canonical = self.resolve(name)
        if canonical is None:
            raise LexiconError(f"no brand {name!r} in the lexicon")
        return self._brands[canonical]

    def resolve(self, name: str) -> str | None:
        """The canonical brand for a brand name or any alias (normalised), or None."""
        if name in self._brands:
            return name
        return self._keys.get(compact(name))

    def aliases_of(self, name: str) -> tuple[str, ...]:
        return self.get(name).aliases

    def categories_of(self, name: str) -> tuple[str, ...]:
        return self.get(name).categories

    def alias_index(self) -> list[tuple[str, str, str]]:
        """(compact key, brand, alias as written) for every name and alias: what fuzzy matchers compare to."""
        if self._index_cache is None:
            index = []
            for brand in self._brands.values():
                seen = set()
                for alias in brand.names:
                    key = compact(alias)
                    if key and key not in seen:
                        seen.add(key)
                        index.append((key, brand.name, alias))
            self._index_cache = index
        return self._index_cache

    def match_text(self, text: str) -> list[LexiconMatch]:
        """Brands named verbatim in ``text`` (longest alias wins where two overlap), in order of appearance.

        Chinese/Japanese aliases match anywhere; Latin aliases only as whole words, spaces and punctuation
        ignored (``Coca-Cola`` matches ``COCA COLA`` and ``cocacola`` but ``Arla`` does not match ``Marla``).
        """
        if not text:
            return []
        norm, offsets = _normalize_with_offsets(text)
        spaced_free, free_offsets = _drop_spaces(norm, offsets)
        word_starts, word_ends = _word_bounds(norm)
        candidates: list[tuple[int, int, str, str]] = []
        for key, brand, alias in self.alias_index():
            if has_cjk(key):
                for match in re.finditer(re.escape(key), spaced_free):
                    start, end = free_offsets[match.start()], free_offsets[match.end() - 1] + 1
                    candidates.append((start, end, brand, alias))
            else:
                for match in re.finditer(re.escape(key), spaced_free):
                    start, end = free_offsets[match.start()], free_offsets[match.end() - 1] + 1
                    if start in word_starts and end in word_ends:
                        candidates.append((start, end, brand, alias))
        candidates.sort(key=lambda item: (-(item[1] - item[0]), item[0]))
        taken: list[tuple[int, int]] = []
        found: list[LexiconMatch] = []
        for start, end, brand, alias in candidates:
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            found.append(LexiconMatch(brand, alias, offsets[start], offsets[end - 1] + 1))
        return sorted(found, key=lambda match: match.start)

    # -- editing ---------------------------------------------------------------------------------

    def add(self, name: str, aliases: Iterable[str] = (), categories: Iterable[str] = ()) -> Brand:
        brand = _clean(Brand(name, tuple(aliases), tuple(categories)))
        if brand.name in self._brands:
            raise LexiconError(f"brand {brand.name!r} is already in the lexicon (use update)")
        self._insert(brand)
        return brand

    def update(
        self,
        name: str,
        *,
        aliases: Iterable[str] | None = None,
        categories: Iterable[str] | None = None,
        add_aliases: Iterable[str] = (),
        remove_aliases: Iterable[str] = (),
        rename: str | None = None,
    ) -> Brand:
        """Replace or extend a brand's aliases/categories, or rename it; order in the lexicon is kept."""
        old = self.get(name)
        new_aliases = list(old.aliases if aliases is None else aliases)
        new_aliases += [alias for alias in add_aliases if alias not in new_aliases]
        removed = {compact(alias) for alias in remove_aliases}
        new_aliases = [alias for alias in new_aliases if compact(alias) not in removed]
        new = _clean(Brand(
            rename or old.name,
            tuple(new_aliases),
            tuple(old.categories if categories is None else categories),
        ))
        items = list(self._brands.values())
        position = items.index(old)
        rebuilt = BrandLexicon(items[:position])  # re-check conflicts against every other brand
        others = items[position + 1:]
        for brand in others:
            rebuilt._insert(brand)
        rebuilt._insert(new)
        ordered = items[:position] + [new] + others
        self._brands = {brand.name: brand for brand in ordered}
        self._keys = rebuilt._keys
        self._changed()
        return new

    def delete(self, name: str) -> Brand:
        brand = self.get(name)
        del self._brands[brand.name]
        self._keys = {key: owner for key, owner in self._keys.items() if owner != brand.name}
        self._changed()
        return brand

    def _insert(self, brand: Brand) -> None:
        if brand.name in self._brands:
            raise LexiconError(f"brand {brand.name!r} appears twice")
        for alias in brand.names:
            key = compact(alias)
            owner = self._keys.get(key)
            if owner is not None and owner != brand.name:
                raise LexiconError(f"alias {alias!r} of {brand.name!r} is already a name of {owner!r}")
        self._brands[brand.name] = brand
        for alias in brand.names:
            self._keys[compact(alias)] = brand.name
        self._changed()


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(LIST_SEPARATOR) if part.strip()]


def _clean(brand: Brand) -> Brand:
    name = brand.name.strip()
    if not name:
        raise LexiconError("empty brand name")
    if not compact(name):
        raise LexiconError(f"brand name {name!r} has no letters or digits")
    for value in (name, *brand.aliases, *brand.categories):
        if LIST_SEPARATOR in value or "\n" in value:
            raise LexiconError(f"{value!r}: names and categories may not contain '|' or line breaks")
    aliases: list[str] = []
    seen = {compact(name)}
    for alias in brand.aliases:
        alias = alias.strip()
        if alias and compact(alias) and compact(alias) not in seen:
            seen.add(compact(alias))
            aliases.append(alias)
    categories: list[str] = []
    for category in brand.categories:
        category = " > ".join(part.strip() for part in category.split(">") if part.strip())
        if category and category not in categories:
            categories.append(category)
    return Brand(name, tuple(aliases), tuple(categories))


def _normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """``normalize`` character by character, keeping each output character's offset in ``text``."""
    out: list[str] = []
    offsets: list[int] = []
    pending_space = False
    for index, char in enumerate(text):
        piece = unicodedata.normalize("NFKC", char).casefold()
        for sub in piece:
            if _DELETED.match(sub):
                continue
            if _SEPARATORS.fullmatch(sub) or sub.isspace():
                pending_space = bool(out)
                continue
            if pending_space:
                out.append(" ")
                offsets.append(index)
                pending_space = False
            out.append(sub)
            offsets.append(index)
    return "".join(out), offsets


def _drop_spaces(norm: str, offsets: list[int]) -> tuple[str, list[int]]:
    """Space-free text and, per character, its position in ``norm``."""
    chars, positions = [], []
    for position, char in enumerate(norm):
        if char != " ":
            chars.append(char)
            positions.append(position)
    return "".join(chars), positions


def _word_bounds(norm: str) -> tuple[set[int], set[int]]:
    """Positions in ``norm`` where a Latin word may start / end (CJK characters count as boundaries)."""
    starts, ends = set(), set()
    for position, char in enumerate(norm):
        if char == " ":
            continue
        prev = norm[position - 1] if position else " "
        nxt = norm[position + 1] if position + 1 < len(norm) else " "
        if prev == " " or has_cjk(prev) or has_cjk(char) or _kind(prev) != _kind(char):
            starts.add(position)
        if nxt == " " or has_cjk(nxt) or has_cjk(char) or _kind(nxt) != _kind(char):
            ends.add(position + 1)
    return starts, ends


def _kind(char: str) -> str:
    return "digit" if char.isdigit() else "alpha"
