"""Brand text in OCR lines -> scored brands with the evidence lines.

Matching is fuzzy (rapidfuzz Indel similarity) so that real OCR misreads still find their brand:
``夫山泉`` / ``农夹治泉`` -> 农夫山泉, ``estbon`` -> C'estbon, ``MGFU SPRING`` -> NONGFU SPRING. Chinese
aliases are compared to the best-aligned part of a line; Latin and pinyin aliases to whole words (or
two or three words run together), case-, width- and punctuation-insensitively, so ``Arla`` never
matches inside ``Marla``. Very short aliases (two Chinese characters, three Latin letters) must match
exactly. Each match is weighted by how prominent its line is: large text near the middle of the
photo (the product's own label) outweighs small text at the edges (brands on the shelf behind).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from rapidfuzz.distance import Levenshtein

from skutag.taxonomy.brands import BrandLexicon, compact, has_cjk, normalize

from .result import OcrLine, OcrResult

SECOND_EVIDENCE_BONUS = 0.15


@dataclass(frozen=True)
class BrandMatch:
    brand: str
    score: float
    evidence: tuple[str, ...]
    alias: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"brand": self.brand, "score": round(self.score, 4), "evidence": list(self.evidence), "alias": self.alias}


def min_similarity(key: str) -> float:
    """How similar a line must be to an alias key before it counts (1.0 = exact only)."""
    if has_cjk(key):
        if len(key) <= 2:
            return 1.0
        return 0.65 if len(key) == 3 else 0.6
    if len(key) <= 3:
        return 1.0
    if len(key) <= 5:
        return 0.75
    return 0.8 if len(key) <= 8 else 0.7


def alias_similarity(key: str, line_text: str) -> float:
    """Similarity (0..1) of alias ``key`` (compact form) to the best-matching part of one OCR line."""
    if has_cjk(key):
        line_key = compact(line_text)
        if not line_key:
            return 0.0
        if key in line_key:
            return 1.0
        if len(key) <= 2:
            return 0.0
        return best_window_similarity(key, line_key)
    words = normalize(line_text).split()
    best = 0.0
    for start in range(len(words)):
        joined = ""
        for width in range(3):
            if start + width >= len(words):
                break
            joined += words[start + width]
            if joined == key:
                return 1.0
            if len(key) > 3 and _comparable_lengths(key, joined):
                best = max(best, Levenshtein.normalized_similarity(key, joined))
    return best


def _comparable_lengths(key: str, word: str) -> bool:
    """Short Latin aliases allow substituted letters only (``ARIA`` for ``ARLA``, not ``Marla``)."""
    if len(key) <= 5:
        return len(word) == len(key)
    return abs(len(word) - len(key)) <= max(2, len(key) // 3)


def best_window_similarity(key: str, line_key: str) -> float:
    """Best Levenshtein similarity of ``key`` to any window of ``line_key`` of about its length.

    Levenshtein (not Indel) because OCR misreads are mostly one character read as another; a window
    with the alias's first and last characters right and its length counts as at least 0.6.
    """
    best = 0.0
    for size in (len(key) - 1, len(key), len(key) + 1):
        for start in range(0, max(1, len(line_key) - size + 1)):
            window = line_key[start:start + size]
            similarity = Levenshtein.normalized_similarity(key, window)
            if len(window) == len(key) >= 4 and window[0] == key[0] and window[-1] == key[-1]:
                similarity = max(similarity, 0.6)
            best = max(best, similarity)
    return best


def word_similarity(word: str, token: str) -> float:
    """A Latin word against one OCR token; a cut-off read (``MOR``/``GON`` of ``MORGON``) counts partly."""
    similarity = Levenshtein.normalized_similarity(word, token)
    if len(token) >= 3 and len(token) < len(word) and (word.startswith(token) or word.endswith(token)):
        similarity = max(similarity, 0.4 + 0.6 * len(token) / len(word))
    return similarity


def split_alias_match(words: list[str], lines: list[OcrLine], latin: list[bool]) -> tuple[float, list[int]] | None:
    """A multi-word Latin alias whose words are printed on separate lines (a stacked logo: ``GOD`` /
    ``MORGON``): each word's best token anywhere; None unless every word is found (>= 0.6) and the
    length-weighted similarity reaches 0.75."""
    total, used = 0.0, []
    for word in words:
        best, best_index = 0.0, -1
        for index, line in enumerate(lines):
            if not latin[index]:
                continue
            for token in normalize(line.text).split():
                similarity = word_similarity(word, token)
                if similarity > best:
                    best, best_index = similarity, index
        if best < 0.6:
            return None
        total += best * len(word)
        used.append(best_index)
    similarity = total / sum(len(word) for word in words)
    if similarity < 0.75:
        return None
    return similarity, list(dict.fromkeys(used))


def line_prominence(line: OcrLine, width: float, height: float, largest_glyph: float) -> float:
    """0..1: glyph size relative to the largest text in the photo, and closeness to the photo's centre."""
    glyph = min(line.width, line.height)
    size = min(1.0, math.sqrt(glyph / largest_glyph)) if largest_glyph > 0 else 1.0
    cx, cy = line.center
    half_diagonal = math.hypot(width, height) / 2.0 or 1.0
    centrality = max(0.0, 1.0 - math.hypot(cx - width / 2.0, cy - height / 2.0) / half_diagonal)
    return 0.5 * size + 0.5 * centrality


def line_prominences(result: OcrResult, lines: list[OcrLine] | None = None) -> list[float]:
    """``line_prominence`` of each of ``lines`` (default: all of the result's lines) within its photo."""
    lines = list(result.lines) if lines is None else lines
    if not lines:
        return []
    width = result.width or max(p[0] for line in lines for p in line.box)
    height = result.height or max(p[1] for line in lines for p in line.box)
    read = [line for line in lines if line.text.strip()] or lines  # an empty box is not the photo's text
    largest_glyph = max(min(line.width, line.height) for line in read)
    return [line_prominence(line, width, height, largest_glyph) for line in lines]


def extract_brands(
    result: OcrResult, lexicon: BrandLexicon, top_n: int = 3, min_score: float = 0.3
) -> list[BrandMatch]:
    """The ``top_n`` brands whose names (or aliases) the OCR lines show, best first, with evidence lines."""
    lines = [line for line in result.lines if line.text.strip()]
    if not lines:
        return []
    weights = [0.6 + 0.4 * prominence for prominence in line_prominences(result, lines)]
    line_has_cjk = [has_cjk(line.text) for line in lines]
    line_has_latin = [bool(re.search(r"[A-Za-z]", normalize(line.text))) for line in lines]

    per_brand: dict[str, dict[int, tuple[float, str]]] = {}
    for key, brand, alias in lexicon.alias_index():
        threshold = min_similarity(key)
        cjk_key = has_cjk(key)
        for index, line in enumerate(lines):
            if (cjk_key and not line_has_cjk[index]) or (not cjk_key and not line_has_latin[index] and not key.isdigit()):
                if not (not cjk_key and any(ch.isdigit() for ch in key)):
                    continue
            similarity = alias_similarity(key, line.text)
            if similarity < threshold:
                continue
            score = similarity * weights[index] * (0.5 + 0.5 * min(1.0, line.score))
            found = per_brand.setdefault(brand, {})
            if score > found.get(index, (0.0, ""))[0]:
                found[index] = (score, alias)

    for key, brand, alias in lexicon.alias_index():
        words = normalize(alias).split()
        if has_cjk(key) or len(words) < 2 or min(len(word) for word in words) < 3:
            continue
        split = split_alias_match(words, lines, line_has_latin)
        if split is None:
            continue
        similarity, used = split
        weight = sum(weights[index] * (0.5 + 0.5 * min(1.0, lines[index].score)) for index in used) / len(used)
        found = per_brand.setdefault(brand, {})
        index = used[0]
        if similarity * weight > found.get(index, (0.0, ""))[0]:
            found[index] = (similarity * weight, alias)
        for other in used[1:]:
            found.setdefault(other, (0.0, alias))

    matches = []
    for brand, by_line in per_brand.items():
        ranked = sorted(by_line.items(), key=lambda item: -item[1][0])
        best_score, best_alias = ranked[0][1]
        score = best_score
        if len(ranked) > 1:
            score = min(1.0, score + SECOND_EVIDENCE_BONUS * ranked[1][1][0])
        evidence = tuple(dict.fromkeys(lines[index].text for index, _ in ranked))
        if score >= min_score:
            matches.append(BrandMatch(brand, round(score, 4), evidence, best_alias))
    matches.sort(key=lambda match: -match.score)
    return matches[:top_n]


def brand_found(lexicon: BrandLexicon, min_score: float = 0.5) -> "Callable[[list[OcrLine]], bool]":
    """An ``accept`` test for ``OcrEngine.read``: the first pass already shows a brand of ``lexicon``."""

    def accept(lines: list[OcrLine]) -> bool:
        return bool(extract_brands(OcrResult(image="", lines=tuple(lines)), lexicon, top_n=1, min_score=min_score))

    return accept


def read_brands(engine, sources, lexicon: BrandLexicon, top_n: int = 3) -> list[tuple[OcrResult, list[BrandMatch]]]:
    """Read ``sources`` and extract brands; with ``rotate="auto"`` a photo whose first pass shows no brand
    is read again turned 90 and 270 degrees (bottles lying on their side)."""
    results = engine.read(sources, accept=brand_found(lexicon))
    return [(result, extract_brands(result, lexicon, top_n=top_n)) for result in results]
