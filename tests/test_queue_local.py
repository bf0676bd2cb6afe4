"""`skutag batch` on the local process pool: every row once, malformed rows, resume, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
    assert "price: not a number" in rows["bad-price"]["error"]
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


def test_cli_refuses_an_out_it_must_not_write_and_leaves_it_untouched(tmp_path, capsys):
    from skutag.cli import main

    catalog = tmp_path / "same.jsonl"
    catalog.write_bytes(b'{"id": "s1", "title": "Arla"}\n{"id": "s2", "title": "Oatly"}\n'
                        b'{"id": "s3", "title": "Valio"}')  # no newline at the end: what a cut-off row looks like
    photo = tmp_path / "victim.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\n\x01\x02\xff\xd9 no newline at the end")
    before = {path: path.read_bytes() for path in (catalog, photo)}
    for out, message in [
        (catalog, f"--out {catalog} is the catalog itself"),
        (photo, f"--out {photo} is not a skutag results file (line 1 is not UTF-8 text)"),
        (tmp_path, f"--out {tmp_path} is a folder"),
        (tmp_path / "missing" / "o.jsonl",
         f"--out {tmp_path / 'missing' / 'o.jsonl'}: the folder {tmp_path / 'missing'} does not exist"),
    ]:
        code = main(["batch", str(catalog), "--out", str(out), "--workers", "1", "--no-progress",
                     "--tagger", "nowhere_mod:f"])  # refused before any tagger is loaded
        err = capsys.readouterr().err
        assert code == 2 and f"skutag: error: {message}" in err, err
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.jsonl", "victim.jpg"]


def test_cli_reports_a_database_or_broker_it_cannot_reach_as_a_clear_error(tmp_path, capsys):
    from skutag.cli import main

    catalog = write_catalog([{"id": "a", "title": "Arla mjölk"}], tmp_path / "c.jsonl")
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    for extra, message in [
        (["--db", str(tmp_path / "a-file" / "x.db")], f"cannot open the database {tmp_path / 'a-file' / 'x.db'}"),
        (["--db", str(tmp_path)], f"cannot open the database {tmp_path}: unable to open database file"),
        (["--db", "postgresql://shop:s3cret@127.0.0.1:1/x"], "cannot open the database postgresql://shop:***@"),
        (["--broker", "redis://127.0.0.1:1/0"], "cannot reach the broker redis://127.0.0.1:1/0"),
    ]:
        code = main(["batch", str(catalog), "--out", str(out), "--no-progress", "--tagger", "nowhere_mod:f", *extra])
        err = capsys.readouterr().err
        assert code == 2 and f"skutag: error: {message}" in err, err
        assert "s3cret" not in err
    assert not out.exists() or read_rows(out) == []


def test_a_valid_row_keeps_its_result_when_a_malformed_row_repeats_its_id(tmp_path, model_dir, val_rows):
    catalog = write_catalog([val_rows[0], dict(val_rows[0], price="abc"), val_rows[1]], tmp_path / "c.jsonl")
    out = tmp_path / "out.jsonl"
    summary = run_batch(BatchRequest(catalog, out, _config(model_dir, workers=1), progress=False))
    rows = {row["id"]: row for row in read_rows(out)}
    assert set(rows) == {val_rows[0]["id"], "line:2", val_rows[1]["id"]}
    assert rows[val_rows[0]["id"]]["error"] is None and rows[val_rows[0]["id"]]["path"] == val_rows[0]["category"]
    assert f"duplicate id {val_rows[0]['id']!r} (first on line 1)" in rows["line:2"]["error"]
    assert summary.duplicates_dropped == 0 and summary.malformed == 1


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaps has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_processes_exit_when_the_batch_process_is_killed(tmp_path, model_dir, val_rows):
    catalog = write_catalog(val_rows, tmp_path / "catalog.jsonl")
    exec_log = tmp_path / "exec.log"
    batch = subprocess.Popen(
        [sys.executable, "-m", "skutag", "batch", str(catalog), "--out", str(tmp_path / "out.jsonl"), "--workers", "2",
         "--chunk-size", "2", "--tagger", TAGGER, "--model", str(model_dir), "--no-progress"],
        cwd=ROOT, env=subprocess_env(SKUTAG_TEST_EXEC_LOG=str(exec_log), SKUTAG_TEST_DELAY="1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    pool: set[int] = set()
    try:
        def both_tagging() -> bool:
            events = [line.split() for line in exec_log.read_text().splitlines()] if exec_log.exists() else []
            return len({pid for event, _, pid, _ in events if event == "start"}) == 2
        assert _wait_until(both_tagging, 120), "the two pool processes never started tagging"
        pool = {int(pid) for event, _, pid, _ in (line.split() for line in exec_log.read_text().splitlines())
                if event == "load"}
        assert len(pool) == 2 and all(_running(pid) for pid in pool)
        batch.send_signal(signal.SIGKILL)
        batch.wait(timeout=10)
        assert _wait_until(lambda: not any(_running(pid) for pid in pool), 5), "pool processes outlived the batch"
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.wait(timeout=10)
        _kill_if_running(pool)


def _kill_if_running(pids) -> None:
    for pid in pids:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


WATCHED_CHILD = """
import os, sys, time
import skutag.queue.local as local
local._kill_me_when_parent_dies = lambda: False  # as where prctl is not available
local._exit_with_parent(int(sys.argv[1]))
print(os.getpid(), flush=True)
time.sleep(60)
"""

LAUNCHER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_without_prctl_a_watchdog_ends_a_pool_process_whose_parent_died(tmp_path):
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, WATCHED_CHILD], cwd=ROOT, env=subprocess_env(),
                                stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(launcher.stdout.readline())
        assert _running(child)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        assert _wait_until(lambda: not _running(child), 5), "the watchdog did not end the orphaned process"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=10)
        _kill_if_running([child] if child else [])
