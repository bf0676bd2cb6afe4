"""jieba tokenisation: the user dictionary really changes segmentation, on real titles."""

from __future__ import annotations

import csv
import pickle

import pytest

from conftest import shared_path
from skutag.text import TitleTokenizer
from skutag.text.tokenize import default_user_words


@pytest.fixture(scope="module")
def real_title() -> str:
    path = shared_path("cn_titles", "titles.tsv")
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["title"].startswith("ERKE/鸿星尔克 跑步鞋"):
                return row["title"]
    pytest.fail("the ERKE running-shoe title is missing from cn_titles")


@pytest.fixture(scope="module")
def plain() -> TitleTokenizer:
    return TitleTokenizer()


def test_user_dict_changes_segmentation_of_a_real_title(real_title, plain):
    with_dict = TitleTokenizer(user_words=["鸿星尔克"], use_default_words=True)
    before, after = plain.tokenize(real_title), with_dict.tokenize(real_title)
    # plain jieba cuts the brand and the JD leaf name 跑步鞋 apart
    assert "鸿星尔克" not in before and "跑步鞋" not in before
    assert "鸿星尔克" in after and "跑步鞋" in after
    report = with_dict.user_dict_report()
    assert report.words > 1000 and report.failed == ()
    assert report.in_jieba + report.prepass >= report.words


def test_private_dictionary_does_not_leak(plain):
    TitleTokenizer(user_words=["铁观音礼盒"]).tokenize("清香型铁观音礼盒装")
    assert "铁观音礼盒" not in plain.tokenize("清香型铁观音礼盒装")
    import jieba

    assert "铁观音礼盒" not in jieba.lcut("清香型铁观音礼盒装")


def test_words_jieba_cannot_hold_still_come_out_whole(plain):
    """Spaces and characters outside jieba's word pattern make add_word a silent no-op."""
    title = "特价hello kitty专柜冬季女童装 日本dr.ci#labo城野医生uv防晒蜜粉 C'estbon怡宝"
    before = plain.tokenize(title)
    assert "hello kitty" not in before and "dr.ci#labo" not in before
    tokenizer = TitleTokenizer(user_words=["Hello Kitty", "DR.CI#LABO", "城野医生", "c'estbon"])
    after = tokenizer.tokenize(title)
    for word in ("hello kitty", "dr.ci#labo", "城野医生", "c'estbon"):
        assert word in after, after
    assert tokenizer.user_dict_report().prepass >= 2  # "hello kitty" and "c'estbon"


def test_quantities_stay_whole_and_give_shape_tokens(plain):
    tokens = plain.tokenize("农夫山泉 饮用天然水 550ML*24瓶 spf50 3.5g 2014")
    assert "550ml" in tokens and "#ml" in tokens
    assert "24瓶" in tokens and "#瓶" in tokens
    assert "3.5g" in tokens and "#num" in tokens
    assert "*" not in tokens and " " not in tokens


def test_unicode_junk_and_missing_titles(plain):
    assert plain.tokenize(None) == [] and plain.tokenize("") == [] and plain.tokenize("\u200b\ufeff👍") == []
    assert plain.tokenize("可口\u200b可乐👍🏽") == plain.tokenize("可口可乐")
    assert plain.tokenize("ＮＩＫＥ跑鞋") == plain.tokenize("nike跑鞋")


def test_pickles_without_the_jieba_instance():
    tokenizer = TitleTokenizer(user_words=["鸿星尔克"])
    expected = tokenizer.tokenize("ERKE/鸿星尔克 跑步鞋")
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone.tokenize("ERKE/鸿星尔克 跑步鞋") == expected


def test_default_words_come_from_tree_label_map_and_lexicon():
    words = default_user_words()
    assert "饮用水" in words  # taxonomy
    assert "啤酒瓶" in words or "水瓶" in words  # label map
    assert "农夫山泉" in words  # brand lexicon
    assert all(len(w) >= 2 and w == w.lower() for w in words)


def _real_titles(limit: int) -> list[str]:
    with shared_path("cn_titles", "titles.tsv").open(encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["title"] for _, row in zip(range(limit), rows)]


def test_chunk_cache_segments_exactly_as_jieba_on_the_whole_title():
    """Titles are segmented one space-free chunk at a time, recurring chunks looked up: the words must be
    jieba's own on the whole text between the pre-pass matches, cold cache and warm."""
    from skutag.text.normalize import normalize_title
    from skutag.text.tokenize import _PUNCT_RE

    tokenizer = TitleTokenizer(use_default_words=True)
    titles = [normalize_title(t) for t in _real_titles(3000)]
    tokenizer.segment("")
    jieba, prepass = tokenizer._jieba, tokenizer._prepass_re

    def whole(text: str) -> list[str]:
        pieces, position = [], 0
        for match in prepass.finditer(text):
            pieces.extend(jieba.cut(text[position:match.start()], HMM=tokenizer.hmm))
            pieces.append(match.group(0))
            position = match.end()
        pieces.extend(jieba.cut(text[position:], HMM=tokenizer.hmm))
        return [p.strip() for p in pieces if p.strip() and not _PUNCT_RE.match(p.strip())]

    expected = [whole(t) for t in titles]
    assert [tokenizer.segment(t) for t in titles] == expected  # cold: every chunk cut once
    assert len(tokenizer._chunks) > 0
    assert [tokenizer.segment(t) for t in titles] == expected  # warm: chunks looked up


def test_chunk_cache_is_bounded(monkeypatch):
    import skutag.text.tokenize as tokenize

    monkeypatch.setattr(tokenize, "_CHUNK_CACHE_SIZE", 50)
    tokenizer = TitleTokenizer()
    for title in _real_titles(500):
        tokenizer.tokenize(title)
        assert len(tokenizer._chunks) <= 50
