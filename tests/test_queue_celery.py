"""`skutag batch --broker` against real Redis and RabbitMQ brokers and real `skutag worker`s."""

from __future__ import annotations

import shutil
import signal
import uuid
from pathlib import Path

import pytest

from conftest import shared_path
from queue_support import (
    cached_title_model,
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
from skutag.queue.config import QueueConfig
from skutag.queue.runner import BatchRequest, run_batch

TAGGER = "queue_support:load_title_tagger"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return cached_title_model(shared_path("grocery", "manifest.csv"))


@pytest.fixture(scope="module")
def val_rows() -> list[dict]:
    return grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=24, step=12)


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def worker(request, model_dir, tmp_path_factory):
    """One real worker (2 processes) per broker, on a queue of its own."""
    broker, backend = require_broker(request.param)
    queue = f"skutag-test-{uuid.uuid4().hex[:10]}"
    folder = tmp_path_factory.mktemp(f"worker-{request.param}")
    env = subprocess_env(SKUTAG_TEST_FLAKY_DIR=str(folder), SKUTAG_QUEUE__RETRY_BACKOFF="0.2", SKUTAG_TEST_CRASH="1",
                         SKUTAG_QUEUE__MAX_REDELIVERIES="1")
    log = folder / "worker.log"
    proc = start_worker(broker, queue, model_dir, f"w-{request.param}", log, backend=backend, concurrency=2, env=env)
    try:
        wait_until_ready(log, proc)
        yield {"broker": broker, "backend": backend, "queue": queue, "log": log, "name": request.param}
    finally:
        stop_process_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except Exception:
            stop_process_group(proc, signal.SIGKILL)
        delete_queue(broker, queue)


def _client_config(worker, model_dir: Path, tmp_path: Path) -> QueueConfig:
    # a model folder of the test's own: task ids (idempotency keys) never collide between tests
    own = tmp_path / "model"
    shutil.copytree(model_dir, own)
    return QueueConfig(broker_url=worker["broker"], result_backend=worker["backend"], queue_name=worker["queue"],
                       tagger_factory=TAGGER, model_dir=str(own), result_timeout=120)


def test_broker_path_writes_what_the_local_path_writes(tmp_path, worker, model_dir, val_rows):
    rows = [dict(r) for r in val_rows]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows.append({"id": "broken-photo", "image": str(broken), "title": "Arla Mellanmjölk"})
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    config = _client_config(worker, model_dir, tmp_path)

    remote = run_batch(BatchRequest(catalog, tmp_path / "remote.jsonl", config, progress=False))
    local = run_batch(BatchRequest(catalog, tmp_path / "local.jsonl", QueueConfig(
        tagger_factory=TAGGER, model_dir=str(model_dir), workers=1), progress=False))

    assert remote.mode == "celery" and remote.enqueued == len(rows) and remote.tagged == len(rows)
    assert remote.workers and all(name.startswith(f"w-{worker['name']}@") for name in remote.workers)
    remote_rows = {r["id"]: r for r in read_rows(tmp_path / "remote.jsonl")}
    local_rows = {r["id"]: r for r in read_rows(tmp_path / "local.jsonl")}
    assert remote_rows.keys() == local_rows.keys() and len(remote_rows) == len(rows)
    for product_id, row in local_rows.items():
        other = remote_rows[product_id]
        fields = ("path", "image_hash", "decision")
        assert [other[f] for f in fields] == [row[f] for f in fields]
        assert other["confidence"] == pytest.approx(row["confidence"])
    assert "ImageDecodeError" in remote_rows["broken-photo"]["error"]
    assert local.failed == remote.failed == 1

    # same products, same photos: a rerun only collects the stored results; nothing is tagged again
    again = run_batch(BatchRequest(catalog, tmp_path / "again.jsonl", config, progress=False))
    assert again.enqueued == 0 and again.already_done_in_backend == len(rows)
    # the same rows; the first run wrote them as its two worker processes finished them, so in another order
    by_id = lambda rows: sorted(rows, key=lambda r: r["id"])  # noqa: E731
    assert by_id(read_rows(tmp_path / "again.jsonl")) == by_id(read_rows(tmp_path / "remote.jsonl"))


def test_transient_errors_are_retried_by_the_worker(tmp_path, worker, model_dir, val_rows):
    rows = [dict(r) for r in val_rows[:6]]
    rows[1]["title"] += " FLAKY"  # ConnectionError on its first two tries
    rows[1]["id"] = f"flaky-{uuid.uuid4().hex[:6]}"
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    summary = run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", _client_config(worker, model_dir, tmp_path),
                                     progress=False))
    result = {r["id"]: r for r in read_rows(tmp_path / "out.jsonl")}
    assert len(result) == 6 and summary.failed == 0 and summary.retried == 1
    assert result[rows[1]["id"]]["path"] == rows[1]["category"]
    assert "Retry in" in worker["log"].read_text()  # Celery logged the backoff


def test_no_wait_enqueues_and_a_rerun_collects_each_product_once(tmp_path, worker, model_dir, val_rows):
    catalog = write_catalog(val_rows, tmp_path / "catalog.jsonl")
    config = _client_config(worker, model_dir, tmp_path)
    sent = run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", config, wait=False, progress=False))
    assert sent.enqueued == len(val_rows) and sent.tagged == 0
    assert not (tmp_path / "out.jsonl").exists() or read_rows(tmp_path / "out.jsonl") == []
    collected = run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", config, progress=False))
    # whatever was still queued was sent again; the worker answered those from the stored result
    assert collected.already_done_in_backend + collected.enqueued == len(val_rows)
    rows = read_rows(tmp_path / "out.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in val_rows)
    assert all(r["error"] is None for r in rows)


def test_a_photo_that_kills_its_worker_process_is_failed_not_requeued_forever(tmp_path, worker, model_dir, val_rows):
    rows = [dict(r) for r in val_rows[:4]]
    rows[2]["title"] += " CRASH"  # the worker process running it dies (os._exit) every time
    rows[2]["id"] = f"poison-{uuid.uuid4().hex[:6]}"
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    summary = run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", _client_config(worker, model_dir, tmp_path),
                                     progress=False))
    result = {r["id"]: r for r in read_rows(tmp_path / "out.jsonl")}
    assert len(result) == 4 and summary.failed == 1
    assert "died 2 times" in result[rows[2]["id"]]["error"]  # 1 delivery + 1 redelivery (the limit here)
    assert all(result[r["id"]]["error"] is None for i, r in enumerate(rows) if i != 2)
