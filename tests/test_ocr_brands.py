"""Brand extraction from OCR lines: real misreads of our photos, prominence, scoring, evidence."""

from __future__ import annotations

import pytest

from skutag.ocr.brands import BrandMatch, extract_brands
from skutag.ocr.result import OcrLine, OcrResult
from skutag.taxonomy.brands import BrandLexicon


@pytest.fixture(scope="module")
def lexicon() -> BrandLexicon:
    return BrandLexicon.default()


def line(text: str, x: float, y: float, w: float, h: float, score: float = 0.95) -> OcrLine:
    return OcrLine(text, score, ((x, y), (x + w, y), (x + w, y + h), (x, y + h)))


def result(*lines: OcrLine, size=(1000, 1000)) -> OcrResult:
    return OcrResult(image="t", lines=tuple(lines), width=size[0], height=size[1])


@pytest.mark.parametrize(
    "misread, brand",
    [
        ("夫山泉", "农夫山泉"),
        ("农夹治泉", "农夫山泉"),
        ("estbon", "怡宝"),
        ("MGFU SPRING", "农夫山泉"),
        ("娃合哈", "娃哈哈"),
        ("C'EST BON", "怡宝"),
        ("ｏａｔｌｙ", "Oatly"),
        ("TROPICANA", "Tropicana"),
        ("Arla Ko", "Arla"),
        ("ARIA", "Arla"),
        ("可口可乐零度", "可口可乐"),
    ],
)
def test_real_ocr_misreads_still_find_the_brand(lexicon, misread, brand):
    matches = extract_brands(result(line(misread, 400, 450, 200, 80)), lexicon)
    assert matches and matches[0].brand == brand
    assert matches[0].evidence == (misread,)
    assert 0 < matches[0].score <= 1


@pytest.mark.parametrize("text", ["山泉", "天然水 净含量550ml", "Marla", "Net 555ml", "建议零售价2.00", "Arlanda"])
def test_unrelated_or_too_short_text_finds_no_brand(lexicon, text):
    assert extract_brands(result(line(text, 400, 450, 200, 80)), lexicon) == []


def test_short_aliases_need_an_exact_match(lexicon):
    assert extract_brands(result(line("怡宝", 400, 450, 200, 80)), lexicon)[0].brand == "怡宝"
    assert extract_brands(result(line("恰宝", 400, 450, 200, 80)), lexicon) == []  # one of two characters wrong


def test_large_central_text_beats_brands_on_the_shelf_behind(lexicon):
    own = line("OATLY", 380, 420, 260, 120)  # big, in the middle
    shelf = line("ALPRO", 10, 930, 60, 20)  # small, at the bottom edge
    matches = extract_brands(result(shelf, own), lexicon)
    assert [m.brand for m in matches] == ["Oatly", "Alpro"]
    assert matches[0].score > matches[1].score + 0.1


def test_more_evidence_raises_the_score_and_is_listed(lexicon):
    single = extract_brands(result(line("夫山泉", 400, 400, 200, 80)), lexicon)[0]
    both = extract_brands(result(line("夫山泉", 400, 400, 200, 80), line("NONGFU SPRING", 400, 500, 200, 40)), lexicon)[0]
    assert both.brand == "农夫山泉" and both.score > single.score
    assert set(both.evidence) == {"夫山泉", "NONGFU SPRING"}
    assert both.evidence[0] == "NONGFU SPRING"  # the strongest evidence first


def test_top_n_and_json(lexicon):
    lines = [line(t, 100 + 150 * i, 450, 120, 60) for i, t in enumerate(["OATLY", "ALPRO", "VALIO", "BRAVO"])]
    matches = extract_brands(result(*lines), lexicon, top_n=2)
    assert len(matches) == 2 and all(isinstance(m, BrandMatch) for m in matches)
    assert matches[0].to_json()["brand"] == matches[0].brand
    assert set(matches[0].to_json()) == {"brand", "score", "evidence", "alias"}


def test_no_lines_or_errors_give_no_brands(lexicon):
    assert extract_brands(OcrResult(image="x", error="bad"), lexicon) == []
    assert extract_brands(result(), lexicon) == []


def test_a_users_lexicon_replaces_the_bundled_one():
    mine = BrandLexicon.from_csv("brand,aliases,categories\n小熊,Little Bear|xiaoxiong,\n")
    found = extract_brands(result(line("LITTLE BEAR", 400, 450, 200, 80), line("农夫山泉", 400, 600, 200, 80)), mine)
    assert [m.brand for m in found] == ["小熊"]


def test_a_stacked_logo_read_as_separate_lines_is_found(lexicon):
    stacked = result(line("GOD", 420, 380, 160, 70), line("MOR", 400, 460, 120, 70), line("orange", 400, 600, 200, 40))
    matches = extract_brands(stacked, lexicon)
    assert matches and matches[0].brand == "God Morgon"
    assert set(matches[0].evidence) == {"GOD", "MOR"}
    assert extract_brands(result(line("GOD", 420, 380, 160, 70)), lexicon) == []  # one word is not enough
