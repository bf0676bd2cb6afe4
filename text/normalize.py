"""Normalisation of real product titles.

``normalize_title`` turns what shops write into one canonical form the tokenizer and the feature
extractors can rely on:

* Unicode junk out: control and format characters (zero-width spaces, BOM, bidi marks), private-use
  code points, emoji and other pictographs, variation selectors;
* full-width -> half-width and compatibility forms (NFKC: ＡＢＣ１２３ -> abc123, ㎖ -> ml);
* lower case, one space between words;
* units and pack specs in one spelling: ``550 ML`` -> ``550ml``, ``1.5升`` -> ``1.5l``, ``500克*2`` ->
  ``500g×2``, ``24 瓶`` -> ``24瓶``, ``x 12`` -> ``×12``;
* promo noise out: 包邮, 限时特惠, 正品保证 ...; a bracketed segment (【...】, [...], (...)...) that holds
  promo words is dropped, any other bracket keeps its content.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

PROMO_TERMS: tuple[str, ...] = (
    "顺丰包邮", "全国包邮", "包邮", "免运费", "送运费险", "运费险",
    "限时特惠", "限时特价", "限时抢购", "限时秒杀", "限时折扣", "限时", "特惠", "特价", "秒杀", "抢购",
    "促销", "热卖", "热销", "爆款", "清仓", "亏本", "甩卖", "包退换", "七天无理由", "7天无理由",
    "正品保证", "专柜正品", "官方正品", "官方旗舰", "假一赔十", "假一罚十", "正品", "买一送一", "买二送一",
    "满减", "现货速发", "现货", "当天发货", "当日发货", "24小时发货", "厂家直销", "新品上市", "新品特惠",
    "年货节", "双十一", "双11", "双十二", "双12", "618", "优惠券", "领券", "下单立减", "立减", "赠品",
)

# Brackets whose content is dropped when it holds a promo term, kept (without the brackets) otherwise.
_BRACKETS = {"【": "】", "[": "]", "〔": "〕", "〖": "〗", "《": "》", "(": ")", "{": "}", "「": "」", "『": "』"}

# unit spellings -> canonical unit (after NFKC + lower case)
_UNIT_CANON = {
    "ml": "ml", "毫升": "ml", "cc": "ml",
    "l": "l", "升": "l", "ltr": "l",
    "g": "g", "克": "g", "gm": "g",
    "kg": "kg", "千克": "kg", "公斤": "kg",
    "mg": "mg", "毫克": "mg",
    "斤": "斤", "两": "两",
    "mm": "mm", "毫米": "mm", "cm": "cm", "厘米": "cm", "m": "m", "米": "m",
    "寸": "寸", "英寸": "英寸", "inch": "英寸",
    "mah": "mah", "w": "w", "瓦": "w", "kw": "kw", "v": "v", "伏": "v",
    "gb": "gb", "tb": "tb", "mb": "mb", "hz": "hz", "ghz": "ghz", "mhz": "mhz",
}
COUNT_UNITS: tuple[str, ...] = (
    "瓶", "罐", "听", "袋", "包", "盒", "箱", "提", "支", "片", "粒", "颗", "只", "个", "件", "套", "双",
    "条", "卷", "块", "枚", "贴", "杯", "桶", "组", "对", "本", "张", "抽", "片装", "支装", "瓶装", "袋装",
    "盒装", "罐装", "包装", "只装", "条装", "卷装", "粒装", "块装", "入",
)
# ASCII units must not run into a following Latin letter (``ml`` in ``mlb`` is not a unit).
_UNIT_RE = re.compile(
    r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>"
    + "|".join(sorted((re.escape(u) for u in _UNIT_CANON), key=len, reverse=True))
    + r")(?![a-z])"
)
_COUNT_RE = re.compile(
    r"(?P<num>\d+)\s+(?P<unit>" + "|".join(sorted(map(re.escape, COUNT_UNITS), key=len, reverse=True)) + ")"
)
_MULT_RE = re.compile(r"(?<=[\w\u4e00-\u9fff])\s*[x×*✕✖]\s*(?=\d)")
_LEADING_MULT_RE = re.compile(r"(?:(?<=\s)|^)[x×*✕✖]\s*(?=\d)")
_SPACE_RE = re.compile(r"\s+")
_MARKS_RE = re.compile("[\u2122\u2120\u00ae\u00a9\u24c7]")
_BRACKET_CHARS_RE = re.compile("[" + re.escape("".join(_BRACKETS) + "".join(_BRACKETS.values())) + "]")
_SEPARATOR_RE = re.compile(r"[~`!@^|\\;:\"<>?,，。！？；：、“”‘’…·•~～_=\u3000]+")
_PROMO_RE = re.compile("|".join(sorted(map(re.escape, PROMO_TERMS), key=len, reverse=True)))


@dataclass(frozen=True)
class NormalizeOptions:
    lowercase: bool = True
    drop_promo: bool = True
    canonical_units: bool = True
    keep_bracket_content: bool = True


DEFAULT_OPTIONS = NormalizeOptions()


def _is_junk(char: str) -> bool:
    """Control/format/private/unassigned code points, pictographs and variation selectors."""
    category = unicodedata.category(char)
    if category in {"Cc", "Cf", "Co", "Cs", "Cn"}:
        return True
    if category == "So":  # emoji, dingbats, pictographs, ®/© ...
        return True
    if category == "Mn" and ("\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef"):
        return True
    return "\U0001f3fb" <= char <= "\U0001f3ff"  # skin-tone modifiers (Sk)


@lru_cache(maxsize=4096)
def _char_clean(char: str) -> str:
    if char in "\t\n\r\v\f\x85\u2028\u2029":
        return " "
    if _is_junk(char):
        return " " if unicodedata.category(char) in {"Cc", "So"} else ""
    return char


class _CleanTable(dict):
    """code point -> its replacement for ``str.translate``, filled on first sight of each character."""

    def __missing__(self, point: int) -> str:
        cleaned = _char_clean(chr(point))
        if len(self) < 65536:  # bounded: past that, characters are classified on each sight
            self[point] = cleaned
        return cleaned


_CLEAN_TABLE = _CleanTable()


def strip_junk(text: str) -> str:
    """Remove invisible and pictographic junk; line breaks and tabs become spaces."""
    return text.translate(_CLEAN_TABLE)


def to_halfwidth(text: str) -> str:
    """NFKC: full-width letters/digits/punctuation to ASCII, compatibility units (㎖ -> ml) spelled out."""
    return unicodedata.normalize("NFKC", text)


def _drop_promo_brackets(text: str, keep_content: bool) -> str:
    """Bracketed segments holding a promo term (or nothing) dropped, other brackets' content kept; a bracket
    character without its partner becomes a space. Jumps from bracket to bracket: most titles have none."""
    out: list[str] = []
    i = 0
    while True:
        match = _BRACKET_CHARS_RE.search(text, i)
        if match is None:
            out.append(text[i:])
            return "".join(out)
        start = match.start()
        out.append(text[i:start])
        close = _BRACKETS.get(text[start])
        if close is not None:
            end = text.find(close, start + 1)
            if end != -1:
                inner = text[start + 1 : end]
                if _PROMO_RE.search(inner) or not inner.strip():
                    out.append(" ")
                else:
                    out.append(f" {inner} " if keep_content else " ")
                i = end + 1
                continue
        out.append(" ")
        i = start + 1


def _canonical_unit(match: re.Match[str]) -> str:
    return f"{match.group('num')}{_UNIT_CANON[match.group('unit')]}"


def canonical_units(text: str) -> str:
    """``550 ML`` -> ``550ml``, ``500克 * 2`` -> ``500g×2``, ``24 瓶`` -> ``24瓶`` (text must be lower case)."""
    text = _UNIT_RE.sub(_canonical_unit, text)
    text = _COUNT_RE.sub(lambda m: m.group("num") + m.group("unit"), text)
    text = _MULT_RE.sub("×", text)
    return _LEADING_MULT_RE.sub("×", text)


def normalize_title(title: Any, options: NormalizeOptions = DEFAULT_OPTIONS) -> str:
    """The canonical form of a product title; None/NaN/non-text -> ``""``."""
    if title is None:
        return ""
    if not isinstance(title, str):
        if isinstance(title, float) and title != title:  # NaN from pandas
            return ""
        title = str(title)
    # NFKC first (㎏ -> kg, ① -> 1), except marks it would spell out as letters (™ -> TM)
    text = strip_junk(to_halfwidth(_MARKS_RE.sub(" ", title)))
    if options.lowercase:
        text = text.lower()
    if options.drop_promo:
        text = _drop_promo_brackets(text, options.keep_bracket_content)
        text = _PROMO_RE.sub(" ", text)
    else:
        text = _BRACKET_CHARS_RE.sub(" ", text)
    text = _SEPARATOR_RE.sub(" ", text)
    if options.canonical_units:
        text = canonical_units(text)
    return _SPACE_RE.sub(" ", text).strip()


def normalize_titles(titles: Iterable[Any], options: NormalizeOptions = DEFAULT_OPTIONS) -> list[str]:
    return [normalize_title(t, options) for t in titles]


@dataclass(frozen=True)
class PackSpec:
    """Quantities read from a title: total volume (ml), total weight (g), item count; None = not stated."""

    volume_ml: float | None = None
    weight_g: float | None = None
    count: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"volume_ml": self.volume_ml, "weight_g": self.weight_g, "count": self.count}


_TO_ML = {"ml": 1.0, "l": 1000.0}
_TO_G = {"g": 1.0, "kg": 1000.0, "mg": 0.001, "斤": 500.0, "两": 50.0}
_SPEC_RE = re.compile(
    r"(?P<num>\d+(?:\.\d+)?)(?P<unit>ml|l|kg|mg|g|斤|两)(?![a-z])(?:×(?P<mult>\d+))?"
)
_COUNT_SPEC_RE = re.compile(
    r"(?:(?P<num>\d+)(?P<unit>" + "|".join(sorted(map(re.escape, COUNT_UNITS), key=len, reverse=True)) + r"))"
)


def parse_pack_spec(title: Any) -> PackSpec:
    """Volume/weight/count from a title (``550ml×24`` -> 13,200 ml and 24 items; ``500g×2`` -> 1,000 g)."""
    text = normalize_title(title)
    volume = weight = None
    count = None
    for match in _SPEC_RE.finditer(text):
        amount = float(match.group("num"))
        mult = int(match.group("mult")) if match.group("mult") else 1
        unit = match.group("unit")
        if mult > 1:
            count = max(count or 1, mult)
        if unit in _TO_ML and volume is None:
            volume = amount * _TO_ML[unit] * mult
        elif unit in _TO_G and weight is None:
            weight = amount * _TO_G[unit] * mult
    for match in _COUNT_SPEC_RE.finditer(text):
        number = int(match.group("num"))
        if 0 < number <= 10000:
            count = max(count or 1, number)
            break
    return PackSpec(volume_ml=volume, weight_g=weight, count=count)
