"""The brand lexicon: CSV round trip, editing, version, verbatim matching, bundled coverage."""

from __future__ import annotations

import csv

import pytest

from skutag.taxonomy.brands import BrandLexicon, LexiconError, compact
from conftest import shared_path


@pytest.fixture()
def lexicon() -> BrandLexicon:
    return BrandLexicon.from_csv(
        "brand,aliases,categories\n"
        "农夫山泉,NONGFU SPRING|nongfushanquan,食品饮料、保健食品 > 饮料冲调 > 饮用水\n"
        "怡宝,C'estbon|yibao,\n"
        "Arla,Arla Ko,\n"
        '"可口可乐","Coca-Cola|Coke",""\n'
    )


def test_csv_round_trip_keeps_everything(tmp_path, lexicon):
    path = lexicon.save(tmp_path / "brands.csv")
    again = BrandLexicon.load(path)
    assert again.entries == lexicon.entries
    assert again.version == lexicon.version
    assert path.read_text(encoding="utf-8").splitlines()[0] == "brand,aliases,categories"
    assert again.aliases_of("怡宝") == ("C'estbon", "yibao")
    assert again.categories_of("农夫山泉") == ("食品饮料、保健食品 > 饮料冲调 > 饮用水",)


def test_crud_and_version_changes_with_every_edit(lexicon):
    original = lexicon.version
    seen = {original}
    lexicon.add("雪碧", ["Sprite"], ["食品饮料、保健食品 > 饮料冲调 > 饮料"])
    seen.add(lexicon.version)
    lexicon.update("雪碧", add_aliases=["xuebi"])
    seen.add(lexicon.version)
    assert lexicon.aliases_of("Sprite") == ("Sprite", "xuebi")
    lexicon.update("雪碧", rename="Sprite 雪碧", remove_aliases=["sprite"])
    seen.add(lexicon.version)
    assert "雪碧" not in lexicon.brands and lexicon.resolve("xuebi") == "Sprite 雪碧"
    assert len(seen) == 4
    lexicon.delete("Sprite 雪碧")
    assert lexicon.version == original  # the version is of the content: back to the same lexicon
    assert len(lexicon.version) == 12 and int(lexicon.version, 16) >= 0


def test_update_keeps_order_and_delete_frees_aliases(lexicon):
    lexicon.update("怡宝", categories=["食品饮料、保健食品 > 饮料冲调 > 饮用水"])
    assert lexicon.brands == ["农夫山泉", "怡宝", "Arla", "可口可乐"]
    lexicon.delete("Arla")
    lexicon.add("Arla Foods", ["Arla Ko"])  # the alias is free again
    assert lexicon.resolve("ARLA KO") == "Arla Foods"


def test_edits_that_would_corrupt_the_lexicon_are_refused(lexicon):
    with pytest.raises(LexiconError, match="already"):
        lexicon.add("农夫山泉")
    with pytest.raises(LexiconError, match="already a name of"):
        lexicon.add("Nongfu Copy", ["Nongfu Spring"])  # same alias, other case/spacing
    with pytest.raises(LexiconError, match="no brand"):
        lexicon.delete("nope")
    with pytest.raises(LexiconError, match="'\\|'"):
        lexicon.add("a|b")
    with pytest.raises(LexiconError, match="already a name of"):
        lexicon.update("怡宝", add_aliases=["Coke"])
    assert lexicon.aliases_of("怡宝") == ("C'estbon", "yibao")  # a refused edit changes nothing


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,aliases\nx,y\n", "header"),
        ("brand,aliases,categories\n,alias,\n", ":2: empty brand name"),
        ("brand,aliases,categories\nA,,\nA,,\n", ":3:"),
        ("brand,aliases,categories\nA,x,y,z\n", "columns"),
    ],
)
def test_bad_files_name_the_line(text, message):
    with pytest.raises(LexiconError, match=message):
        BrandLexicon.from_csv(text)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(LexiconError, match="not found"):
        BrandLexicon.load(tmp_path / "none.csv")


def test_match_text_finds_brands_verbatim_for_titles(lexicon):
    title = "【农夫山泉】饮用天然水 NONGFU-SPRING 550ml，可口可乐 COCA COLA，Marla 牌 ARLA KO 牛奶"
    found = lexicon.match_text(title)
    assert [(m.brand, m.alias) for m in found] == [
        ("农夫山泉", "农夫山泉"), ("农夫山泉", "NONGFU SPRING"), ("可口可乐", "可口可乐"),
        ("可口可乐", "Coca-Cola"), ("Arla", "Arla Ko"),
    ]
    assert title[found[1].start:found[1].end] == "NONGFU-SPRING"
    assert lexicon.match_text("cestbon 550ml")[0].brand == "怡宝"
    assert lexicon.match_text("Marlaboro cokes") == []  # Latin aliases match whole words only


def test_bundled_lexicon_covers_the_grocery_brands_and_categories_are_real_paths():
    lexicon = BrandLexicon.default()
    manifest = shared_path("grocery", "manifest.csv")
    brands = {row["brand"] for row in csv.DictReader(manifest.open(encoding="utf-8")) if row["brand"]}
    assert brands and all(lexicon.resolve(brand) for brand in brands), brands
    tree = shared_path("taxonomy_jd", "category_paths.tsv")
    paths = {" > ".join(row[1:]) for row in csv.reader(tree.open(encoding="utf-8"), delimiter="\t")}
    for brand in lexicon:
        for category in brand.categories:
            assert category in paths, (brand.name, category)
    for name in ("农夫山泉", "怡宝", "可口可乐", "雪碧", "东方树叶", "脉动", "娃哈哈", "七喜", "Tropicana", "Oatly"):
        assert name in lexicon
    assert lexicon.resolve("C'estbon") == "怡宝" and lexicon.resolve("nongfushanquan") == "农夫山泉"
    assert compact("Ｃ’EST BON") == "cestbon"
