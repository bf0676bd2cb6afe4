"""The batch paths with the real pipeline (vision + OCR + title + fusion cold start) on a few photos."""

from __future__ import annotations

import signal
import uuid

import pytest

from conftest import shared_path
from queue_support import (
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

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    rows = grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=3, step=97)
    folder = tmp_path_factory.mktemp("pipeline-batch")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a photo")
    rows.append({"id": "broken-photo", "image": "broken.jpg"})
    return write_catalog(rows, folder / "catalog.jsonl")


def _check(rows):
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == len(by_id) == 4
    assert "corrupt or truncated image" in by_id["broken-photo"]["error"]
    for product_id, row in by_id.items():
        if product_id != "broken-photo":
            assert row["error"] is None and row["path"] and " > " in row["path"]
            assert row["model_version"].startswith("cold-start@") and row["image_hash"]
            assert row["decision"] in {"auto", "review", "manual"} and 0 <= row["confidence"] <= 1


def test_local_batch_with_the_real_pipeline(catalog, tmp_path):
    out = tmp_path / "out.jsonl"
    summary = run_batch(BatchRequest(catalog, out, QueueConfig(workers=1), progress=False))
    assert summary.tagged == 4 and summary.failed == 1
    _check(read_rows(out))


def test_celery_worker_with_the_real_pipeline(catalog, tmp_path):
    broker, backend = require_broker("redis")
    queue = f"skutag-pipeline-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    proc = start_worker(broker, queue, None, "real", log, backend=backend, concurrency=1,
                        env=subprocess_env())
    try:
        wait_until_ready(log, proc, timeout=180)
        out = tmp_path / "out.jsonl"
        config = QueueConfig(broker_url=broker, result_backend=backend, queue_name=queue, result_timeout=240)
        summary = run_batch(BatchRequest(catalog, out, config, progress=False, force=True))
    finally:
        stop_process_group(proc, signal.SIGTERM)
        proc.wait(timeout=30)
        delete_queue(broker, queue)
    assert summary.enqueued == 4 and summary.tagged == 4 and summary.failed == 1
    _check(read_rows(out))
