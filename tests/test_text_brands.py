"""Brand-in-title extraction: lexicon aliases with word-boundary rules, exact spans, shop patterns, real titles."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import shared_path
from skutag.text import extract_title_brands, normalize_title

LEXICON = {
    "农夫山泉": ["NONGFU SPRING", "农夫"],
    "怡宝": ["C'estbon"],
    "AHC": [],
    "LG": [],
    "白川": [],
    "鸿星尔克": ["ERKE"],
}


def _brands(title, lexicon=LEXICON, **kwargs):
    return [(b.brand, title[b.start : b.end]) for b in extract_title_brands(title, lexicon, **kwargs)]


def test_aliases_map_to_the_canonical_brand_with_exact_spans():
    title = "【包邮】ＮＯＮＧＦＵ　ＳＰＲＩＮＧ 饮用天然水"
    found = extract_title_brands(title, LEXICON)
    assert [(b.brand, b.text) for b in found] == [("农夫山泉", "ＮＯＮＧＦＵ　ＳＰＲＩＮＧ")]
    assert title[found[0].start : found[0].end] == found[0].text  # spans index the raw title
    # the longer alias (curly apostrophe as shops type it) is the evidence kept for the brand
    assert _brands("怡宝C’estbon纯净水 555ml") == [("怡宝", "C’estbon")]
    assert _brands("韩国AHC黄金套盒") == [("AHC", "AHC")]


def test_boundary_rules_keep_precision():
    assert _brands("lgbt 彩虹旗") == []  # a Latin alias inside a longer Latin word
    assert _brands("bahcx 面霜") == []
    assert _brands("LG 显示器") == [("LG", "LG")]
    assert _brands("明白川菜的做法") == []  # 白川 is not a word here
    assert _brands("白川 电热水壶") == [("白川", "白川")]


def test_one_result_per_brand_and_longest_match_wins():
    found = extract_title_brands("农夫山泉 农夫山泉 NONGFU SPRING 天然水", LEXICON)
    assert [b.brand for b in found] == ["农夫山泉"]
    assert found[0].text == "农夫山泉" and found[0].score >= 0.9  # the full name, not 农夫


def test_patterns_find_brands_the_lexicon_lacks():
    found = extract_title_brands("ANTA/安踏 跑步鞋 男", LEXICON)
    assert [(b.brand, b.source, b.aliases) for b in found] == [("安踏", "pattern", ("ANTA",))]
    found = extract_title_brands("温克(WENKE)女式网面跑步鞋", LEXICON)
    assert [(b.brand, b.aliases) for b in found] == [("温克", ("WENKE",))]
    assert extract_title_brands("ANTA/安踏 跑步鞋", LEXICON, patterns=False) == []
    # known brands are not repeated by the pattern
    assert [b.source for b in extract_title_brands("ERKE/鸿星尔克 跑步鞋", LEXICON)] == ["lexicon"]
    assert all(b.score >= 0.6 for b in extract_title_brands("ANTA/安踏 跑步鞋", LEXICON, min_score=0.6))
    assert extract_title_brands("ANTA/安踏 跑步鞋", LEXICON, min_score=0.9) == []


def test_discovery_of_unknown_leading_words_is_opt_in():
    assert extract_title_brands("宏情 中老年晨练太极服", LEXICON) == []
    found = extract_title_brands("宏情 中老年晨练太极服", LEXICON, discover=True)
    assert [(b.brand, b.source) for b in found] == [("宏情", "jieba")]
    # ordinary words and category names are not brands
    assert extract_title_brands("佛教用品 精美黄财神袋子", LEXICON, discover=True) == []
    assert extract_title_brands("跑步鞋 女式 透气", LEXICON, discover=True) == []


def test_a_new_list_with_the_same_brands_reuses_one_matcher_and_a_changed_one_does_not():
    """Callers pass a fresh list per title ([] or the shop's brands): one matcher and one jieba dictionary serve
    them all, while a list whose brands changed (even at the same length) gets its own."""
    from skutag.text.brands import brand_matcher

    first = brand_matcher(["宏情", "白川"])
    assert brand_matcher(["宏情", "白川"]) is first and brand_matcher(iter(["宏情", "白川"])) is first
    assert brand_matcher(dict.fromkeys(["宏情", "白川"], [])) is first  # the same brands and aliases
    swapped = brand_matcher(["宏情", "怡宝"])
    assert swapped is not first and "怡宝" in swapped.aliases and "白川" not in swapped.aliases
    for _ in range(2):
        assert [b.brand for b in extract_title_brands("宏情 中老年晨练太极服", [], discover=True)] == ["宏情"]
    assert brand_matcher([]) is brand_matcher([])  # the jieba dictionary above was loaded once


def test_junk_and_missing_titles():
    assert extract_title_brands(None, LEXICON) == [] and extract_title_brands("", LEXICON) == []
    found = extract_title_brands("\u200b农夫\u200b山泉👍 怡宝\x00", LEXICON)
    assert "怡宝" in [b.brand for b in found]
    with pytest.raises(ValueError, match="needs a brand lexicon"):
        extract_title_brands("怡宝", None)
    assert json.dumps([b.to_json() for b in found], ensure_ascii=False)


def test_works_with_the_bundled_brand_lexicon():
    from skutag.taxonomy import BrandLexicon

    lexicon = BrandLexicon.default()
    found = extract_title_brands("农夫山泉 NONGFU SPRING 饮用天然水 550ml*24瓶 可口可乐 Coca-Cola", lexicon)
    assert {b.brand for b in found} == {"农夫山泉", "可口可乐"}


def test_real_cosmetics_titles_with_a_lexicon_from_other_titles():
    """Product1M cosmetics titles: brands known from other titles are found in new ones."""
    rows = [json.loads(line) for line in shared_path("cn_cosmetics_titles", "dev.jsonl").read_text("utf-8").splitlines()]
    held = [r for r in rows if int(hashlib.md5(r["title"].encode()).hexdigest(), 16) % 10 == 0]
    lexicon = sorted({b for r in rows if r not in held for b in r["brands"]})
    tp = fp = fn = 0
    for row in held:
        gold = {normalize_title(b).replace(" ", "") for b in row["brands"]}
        found = {normalize_title(b.brand).replace(" ", "") for b in extract_title_brands(row["title"], lexicon)}
        tp += len(found & gold)
        fp += len(found - gold)
        fn += len(gold - found)
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    print(f"{len(held)} titles: precision {precision:.3f} recall {recall:.3f}")
    assert len(held) > 200 and precision >= 0.95 and recall >= 0.8
