"""`skutag batch` on the local process pool: every row once, malformed rows, resume, crashes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_path
from queue_support import ROOT, cached_title_model, grocery_rows, read_rows, subprocess_env, write_catalog
from skutag.queue.config import QueueConfig
from skutag.queue.runner import BatchRequest, run_batch

TAGGER = "queue_support:load_title_tagger"


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return cached_title_model(shared_path("grocery", "manifest.csv"))


@pytest.fixture(scope="module")
def val_rows() -> list[dict]:
    return grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=30, step=9)


def _config(model_dir: Path, **kwargs) -> QueueConfig:
    return QueueConfig(tagger_factory=TAGGER, model_dir=str(model_dir), **kwargs)


def test_cli_pool_of_two_tags_every_row_once_and_reports_bad_rows(tmp_path, model_dir, val_rows):
    catalog = tmp_path / "catalog.jsonl"
    write_catalog(val_rows, catalog)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with catalog.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "bad-json", "title": \n')  # line 31
        handle.write(json.dumps({"id": "nothing", "price": 12}) + "\n")  # line 32: neither image nor title
        handle.write(json.dumps({"id": "bad-price", "title": "Arla mjölk", "price": "cheap"}) + "\n")  # 33
        handle.write(json.dumps({"id": val_rows[0]["id"], "title": "again"}) + "\n")  # 34: duplicate id
        handle.write(json.dumps({"id": "broken-photo", "image": "broken.jpg", "title": "Oatly havredryck"}) + "\n")
        handle.write(json.dumps({"id": "title-only", "title": "Tropicana apelsinjuice", "price": "¥12,5"}) + "\n")
        handle.write(json.dumps({"title": val_rows[5]["title"]}) + "\n")  # line 37: no id -> "line-37"
    out = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "skutag", "batch", str(catalog), "--out", str(out), "--workers", "2",
         "--chunk-size", "4", "--tagger", TAGGER, "--model", str(model_dir), "--json"],
        cwd=ROOT, env=subprocess_env(SKUTAG_TEST_EXEC_LOG=str(tmp_path / "exec.log")), capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["processes"] == 2 and summary["processes"] * summary["threads_per_process"] <= 2
    assert "products/s" in proc.stderr and "ETA" in proc.stderr  # the progress bar
    events = [line.split() for line in (tmp_path / "exec.log").read_text().splitlines()]
    loads = [pid for event, _, pid, _ in events if event == "load"]
    assert len(loads) == 2 == len(set(loads))  # each of the 2 processes loaded the model once
    assert {pid for event, _, pid, _ in events if event == "start"} <= set(loads)
    rows = {row["id"]: row for row in read_rows(out)}
    assert len(read_rows(out)) == len(rows) == len(val_rows) + 7
    for row in val_rows:
        assert rows[row["id"]]["error"] is None and rows[row["id"]]["image_hash"]
    accuracy = sum(rows[r["id"]]["path"] == r["category"] for r in val_rows) / len(val_rows)
    assert accuracy > 0.8
    assert "line 31" in rows["line:31"]["error"] and "not valid JSON" in rows["line:31"]["error"]
    assert "line 32" in rows["nothing"]["error"] and "neither an image nor a title" in rows["nothing"]["error"]
    assert "price is not a number" in rows["bad-price"]["error"]
    assert "ImageDecodeError" in rows["broken-photo"]["error"]
    assert rows["title-only"]["error"] is None and rows["title-only"]["path"].startswith("Packages > Juice")
    assert rows["line-37"]["error"] is None and rows["line-37"]["path"] == val_rows[5]["category"]
    assert f"duplicate id {val_rows[0]['id']!r} (first on line 1)" in rows["line:34"]["error"]
    assert summary["malformed"] == 4 and summary["failed"] == 5 and summary["tagged"] == len(rows)


def test_rerun_skips_finished_ids_and_drops_a_cut_off_line(tmp_path, model_dir, val_rows):
    catalog = write_catalog(val_rows, tmp_path / "catalog.jsonl")
    out = tmp_path / "results.jsonl"
    request = BatchRequest(catalog, out, _config(model_dir, workers=1), progress=False)
    first = run_batch(request)
    assert first.tagged == len(val_rows) and first.skipped == 0
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:10]) + lines[10][:25], encoding="utf-8")  # killed mid-write
    second = run_batch(request)
    assert second.skipped == 10 and second.tagged == len(val_rows) - 10
    rows = read_rows(out)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in val_rows)
    third = run_batch(request)
    assert third.tagged == 0 and third.skipped == len(val_rows)


def test_retry_failed_tags_failed_rows_again(tmp_path, model_dir, val_rows, monkeypatch):
    rows = [dict(r) for r in val_rows[:8]]
    rows[2]["title"] += " FLAKY"
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    out = tmp_path / "results.jsonl"
    monkeypatch.setenv("SKUTAG_TEST_FLAKY_DIR", str(tmp_path))
    no_retries = BatchRequest(catalog, out, _config(model_dir, workers=1, max_retries=0), progress=False)
    first = run_batch(no_retries)
    failed = [r for r in read_rows(out) if r["error"]]
    assert first.failed == 1 and failed[0]["id"] == rows[2]["id"] and "ConnectionError" in failed[0]["error"]
    assert run_batch(no_retries).tagged == 0  # a plain rerun keeps the failed row
    retry = BatchRequest(catalog, out, _config(model_dir, workers=1, max_retries=3, retry_backoff=0.01),
                         retry_failed=True, progress=False)
    again = run_batch(retry)
    assert again.tagged == 1 and again.failed == 0
    final = read_rows(out)
    assert len(final) == 8 and all(r["error"] is None for r in final)


def test_a_process_that_dies_is_replaced_and_only_its_product_fails(tmp_path, model_dir, val_rows, monkeypatch):
    rows = [dict(r) for r in val_rows[:10]]
    rows[5]["title"] += " CRASH"
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    out = tmp_path / "results.jsonl"
    monkeypatch.setenv("SKUTAG_TEST_CRASH", "1")
    summary = run_batch(BatchRequest(catalog, out, _config(model_dir, workers=2, chunk_size=3, pool_restarts=0),
                                     progress=False))
    result = {r["id"]: r for r in read_rows(out)}
    assert len(result) == 10 and summary.tagged == 10
    assert "worker process died" in result[rows[5]["id"]]["error"]
    assert all(result[r["id"]]["error"] is None for i, r in enumerate(rows) if i != 5)


def test_cli_errors_are_clear(tmp_path, model_dir, capsys):
    from skutag.cli import main

    def batch(*args) -> tuple[int, str]:
        code = main(["batch", *args, "--no-progress"])
        return code, capsys.readouterr().err

    code, err = batch(str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "catalog not found" in err
    catalog = write_catalog([{"id": "a", "title": "x"}], tmp_path / "c.jsonl")
    assert "--no-wait needs --broker" in batch(str(catalog), "--no-wait")[1]
    code, err = batch(str(catalog), "--out", str(tmp_path / "o.jsonl"), "--tagger", "nowhere_mod:f", "--workers", "1")
    assert code == 2 and "cannot import tagger factory module 'nowhere_mod'" in err
    not_ours = tmp_path / "other.jsonl"
    not_ours.write_text("[1, 2]\n", encoding="utf-8")
    code, err = batch(str(catalog), "--out", str(not_ours), "--tagger", TAGGER, "--model", str(model_dir))
    assert code == 2 and "not a skutag result row" in err
    assert "redis:// or amqp://" in batch(str(catalog), "--broker", "http://x", "--out", str(tmp_path / "b.jsonl"))[1]
    assert "model folder not found" in batch(str(catalog), "--model", str(tmp_path / "none"))[1]
