"""A Celery worker killed with SIGKILL mid-task: its task is redelivered, every product lands exactly once.

Two real `skutag worker`s (prefork, one process each) consume a 200-product batch sent by a real
`skutag batch --broker` process. When worker A is inside a task (its tagger logged "start" with no
"end"), A's whole process group gets SIGKILL. The task was not acknowledged (acks_late), so the
broker hands it to worker B (RabbitMQ: when A's connection drops; Redis: after the visibility
timeout, 6 s here). The output must hold 200 rows, one per product, none failed; only the killed
product ran twice, and the client dropped no duplicate result.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import shared_path
from queue_support import (
    FAST_REDELIVERY_ENV,
    cached_title_model,
    ROOT,
    delete_queue,
    grocery_rows,
    read_rows,
    require_broker,
    start_worker,
    stop_process_group,
    subprocess_env,
    wait_until_ready,
    write_catalog,
)

TAGGER = "queue_support:load_title_tagger"
pytestmark = pytest.mark.slow


def _events(exec_log: Path) -> list[tuple[str, str, str, str]]:
    if not exec_log.exists():
        return []
    return [tuple(line.split()) for line in exec_log.read_text().splitlines() if len(line.split()) == 4]


def _in_flight_on(worker: str, events) -> str | None:
    """A product worker ``worker`` started and has not finished."""
    open_ids: dict[str, int] = {}
    for event, name, _pid, product_id in events:
        if name == worker:
            open_ids[product_id] = open_ids.get(product_id, 0) + (1 if event == "start" else -1)
    return next((pid for pid, count in open_ids.items() if count > 0), None)


@pytest.mark.parametrize("broker_name", ["rabbitmq", "redis"])
def test_sigkill_mid_batch_every_product_tagged_exactly_once(broker_name, tmp_path):
    broker, backend = require_broker(broker_name)
    manifest = shared_path("grocery", "manifest.csv")
    model_dir = tmp_path / "model"  # a folder of its own: fresh task ids (idempotency keys)
    shutil.copytree(cached_title_model(manifest), model_dir)
    rows = grocery_rows(manifest, "val", limit=200)
    assert len(rows) == 200
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    out = tmp_path / "results.jsonl"
    exec_log = tmp_path / "executions.log"
    queue = f"skutag-kill-{uuid.uuid4().hex[:10]}"
    common = {"SKUTAG_TEST_EXEC_LOG": str(exec_log), **FAST_REDELIVERY_ENV}
    # A is slow (0.5 s a product) so that "A is inside a task" still holds the few milliseconds later when
    # the kill lands; B does the bulk of the batch
    delays = {"A": "0.5", "B": "0.04"}

    workers = {}
    for name in ("A", "B"):
        env = subprocess_env(SKUTAG_TEST_WORKER=name, SKUTAG_TEST_DELAY=delays[name], **common)
        workers[name] = start_worker(broker, queue, model_dir, name, tmp_path / f"{name}.log", backend=backend,
                                     concurrency=1, env=env)
    client = None
    try:
        for name, proc in workers.items():
            wait_until_ready(tmp_path / f"{name}.log", proc)
        client = subprocess.Popen(
            [sys.executable, "-m", "skutag", "batch", str(catalog), "--out", str(out), "--broker", broker,
             "--backend", backend, "--queue", queue, "--tagger", TAGGER, "--model", str(model_dir),
             "--timeout", "150", "--json", "--no-progress"],
            cwd=ROOT, env=subprocess_env(**FAST_REDELIVERY_ENV), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        victim = None
        deadline = time.monotonic() + 90
        while victim is None and time.monotonic() < deadline:
            events = _events(exec_log)
            done = sum(event == "end" for event, *_ in events)
            if done >= 40:  # well into the batch
                victim = _in_flight_on("A", events)
            if victim is None:
                time.sleep(0.005)
        assert victim is not None, "worker A never seen mid-task"
        stop_process_group(workers["A"], signal.SIGKILL)
        workers["A"].wait(timeout=10)
        # the log after the kill is the authority: the product A had started and never finished
        after_kill = _events(exec_log)
        victim = _in_flight_on("A", after_kill)
        assert victim is not None, "worker A finished its task before the kill landed"
        killed_at = sum(event == "end" for event, *_ in after_kill)
        stdout, stderr = client.communicate(timeout=180)
        assert client.returncode == 0, stderr
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        for proc in workers.values():
            stop_process_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)
        delete_queue(broker, queue)

    summary = json.loads(stdout)
    results = read_rows(out)
    ids = [r["id"] for r in results]
    # exactly once in the output, every product, none failed
    assert len(results) == 200 and len(set(ids)) == 200 and set(ids) == {r["id"] for r in rows}
    assert all(r["error"] is None for r in results)
    keys = {(r["id"], r["image_hash"]) for r in results}
    assert len(keys) == 200
    # the killed task was redelivered and finished on B
    runs = defaultdict(list)
    for event, name, _pid, product_id in _events(exec_log):
        if event == "start":
            runs[product_id].append(name)
    assert runs[victim][0] == "A" and "B" in runs[victim][1:]
    # the output drops duplicate rows, so "200 distinct rows" alone would not see a product tagged twice:
    # every other product ran exactly once, and the client had nothing to drop
    assert set(runs) == {r["id"] for r in rows}
    twice = {p: v for p, v in runs.items() if p != victim and len(v) != 1}
    assert not twice, f"products run more than once: {twice}"
    assert summary["duplicates_dropped"] == 0
    assert summary["redelivered"] >= 1
    assert summary["workers"] and any(w.startswith("B@") for w in summary["workers"])
    # models were loaded once per worker process, before its first task
    events = _events(exec_log)
    loads = [pid for event, _name, pid, _ in events if event == "load"]
    taggers = {pid for event, _name, pid, _ in events if event == "start"}
    assert len(loads) == len(set(loads)) and taggers <= set(loads)
    victim_row = next(r for r in results if r["id"] == victim)
    victim_photo = next(r["image"] for r in rows if r["id"] == victim)
    assert victim_row["image_hash"] == hashlib.sha256(Path(victim_photo).read_bytes()).hexdigest()
    print(f"{broker_name}: killed A at {killed_at}/200 done, in-flight {victim} redelivered to B; "
          f"summary: tagged={summary['tagged']} redelivered={summary['redelivered']} "
          f"duplicates_dropped={summary['duplicates_dropped']} seconds={summary['seconds']}")
