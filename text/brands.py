"""Brand-in-title extraction: brand lexicon matches checked against jieba word boundaries, plus
brand patterns shops write (``ERKE/鸿星尔克``, ``鸿星尔克(ERKE)``) for brands not in the lexicon.

Matching runs on a character-aligned view of the raw title (full-width -> half-width, lower case, one
character for one character), so the reported ``start``/``end`` index the title exactly as given.

Rules, each one there for a precision reason:

* Latin/digit aliases must stand alone (``lg`` in ``lgbt`` or ``ahc`` in ``ahcx`` is no brand);
* two-character Chinese aliases must coincide with jieba words (``白川`` inside ``明白川菜`` is not the
  brand), one-character aliases are ignored;
* overlapping matches keep the longest; one result per brand (its best match).

``score`` (0..1) grows with alias length, word-boundary agreement and an early position in the title;
pattern-found brands score below lexicon matches.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable

from .tokenize import TitleTokenizer, lexicon_brand_names, lexicon_words

_ASCII_ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9 .&'+\-#!]*$")
_ALNUM = set("abcdefghijklmnopqrstuvwxyz0123456789")
_QUOTES = set("‘’‛′`´")
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")
_PAIR_PATTERNS = (
    # ERKE/鸿星尔克 or 鸿星尔克/ERKE at the start of a title
    re.compile(r"^\s*(?P<a>[a-z][a-z0-9&'.\- ]{1,24}?)\s*/\s*(?P<b>[\u4e00-\u9fff]{2,8})(?![\u4e00-\u9fff]*/)"),
    re.compile(r"^\s*(?P<b>[\u4e00-\u9fff]{2,8})\s*/\s*(?P<a>[a-z][a-z0-9&'.\-]{1,24})(?![a-z0-9])"),
    # 鸿星尔克(ERKE) / 鸿星尔克（ERKE）
    re.compile(r"(?P<b>[\u4e00-\u9fff]{2,8})\s*[(（]\s*(?P<a>[a-z][a-z0-9&'.\- ]{1,24}?)\s*[)）]"),
)


@dataclass(frozen=True)
class TitleBrand:
    """A brand found in a title: canonical ``brand``, the ``text`` that matched, its span in the title."""

    brand: str
    text: str
    start: int
    end: int
    score: float
    source: str = "lexicon"  # "lexicon" | "pattern" | "jieba"
    aliases: tuple[str, ...] = ()  # other names of the same brand seen in the title (ERKE for 鸿星尔克)

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)

    def to_json(self) -> dict[str, Any]:
        return {
            "brand": self.brand,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
            "source": self.source,
            "aliases": list(self.aliases),
        }


def aligned_view(text: str) -> str:
    """One output character per input character: NFKC + lower case where that maps to one
    character, a NUL (never part of a brand) for anything invisible or odd."""
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category in {"Cc", "Cf", "Co", "Cs", "Cn", "So"}:
            out.append("\0" if char not in "\t\n\r" else " ")
            continue
        if char in _QUOTES:
            out.append("'")
            continue
        mapped = unicodedata.normalize("NFKC", char).lower()
        out.append(mapped if len(mapped) == 1 else char.lower())
    return "".join(out)


def _alias_key(alias: str) -> str:
    return " ".join(aligned_view(alias).replace("\0", " ").split())


class BrandMatcher:
    """Pre-built alias index for one lexicon (cached by :func:`extract_title_brands`)."""

    def __init__(self, lexicon: Any, pairs: Iterable[tuple[str, str]] | None = None):
        """``pairs``: the lexicon's (brand, alias) pairs when the caller has them already."""
        self.aliases: dict[str, str] = {}
        for brand, alias in _brand_alias_pairs(lexicon) if pairs is None else pairs:
            key = _alias_key(alias)
            if len(key) < 2:  # one character (Chinese or Latin) is never evidence on its own
                continue
            self.aliases.setdefault(key, brand)
            if " " in key:
                self.aliases.setdefault(key.replace(" ", ""), brand)
        # the alias lengths to try at a position, by its first character (most characters start no alias)
        by_first: dict[str, set[int]] = {}
        for key in self.aliases:
            by_first.setdefault(key[0], set()).add(len(key))
        self.lengths_by_first = {char: sorted(lengths, reverse=True) for char, lengths in by_first.items()}
        self.tokenizer = TitleTokenizer(user_words=list(self.aliases), quantity_tokens=False)

    def word_boundaries(self, view: str) -> set[int]:
        """Offsets where a jieba word starts or ends in ``view``."""
        tokenizer = self.tokenizer
        jieba = tokenizer._ensure()
        bounds = {0, len(view)}
        position = 0
        pieces: list[str] = []
        prepass = tokenizer._prepass_re
        cursor = 0
        if prepass is not None:
            for match in prepass.finditer(view):
                if match.start() > cursor:
                    pieces.extend(jieba.cut(view[cursor : match.start()], HMM=True))
                pieces.append(match.group(0))
                cursor = match.end()
        pieces.extend(jieba.cut(view[cursor:], HMM=True))
        for piece in pieces:
            position += len(piece)
            bounds.add(position)
        return bounds

    def find(self, title: str) -> list[TitleBrand]:
        view = aligned_view(title)
        candidates: list[TitleBrand] = []
        bounds: set[int] | None = None
        n = len(view)
        for start in range(n):
            lengths = self.lengths_by_first.get(view[start])
            if lengths is None:  # no alias starts with this character (nor with a space or a NUL)
                continue
            for length in lengths:
                end = start + length
                if end > n:
                    continue
                key = view[start:end]
                brand = self.aliases.get(key)
                if brand is None:
                    continue
                if _ASCII_ALIAS_RE.match(key):
                    before = view[start - 1] if start else " "
                    after = view[end] if end < n else " "
                    if before in _ALNUM or after in _ALNUM:
                        continue
                    score = 0.9 if length >= 4 else 0.7
                else:
                    if bounds is None:
                        bounds = self.word_boundaries(view)
                    aligned = start in bounds and end in bounds
                    if length <= 2 and not aligned:
                        continue
                    score = (0.9 if length >= 3 else 0.75) + (0.05 if aligned else 0.0)
                if start <= max(2, n // 3):
                    score += 0.05
                candidates.append(TitleBrand(brand, title[start:end], start, end, round(min(score, 1.0), 4)))
        return candidates


def _brand_alias_pairs(lexicon: Any) -> Iterable[tuple[str, str]]:
    if hasattr(lexicon, "brands") and hasattr(lexicon, "aliases_of"):
        for brand in lexicon_brand_names(lexicon):
            yield brand, brand
            for alias in lexicon.aliases_of(brand):
                yield brand, alias
    elif isinstance(lexicon, dict):
        for brand, aliases in lexicon.items():
            yield brand, brand
            for alias in [aliases] if isinstance(aliases, str) else list(aliases or ()):
                yield brand, alias
    else:
        for brand in lexicon_words(lexicon):
            yield brand, brand


_cache: dict[tuple, tuple[Any, BrandMatcher]] = {}
_cache_lock = threading.Lock()


def brand_matcher(lexicon: Any) -> BrandMatcher:
    """The (cached) matcher for a lexicon. A lexicon object with a ``version`` (``BrandLexicon``) is known by
    itself and that version (the cache holds the object, so an id is never reused); plain lists and dicts by their
    brands and aliases, so a caller that passes a new list with each title (``[]``, the shop's brands) reuses one
    matcher and its jieba dictionary instead of loading them again for every title."""
    if lexicon is None:
        raise ValueError("extract_title_brands needs a brand lexicon (BrandLexicon, dict or list of brands)")
    version = str(getattr(lexicon, "version", ""))
    pairs = None if version else tuple(_brand_alias_pairs(lexicon))  # an iterator is read here, once
    key: tuple = ("object", id(lexicon), version) if version else ("content", pairs)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is None or (version and cached[0] is not lexicon):
            if len(_cache) >= 8:
                _cache.pop(next(iter(_cache)))
            cached = (lexicon if version else None, BrandMatcher(lexicon, pairs))
            _cache[key] = cached
    return cached[1]


def _pattern_brands(title: str) -> list[TitleBrand]:
    view = aligned_view(title)
    found = []
    for pattern in _PAIR_PATTERNS:
        for match in pattern.finditer(view):
            latin = match.group("a").strip()
            if len(latin) < 2:
                continue
            start, end = match.start("b"), match.end("b")
            a_start = match.start("a") + (len(match.group("a")) - len(match.group("a").lstrip()))
            alias = title[a_start : a_start + len(latin)]
            found.append(TitleBrand(title[start:end], title[start:end], start, end, 0.6, "pattern", (alias,)))
    return found


_LEADING_RE = re.compile(r"^\s*(?P<word>[\u4e00-\u9fff]{2,8}|[a-z][a-z0-9&'.\-]{2,20})\s+\S")


def _leading_brand(title: str, matcher: BrandMatcher, stop_words: frozenset[str]) -> list[TitleBrand]:
    """A title opening with a stand-alone word jieba does not know (``宏情 中老年晨练太极服``) names
    its brand more often than not; known words and category names are left out."""
    view = aligned_view(title)
    match = _LEADING_RE.match(view)
    if not match:
        return []
    word = match.group("word")
    if word in stop_words:
        return []
    from .normalize import _PROMO_RE

    if _PROMO_RE.search(word):
        return []
    jieba = matcher.tokenizer._ensure()
    if _CJK_RE.search(word):
        pieces = list(jieba.cut(word, HMM=False))
        if all(jieba.FREQ.get(piece, 0) > 0 and len(piece) > 1 for piece in pieces):
            return []  # made of ordinary words: a product phrase, not a name
    elif jieba.FREQ.get(word, 0) > 0:
        return []
    start, end = match.start("word"), match.end("word")
    return [TitleBrand(title[start:end], title[start:end], start, end, 0.45, "jieba")]


_stop_cache: dict[str, frozenset[str]] = {}


def _stop_words() -> frozenset[str]:
    """Category names and label-map words: never a brand on their own."""
    words = _stop_cache.get("default")
    if words is None:
        try:
            from skutag.taxonomy import CategoryTree, LabelMap

            raw = CategoryTree.active().words() + LabelMap.active().words()
        except (ImportError, FileNotFoundError, ValueError):
            raw = []
        words = frozenset(aligned_view(w) for w in raw)
        _stop_cache["default"] = words
    return words


def extract_title_brands(
    title: Any,
    lexicon: Any,
    min_score: float = 0.0,
    patterns: bool = True,
    discover: bool = False,
    learned: Any = None,
) -> list[TitleBrand]:
    """Brands named in ``title``, best first, one per brand.

    ``lexicon``: a ``taxonomy.BrandLexicon`` (anything with ``brands`` and ``aliases_of()``), a dict
    ``brand -> aliases`` or an iterable of brand names. ``patterns`` also reports brands written as
    ``ERKE/鸿星尔克`` or ``鸿星尔克(ERKE)`` that the lexicon does not know; ``discover`` also reports an
    unknown stand-alone word opening the title (a jieba out-of-vocabulary word; lower precision).
    ``learned``: a fitted ``text.brand_spans.BrandSpanModel`` (trained on the shop's titles) adds the
    brands it finds. None/empty titles -> ``[]``.
    """
    if title is None or not isinstance(title, str) or not title.strip():
        return []
    matcher = brand_matcher(lexicon)
    candidates = matcher.find(title)
    extra: list[TitleBrand] = []
    if patterns:
        extra.extend(_pattern_brands(title))
    if discover and not candidates:
        extra.extend(_leading_brand(title, matcher, _stop_words()))
    if learned is not None:
        extra.extend(learned.find(title))
    covered = [(c.start, c.end) for c in candidates]
    for found in extra:
        if not any(s < found.end and found.start < e for s, e in covered):
            candidates.append(found)
    chosen: list[TitleBrand] = []
    for candidate in sorted(candidates, key=lambda c: (-(c.end - c.start), -c.score, c.start)):
        if any(c.start < candidate.end and candidate.start < c.end for c in chosen):
            continue
        chosen.append(candidate)
    best: dict[str, TitleBrand] = {}
    for candidate in chosen:
        key = candidate.brand.casefold()
        if key not in best or candidate.score > best[key].score:
            best[key] = candidate
    return sorted(
        (c for c in best.values() if c.score >= min_score), key=lambda c: (-c.score, c.start)
    )
