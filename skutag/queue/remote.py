"""The client side of ``skutag batch --broker``: enqueue ``tag_product`` tasks, collect results.

Products already finished under the same task id (same tagger, product id and photo) are
taken from the result backend without being sent again, so a rerun after ``--no-wait`` (or
after a crash of this client) only collects. Results are handed over as they arrive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from celery import Celery
from celery.backends.base import BaseKeyValueStoreBackend
from celery.result import AsyncResult, ResultSet

from skutag.fusion.result import TagResult
from skutag.catalog import Product
from skutag.queue.celery_app import TASK_NAME, task_id_for
from skutag.queue.core import image_hash, product_to_message, result_from_row

ResultHandler = Callable[[TagResult, "str | None", dict], None]
POLL_SLICE = 2000  # task ids asked per MGET


@dataclass(frozen=True)
class Pending:
    task_id: str
    product_id: str
    digest: str | None


@dataclass
class RemoteStats:
    sent: int = 0
    already_done: int = 0
    redelivered: int = 0
    served_from_cache: int = 0
    retried: int = 0
    workers: list[str] = field(default_factory=list)


def enqueue(app: Celery, products: Iterable[Product], namespace: str, queue: str, embed_images: bool,
            max_image_bytes: int, on_ready: ResultHandler, stats: RemoteStats,
            on_bad_product: Callable[[Product, Exception], None]) -> list[Pending]:
    """Send a task per product not finished yet; finished ones go to ``on_ready`` at once."""
    pending: list[Pending] = []
    with app.producer_or_acquire() as producer:
        for batch in _slices(products, 500):
            items = []
            for product in batch:
                digest = image_hash(product.image)
                items.append((product, Pending(task_id_for(namespace, product.id, digest), product.id, digest)))
            done = _finished(app, [item.task_id for _, item in items])
            for product, item in items:
                if item.task_id in done:
                    stats.already_done += 1
                    _deliver(item, done[item.task_id], on_ready, stats)
                    continue
                try:
                    message = product_to_message(product, embed_images, max_image_bytes)
                except (OSError, ValueError) as exc:
                    on_bad_product(product, exc)
                    continue
                app.send_task(TASK_NAME, args=[message], task_id=item.task_id, queue=queue, producer=producer)
                stats.sent += 1
                pending.append(item)
    return pending


def collect(app: Celery, pending: list[Pending], on_ready: ResultHandler, stats: RemoteStats,
            timeout: float | None = None, interval: float = 0.25) -> None:
    """Wait for every pending task and hand each result to ``on_ready`` as it arrives."""
    if isinstance(app.backend, BaseKeyValueStoreBackend):
        _poll_key_value(app, pending, on_ready, stats, timeout, interval)
    else:
        _join_native(app, pending, on_ready, stats, timeout, interval)


def _poll_key_value(app, pending, on_ready, stats, timeout, interval) -> None:
    waiting = {item.task_id: item for item in pending}
    deadline = None if timeout is None else time.monotonic() + timeout
    while waiting:
        got_any = False
        ids = list(waiting)
        for start in range(0, len(ids), POLL_SLICE):
            ready = _finished(app, ids[start:start + POLL_SLICE], include_failures=True)
            for task_id, meta in ready.items():
                _deliver(waiting.pop(task_id), meta, on_ready, stats)
                got_any = True
        if waiting and not got_any:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} products still queued after {timeout:.0f} s")
            time.sleep(interval)


def _join_native(app, pending, on_ready, stats, timeout, interval) -> None:
    by_id = {item.task_id: item for item in pending}
    results = ResultSet([AsyncResult(item.task_id, app=app) for item in pending], app=app)

    def handle(task_id: str, value: Any) -> None:
        status = "FAILURE" if isinstance(value, BaseException) else "SUCCESS"
        _deliver(by_id[task_id], {"status": status, "result": value}, on_ready, stats)

    results.join_native(timeout=timeout, propagate=False, interval=interval, callback=handle)


def _finished(app: Celery, task_ids: list[str], include_failures: bool = False) -> dict[str, dict]:
    """task id -> meta for those of ``task_ids`` that finished (successfully, or at all)."""
    backend = app.backend
    if not task_ids or not isinstance(backend, BaseKeyValueStoreBackend):
        return {}
    values = backend.mget([backend.get_key_for_task(task_id) for task_id in task_ids])
    done = {}
    for task_id, value in zip(task_ids, values):
        if value is None:
            continue
        meta = backend.decode_result(value)
        status = meta.get("status")
        if status == "SUCCESS" or (include_failures and status == "FAILURE"):
            done[task_id] = meta
    return done


def _deliver(item: Pending, meta: dict, on_ready: ResultHandler, stats: RemoteStats) -> None:
    payload = meta.get("result")
    if meta.get("status") == "SUCCESS" and isinstance(payload, dict) and "row" in payload:
        result = result_from_row(payload["row"])
        digest = payload["row"].get("image_hash", item.digest)
        stats.redelivered += bool(payload.get("redelivered"))
        stats.served_from_cache += bool(payload.get("cached"))
        stats.retried += bool(payload.get("retries"))
        worker = payload.get("worker")
        if worker and worker not in stats.workers:
            stats.workers.append(worker)
    else:
        error = payload if isinstance(payload, BaseException) else RuntimeError(str(payload))
        result = TagResult.failed(item.product_id, f"task failed: {type(error).__name__}: {error}")
        digest = item.digest
    on_ready(result, digest, meta)


def _slices(items: Iterable[Product], size: int) -> Iterator[list[Product]]:
    batch: list[Product] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def workers_online(app: Celery, timeout: float = 1.0) -> list[str]:
    """Names of the workers answering a ping (empty when none is running)."""
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception:  # a broker that does not do broadcast: just no answer
        return []
    return sorted(name for reply in replies for name in reply)
