"""Streaming catalog reading for batches (CSV + JSONL) and the resumable output file."""

from __future__ import annotations

import json

import pytest

from skutag.catalog import Product
from skutag.queue.catalog_source import CatalogFormatError, RowError, catalog_id_prefix, count_rows, iter_catalog
from skutag.queue.results import OutputFileError, check_output_path, read_resume_state


def test_csv_rows_stream_with_line_numbers(tmp_path):
    catalog = tmp_path / "shop.csv"
    catalog.write_text(
        "id,image,title,price,category\n"
        "a,photos/a.jpg,Arla mjölk,\"12,50\",Packages > Milk > Arla-Standard-Milk\n"
        "b,,Oatly havredryck,abc,\n"
        "c,,Valio yoghurt,5,x,extra\n"
        "\n"
        "a,,again,,\n"
        ",,\"Bravo \"\"juice\"\"\",7.5,\n",
        encoding="utf-8",
    )
    items = list(iter_catalog(catalog))
    assert count_rows(catalog) == 5
    first, bad_price, extra, duplicate, no_id = items
    assert first == Product(id="a", image=str(tmp_path / "photos" / "a.jpg"), title="Arla mjölk", price=12.5,
                            category="Packages > Milk > Arla-Standard-Milk")
    assert isinstance(bad_price, RowError) and bad_price.line == 3 and bad_price.id == "b"
    assert "price" in bad_price.message
    assert isinstance(extra, RowError) and extra.line == 4 and "expected 5 fields, got 6" in extra.message
    assert isinstance(duplicate, RowError) and duplicate.line == 6 and duplicate.id is None
    assert "duplicate id 'a' (first on line 2)" in duplicate.message
    assert no_id == Product(id="line-7", title='Bravo "juice"', price=7.5)


def test_unreadable_catalogs_are_named(tmp_path):
    with pytest.raises(CatalogFormatError, match="catalog not found"):
        list(iter_catalog(tmp_path / "missing.jsonl"))
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(CatalogFormatError, match=".jsonl or .csv"):
        list(iter_catalog(tmp_path / "x.xlsx"))
    (tmp_path / "h.csv").write_text("sku,name\n1,x\n", encoding="utf-8")
    with pytest.raises(CatalogFormatError, match="'image' or 'title' column"):
        list(iter_catalog(tmp_path / "h.csv"))


def _result_line(product_id: str, error: str | None = None) -> str:
    from skutag.fusion.result import Decision, TagResult
    from skutag.queue.core import result_row

    result = (TagResult.failed(product_id, error) if error else
              TagResult(id=product_id, label="Milk", path="Dairy > Milk", confidence=0.9, decision=Decision.AUTO))
    return json.dumps(result_row(result, "ab" * 32), ensure_ascii=False) + "\n"


def test_resume_state_reads_done_and_failed_ids_and_repairs_a_cut_line(tmp_path):
    out = tmp_path / "results.jsonl"
    lines = [_result_line("a"), _result_line("b", "ImageDecodeError: bad"), _result_line("c")]
    out.write_text("".join(lines) + _result_line("d")[:15], encoding="utf-8")
    state = read_resume_state(out)
    assert state.dropped_partial_line and state.done_ids == {"a", "c"} and state.failed_ids == {"b"}
    assert out.read_text(encoding="utf-8") == "".join(lines)
    retry = read_resume_state(out, retry_failed=True)
    assert retry.finished_ids == {"a", "c"}
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a", "c"]


def test_a_character_cut_in_two_by_a_crash_is_dropped_with_its_line(tmp_path):
    out = tmp_path / "results.jsonl"
    whole = _result_line("a")
    cut = _result_line("香蕉").encode("utf-8")
    out.write_bytes(whole.encode("utf-8") + cut[:cut.index("香".encode()) + 1])  # 1 of the 3 bytes of 香
    state = read_resume_state(out)
    assert state.dropped_partial_line and state.done_ids == {"a"}
    assert out.read_text(encoding="utf-8") == whole


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\n\x00\x01\xff\xd9", "line 1 is not UTF-8 text"),  # a photo
    (b"hello, no newline at the end", "line 1 is not a skutag result row, nor one cut off by a crash"),
    (b'{"id": "s1", "title": "Arla"}\n{"id": "s2", "title": "Oatly"}', "line 1 is not a skutag result row"),
    (b"[1, 2]\n", "line 1 is not a skutag result row"),
    (_result_line("a").encode() + b"notes\n", "line 2 is not JSON"),
])
def test_an_output_that_is_not_ours_is_refused_and_left_untouched(tmp_path, content, problem):
    out = tmp_path / "victim.jpg"
    out.write_bytes(content)
    for retry_failed in (False, True):
        with pytest.raises(OutputFileError) as refused:
            read_resume_state(out, retry_failed=retry_failed)
        assert str(out) in str(refused.value) and problem in str(refused.value)
        assert out.read_bytes() == content


def test_an_output_that_is_the_catalog_a_folder_or_in_no_folder_is_refused(tmp_path):
    catalog = tmp_path / "shop.jsonl"
    catalog.write_text('{"id": "s1", "title": "Arla"}\n{"id": "s2", "title": "Oatly"}', encoding="utf-8")
    (tmp_path / "link.jsonl").symlink_to(catalog)
    with pytest.raises(OutputFileError, match="is the catalog itself"):
        check_output_path(catalog, catalog)
    with pytest.raises(OutputFileError, match="is the catalog itself"):
        check_output_path(tmp_path / "link.jsonl", catalog)
    with pytest.raises(OutputFileError, match="is a folder"):
        check_output_path(tmp_path, catalog)
    with pytest.raises(OutputFileError, match=f"the folder {tmp_path / 'nowhere'} does not exist"):
        check_output_path(tmp_path / "nowhere" / "out.jsonl", catalog)
    check_output_path(tmp_path / "new.jsonl", catalog)  # a new file next to the catalog is fine
    assert not (tmp_path / "new.jsonl").exists()


def test_a_malformed_row_repeating_an_earlier_id_is_a_duplicate_and_leaves_that_product(tmp_path):
    catalog = tmp_path / "dup.jsonl"
    rows = [{"id": "X", "title": "Arla mjölk", "price": 5}, {"id": "X", "title": "Arla mjölk", "price": "abc"},
            {"id": "Y", "price": "abc", "title": "Oatly"}, {"id": "Y", "title": "Oatly"}]
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    first, repeat, bad, valid_repeat = iter_catalog(catalog)
    assert first == Product(id="X", title="Arla mjölk", price=5.0)
    assert isinstance(repeat, RowError) and repeat.line == 2 and repeat.id is None
    assert "duplicate id 'X' (first on line 1)" in repeat.message and "price: not a number" in repeat.message
    assert isinstance(bad, RowError) and bad.id == "Y"  # the first row naming Y holds the id, malformed or not
    assert isinstance(valid_repeat, RowError) and valid_repeat.id is None
    assert "duplicate id 'Y' (first on line 3)" in valid_repeat.message


def test_rows_without_an_id_get_ids_unique_to_their_catalog_with_a_prefix(tmp_path):
    from skutag.policy.fields import PRODUCT_ID_RE

    catalog = tmp_path / "spring sale 2024.csv"
    catalog.write_text("id,title\n,Arla mjölk\nline-2,Oatly\n,Valio\n", encoding="utf-8")
    prefix = catalog_id_prefix(catalog)
    ids = [item.id for item in iter_catalog(catalog, id_prefix=prefix)]
    assert ids == [f"{prefix}:line-2", "line-2", f"{prefix}:line-4"]  # an id the row names is kept as it is
    assert next(iter_catalog(catalog)).id == "line-2"  # without a prefix (no database): as before
    assert prefix.startswith("spring-sale-2024-") and all(PRODUCT_ID_RE.match(i) for i in ids)
    names = ["A.jsonl", "B.jsonl", "商品.jsonl", "目录.jsonl", "x" * 300 + ".jsonl", "A.csv"]
    prefixes = [catalog_id_prefix(tmp_path / name) for name in names]
    assert prefixes[0] == "A" and prefixes[1] == "B" and prefixes[5] == "A"  # the stem, as written
    assert len(set(prefixes[:5])) == 5 and all(PRODUCT_ID_RE.match(f"{p}:line-99999999") for p in prefixes)
