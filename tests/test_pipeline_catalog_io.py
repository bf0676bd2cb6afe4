"""Catalog files: JSONL/CSV/TSV rows -> products; malformed rows reported by line and skipped."""

from __future__ import annotations

import json
import shutil

import pytest

from skutag.fusion.result import Alternative, Decision, TagResult
from skutag.catalog_write import TAG_JSON_KEYS, write_catalog, write_results
from skutag.catalog_io import (
    CatalogError,
    RowError,
    parse_price,
    read_catalog,
)
from skutag.queue.catalog_source import iter_catalog
from conftest import shared_path


@pytest.fixture()
def photo_dir(tmp_path):
    src = shared_path("cn_bottles", "images", "怡宝.jpg")
    (tmp_path / "img").mkdir()
    shutil.copy(src, tmp_path / "img" / "a.jpg")
    return tmp_path


def test_jsonl_reads_good_rows_and_reports_bad_ones_by_line(photo_dir):
    lines = [
        {"id": "1", "image": "img/a.jpg", "title": "怡宝 纯净水 555ml", "price": "¥2.50",
         "category": "食品饮料>饮料冲调 >饮用水", "brand": "怡宝"},
        "{not json",
        {"id": "3", "title": "   ", "price": 3},  # no image, blank title
        {"id": "4", "title": "可口可乐 330ml", "price": "abc"},
        {"id": "1", "title": "duplicate"},
        [1, 2],
        {"id": 7, "title": "雪碧 500ml"},  # id as a number, no price: fine
        {"title": "no id, price with comma", "price": "12,5"},
        {"id": "9", "title": "negative", "price": -1},
        {"id": "10", "title": "empty level", "category": "a >  > c"},
    ]
    path = photo_dir / "catalog.jsonl"
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l, ensure_ascii=False) for l in lines)
                    + "\n\n", encoding="utf-8")
    catalog = read_catalog(path)
    assert [p.id for p in catalog] == ["1", "7", "line-8"]
    first = catalog.products[0]
    assert first.image == str(photo_dir / "img" / "a.jpg")
    assert first.price == 2.5 and first.category == "食品饮料 > 饮料冲调 > 饮用水" and first.brand == "怡宝"
    assert catalog.products[2].price == 12.5
    errors = {e.line: e.message for e in catalog.errors}
    assert set(errors) == {2, 3, 4, 5, 6, 9, 10}
    assert "JSON" in errors[2] and "neither an image nor a title" in errors[3]
    assert "price" in errors[4] and "duplicate id '1'" in errors[5] and "JSON object" in errors[6]
    assert errors[9] == "price: must be a number from 0 to 1e9, got -1" and "empty level" in errors[10]
    assert str(catalog.errors[0]).startswith("line 2:")


def test_csv_and_tsv_with_bom_and_ragged_rows(tmp_path):
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("\ufeffid,title,price,category\n"
                        "a,\"农夫山泉, 550ml\",2,食品饮料 > 饮料冲调 > 饮用水\n"
                        "b,too,many,fields,here\n"
                        "\n"
                        "c,脉动,,\n", encoding="utf-8")
    catalog = read_catalog(csv_path, require_category=False)
    assert [p.id for p in catalog] == ["a", "c"]
    assert catalog.products[0].title == "农夫山泉, 550ml" and catalog.products[1].price is None
    assert [e.line for e in catalog.errors] == [3]
    strict = read_catalog(csv_path, require_category=True)
    assert [p.id for p in strict] == ["a"] and {e.line for e in strict.errors} == {3, 5}

    tsv_path = tmp_path / "t.tsv"
    tsv_path.write_text("title\tcategory\n苹果 红富士\t生鲜 > 水果 > 苹果\n", encoding="utf-8")
    assert read_catalog(tsv_path).products[0].category == "生鲜 > 水果 > 苹果"


def test_whole_file_problems_are_clear(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        read_catalog(tmp_path / "nope.jsonl")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(CatalogError, match=r"\.jsonl, \.csv or \.tsv"):
        read_catalog(tmp_path / "x.xlsx")
    (tmp_path / "h.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(CatalogError, match="'image' or 'title'"):
        read_catalog(tmp_path / "h.csv")


@pytest.mark.parametrize("raw, expected", [("1 299,00 kr", 1299.0), ("RMB 35", 35.0), (3, 3.0), ("", None),
                                           (None, None), ("1,299.50", 1299.5), ("1.299,00", 1299.0),
                                           ("12,50", 12.5), ("¥1,299,000", 1299000.0), ("0,5", 0.5)])
def test_price_parsing(raw, expected):
    assert parse_price(raw) == expected


@pytest.mark.parametrize("raw", ["1,299", "¥2,000", "cheap", "1.2.3"])
def test_an_ambiguous_or_unreadable_price_is_an_error_not_a_guess(raw):
    with pytest.raises(ValueError, match="not a number"):
        parse_price(raw)


def test_round_trip_and_content_hash_follows_image_bytes(photo_dir):
    catalog = read_catalog(_write(photo_dir, [{"id": "1", "image": "img/a.jpg", "title": "t", "category": "x > y"}]))
    out = write_catalog(catalog.products, photo_dir / "copy" / "c.jsonl")
    again = read_catalog(out)
    assert again.products == catalog.products
    before = catalog.content_hash()
    (photo_dir / "img" / "a.jpg").write_bytes(b"changed")
    assert read_catalog(photo_dir / "c.jsonl").content_hash() != before


def test_result_rows_have_exactly_the_cli_keys(tmp_path, capsys):
    result = TagResult(id="1", label="饮用水", path="食品饮料 > 饮料冲调 > 饮用水", confidence=0.91,
                       decision=Decision.AUTO, alternatives=(Alternative("碳酸饮料", "食品饮料 > 饮料冲调 > 碳酸饮料", 0.05),),
                       contributions={"vision": 0.7, "ocr": 0.3}, reasons=("confidence 0.91 >= 0.60",))
    write_results([result, TagResult.failed("2", "image: not an image")])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [tuple(row) for row in rows] == [TAG_JSON_KEYS, TAG_JSON_KEYS]
    assert rows[0]["alternatives"][0]["label"] == "碳酸饮料" and rows[1]["decision"] == "manual"
    write_results([result], tmp_path / "r.csv")
    assert "饮用水" in (tmp_path / "r.csv").read_text(encoding="utf-8")


def _read_both_ways(path):
    """(products, errors) from read_catalog, after checking the streaming reader of batches agrees."""
    catalog = read_catalog(path)
    streamed = list(iter_catalog(path))
    assert [p for p in streamed if not isinstance(p, RowError)] == catalog.products
    assert [(e.line, e.message) for e in streamed if isinstance(e, RowError)] == \
        [(e.line, e.message) for e in catalog.errors]
    return catalog.products, catalog.errors


def test_a_jsonl_row_that_is_not_utf8_is_skipped_and_the_rest_read(tmp_path):
    path = tmp_path / "latin.jsonl"
    rows = [json.dumps({"id": f"g{i}", "title": f"Äpple {i}"}, ensure_ascii=False).encode() + b"\n"
            for i in range(1, 6)]
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(rows[:3]) + b'{"id": "x1", "title": "caf\xe9", "price": 3}\n'
                     + b"".join(rows[3:]))
    products, errors = _read_both_ways(path)
    assert [p.id for p in products] == ["g1", "g2", "g3", "g4", "g5"] and products[0].title == "Äpple 1"
    assert [str(e) for e in errors] == ["line 4: not valid UTF-8 (byte 0xe9 at column 27); save the catalog as UTF-8"]


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_a_csv_row_that_is_not_utf8_is_skipped_and_the_rest_read(tmp_path, suffix, sep):
    path = tmp_path / f"latin{suffix}"
    lines = [f"id{sep}title{sep}price", f"a{sep}Äpple{sep}2", f"b{sep}\"multi\nline\"{sep}3"]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode() + f"c{sep}caf".encode() + b"\xe9" +
                     f"{sep}4\r\nd{sep}Oatly{sep}5\r\n".encode())
    products, errors = _read_both_ways(path)
    assert [(p.id, p.title) for p in products] == [("a", "Äpple"), ("b", "multi\nline"), ("d", "Oatly")]
    assert [str(e) for e in errors] == \
        ["line 5: not valid UTF-8 (byte 0xe9 in the 'title' field); save the catalog as UTF-8"]


def test_a_csv_header_that_is_not_utf8_is_a_catalog_error(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes(b"id,t\xeftle\n1,x\n")
    with pytest.raises(CatalogError, match=r"header \(line 1\) is not valid UTF-8 \(byte 0xef"):
        read_catalog(path)


def test_a_never_closed_csv_quote_is_reported_and_the_rows_after_it_read(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('id,title,price\na,Arla,1\nb,"Oatly,2\nc,Valio,3\nd,Bravo,4\n', encoding="utf-8")
    products, errors = _read_both_ways(path)
    assert [p.id for p in products] == ["a", "c", "d"]
    assert [e.line for e in errors] == [3] and "quote opened on this line is never closed" in errors[0].message


def test_a_csv_quote_closed_rows_later_is_named_with_the_lines_it_swallowed(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('id,title,price\nb,"Oatly,2\nc,"Valio, 1l",3\nd,Bravo,4\n', encoding="utf-8")
    products, errors = _read_both_ways(path)
    assert [p.id for p in products] == ["d"]
    assert [e.line for e in errors] == [3]
    assert "a quoted field runs from line 2 to line 3" in errors[0].message


def test_old_mac_line_ends_still_split_rows(tmp_path):
    path = tmp_path / "mac.jsonl"
    path.write_bytes(b'{"id": "a", "title": "x"}\r{"id": "b", "title": "y"}\r')
    products, errors = _read_both_ways(path)
    assert [p.id for p in products] == ["a", "b"] and errors == []


def test_jsonl_keys_are_case_insensitive_like_csv_headers(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"ID": "1", "Title": "Arla", "PRICE": "2", " Category ": "Dairy > Milk"},
            {"id": "2", "title": "x", "Title": "y"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    products, errors = _read_both_ways(path)
    assert [(p.id, p.title, p.price, p.category) for p in products] == [("1", "Arla", 2.0, "Dairy > Milk")]
    assert [e.line for e in errors] == [2] and "'title' and 'Title' name the same column" in errors[0].message


def _write(directory, rows):
    path = directory / "c.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_first_row_owns_an_id_even_when_it_is_malformed(tmp_path):
    from skutag.queue.catalog_source import iter_catalog

    rows = ['{"id": "x", "title": "Banana", "price": "cheap"}', '{"id": "x", "title": "Banana", "price": 3}',
            '{"id": "y", "title": "Kiwi"}']
    path = tmp_path / "owned.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    catalog = read_catalog(path)
    assert [p.id for p in catalog.products] == ["y"]
    assert [str(e) for e in catalog.errors] == [
        "line 1: price: not a number: 'cheap'",
        "line 2: duplicate id 'x' (first on line 1)"]
    streamed = list(iter_catalog(path))
    assert [str(item) if not hasattr(item, "title") else item.id for item in streamed] == [
        "line 1: price: not a number: 'cheap'", "line 2: duplicate id 'x' (first on line 1)", "y"]


@pytest.mark.parametrize("name, data, needle", [
    ("utf16.jsonl", '{"id": "a", "title": "Banana"}\n'.encode("utf-16"), "UTF-16"),
    ("utf16.csv", "id,title\na,Banana\n".encode("utf-16-le"), "UTF-16"),
    ("twice.csv", b"id,Title,title\na,Banana,Kiwi\n", "names a column twice"),
])
def test_a_catalog_in_utf16_or_with_a_column_named_twice_is_refused_as_a_whole(tmp_path, name, data, needle):
    from skutag.queue.catalog_source import iter_catalog

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CatalogError, match=needle):
        read_catalog(path)
    with pytest.raises(CatalogError, match=needle):
        list(iter_catalog(path))
