"""Streaming catalog reading for batches (CSV + JSONL) and the resumable output file."""

from __future__ import annotations

import json

import pytest

from skutag.catalog import Product
from skutag.queue.catalog_source import CatalogFormatError, RowError, count_rows, iter_catalog
from skutag.queue.results import read_resume_state


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


def test_resume_state_reads_done_and_failed_ids_and_repairs_a_cut_line(tmp_path):
    out = tmp_path / "results.jsonl"
    rows = [{"id": "a", "error": None}, {"id": "b", "error": "ImageDecodeError: bad"}, {"id": "c", "error": None}]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": "d", "lab', encoding="utf-8")
    state = read_resume_state(out)
    assert state.dropped_partial_line and state.done_ids == {"a", "c"} and state.failed_ids == {"b"}
    assert out.read_text(encoding="utf-8").endswith("}\n")
    retry = read_resume_state(out, retry_failed=True)
    assert retry.finished_ids == {"a", "c"}
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a", "c"]
