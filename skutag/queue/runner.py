"""``run_batch``: tag a whole catalog on the local pool or on Celery workers, same output either way.

Both paths stream the catalog, skip ids an earlier run of the same output finished, write a
failed row (with its error) for every malformed or failing product, write each product exactly
once, show a progress bar (rate, ETA) and end with a :class:`BatchSummary`.

Before anything is tagged or written, ``--out`` is checked (never the catalog, a folder or a file
that is not ours) and the database opened. With a database, rows without an id get ids unique to
their catalog (``<catalog stem>:line-N``), and a row the database cannot hold (an id the HTTP API
refuses, a brand too long) is a failed row that is not saved; malformed rows that name no id
(``line:N``) and duplicates are reported in the output only.
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from skutag.fusion.result import TagResult
from skutag.catalog import Product
from skutag.queue.catalog_source import RowError, catalog_id_prefix, count_rows, iter_catalog
from skutag.queue.config import QueueConfig
from skutag.redact import redacted_url
from skutag.queue.core import RetryPolicy, image_hash
from skutag.queue.progress import BatchProgress
from skutag.queue.results import (
    ResultSink,
    ResumeState,
    check_output_path,
    repair_results_file,
    scan_results_file,
)
from skutag.queue.tagger_factory import TaggerSpec, plan_processes


@dataclass(frozen=True)
class BatchRequest:
    catalog: Path
    out: Path | None
    config: QueueConfig = QueueConfig()
    wait: bool = True  # Celery path: wait for and write the results
    retry_failed: bool = False  # tag again the products an earlier run failed
    progress: bool = True
    config_file: str | None = None  # passed to the tagger factory in every process
    store_url: str | None = None  # also save products + predictions in this database (skutag.store)
    force: bool = False  # Celery path: tag again even products with a stored result (fresh task ids)


@dataclass
class BatchSummary:
    catalog: str
    out: str | None
    mode: str  # "local" | "celery"
    rows: int = 0
    skipped: int = 0  # finished by an earlier run of the same output
    tagged: int = 0  # rows written by this run (failed ones included)
    failed: int = 0
    malformed: int = 0
    duplicates_dropped: int = 0
    seconds: float = 0.0
    first_result_seconds: float | None = None  # start-up (processes, models) + the first chunk
    processes: int | None = None
    threads_per_process: int | None = None
    enqueued: int | None = None
    already_done_in_backend: int | None = None
    redelivered: int | None = None
    served_from_cache: int | None = None
    retried: int | None = None  # products whose task was retried after a transient error
    workers: list[str] = field(default_factory=list)

    @property
    def products_per_second(self) -> float:
        return self.tagged / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["products_per_second"] = round(self.products_per_second, 3)
        data["seconds"] = round(self.seconds, 3)
        return {key: value for key, value in data.items() if value is not None}


def tagger_spec(config: QueueConfig, config_file: str | None, threads: int = 0,
                store_url: str | None = None) -> TaggerSpec:
    """What a process needs to load the tagger; with ``store_url``, it reads brands with that database's
    edited lexicon."""
    model_dir = str(Path(config.model_dir).resolve()) if config.model_dir else None
    return TaggerSpec(config.tagger_factory, model_dir, config_file, threads, store_url or None)


def tagger_namespace(spec: TaggerSpec, lexicon_version: int | None = None) -> str:
    """What makes results reusable: the same factory and model (folder and its last change), the same
    edited brand lexicon when the database has one (workers with ``--db`` read brands with it), and the same
    managed tree, label map and lexicon (as this machine has them: workers should share its SKUTAG_HOME tables).

    The folder's change time is the newest of the folder and its direct entries, so a new bundle
    version or a rewritten pointer to the current one gives new task ids (results are not reused).
    """
    stamp = ""
    if spec.model_dir and os.path.isdir(spec.model_dir):
        with os.scandir(spec.model_dir) as entries:
            times = [entry.stat(follow_symlinks=False).st_mtime_ns for entry in entries]
        stamp = str(max([os.stat(spec.model_dir).st_mtime_ns, *times]))
    lexicon = f"|lexicon-{lexicon_version}" if lexicon_version is not None else ""
    return f"{spec.factory}|{spec.model_dir or '-'}|{stamp}{lexicon}|tables-{_managed_tables_digest()}"


def _managed_tables_digest() -> str:
    """The managed tree, label map and lexicon (``skutag taxonomy|labelmap|brands`` edits change answers)."""
    import hashlib
    import json

    from skutag.taxonomy import managed_versions

    try:
        versions = managed_versions()
    except (OSError, ValueError) as exc:  # a damaged managed file: the taggers will say so per product
        versions = {"unreadable": str(exc)}
    return hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:12]


class BrokerUnavailableError(RuntimeError):
    """The Celery broker or result backend cannot be reached."""


def run_batch(request: BatchRequest) -> BatchSummary:
    """Tag every product of ``request.catalog``; see the module doc for the guarantees."""
    config = request.config
    mode = "celery" if config.broker_url else "local"
    summary = BatchSummary(str(request.catalog), str(request.out) if request.out else None, mode)
    summary.rows = count_rows(request.catalog)
    resume = _checked_output(request)  # read only: nothing is written before the database is open too
    store_url = request.store_url or config.store_url
    store = _open_store_sink(store_url, request.config_file)
    try:
        if request.out:
            repair_results_file(request.out, resume, request.retry_failed)
        sink = ResultSink(request.out, store)
    except BaseException:
        if store is not None:
            store.close()
        raise
    finished = resume.finished_ids
    started = time.perf_counter()
    in_flight: dict[str, Product] | None = {} if store is not None else None  # for the store's columns
    total = max(0, summary.rows - len(finished))
    label = "tagging" if mode == "local" else "tagging (celery)"
    try:
        with BatchProgress(total, label, enabled=request.progress) as progress:

            def write(result: TagResult, digest: str | None, save: bool = True) -> None:
                product = in_flight.pop(result.id, None) if in_flight is not None else None
                if sink.add(result, digest, product, save):
                    progress.advance(1, int(bool(result.error)))
                    if summary.first_result_seconds is None:
                        summary.first_result_seconds = round(time.perf_counter() - started, 3)

            # rows without an id get ids unique to their catalog wherever they may be saved in a shared
            # database: by this client (--db) or by Celery workers started with --db
            id_prefix = catalog_id_prefix(request.catalog) if store is not None or mode == "celery" else None
            products = _products(request.catalog, finished, summary, write, in_flight, id_prefix)
            if mode == "local":
                _run_local(request, products, write, summary)
            else:
                lexicon_version = store.rules().lexicon_version if store is not None else None
                _run_celery(request, products, write, summary, progress, lexicon_version)
    finally:
        sink.close()
        summary.seconds = time.perf_counter() - started
        summary.skipped = len(finished)
        summary.tagged = sink.written
        summary.failed = sink.failed
        summary.duplicates_dropped = sink.duplicates
    return summary


def _checked_output(request: BatchRequest) -> ResumeState:
    """What an earlier run of ``--out`` finished; OutputFileError for an --out that must not be written."""
    if not request.out:
        return ResumeState()
    check_output_path(request.out, request.catalog)
    return scan_results_file(request.out, request.retry_failed)


def _open_store_sink(store_url: str | None, config_file: str | None):
    if not store_url:
        return None
    from skutag.queue.store_sink import StoreSink

    return StoreSink(store_url, config_file=config_file)


def _products(catalog: Path, finished: set[str], summary: BatchSummary, write,
              in_flight: dict[str, Product] | None, id_prefix: str | None = None) -> Iterator[Product]:
    """Products still to tag; malformed rows (and, with a database, products it cannot hold) are written as failed
    rows on the way."""
    checking = in_flight is not None
    for item in iter_catalog(catalog, id_prefix):
        if isinstance(item, RowError):
            row_id = item.id or f"line:{item.line}"
            if row_id in finished:
                continue
            summary.malformed += 1
            message = f"malformed catalog row (line {item.line}): {item.message}"
            # a row the field rules refuse is not stored, as the API stores nothing for a 422
            write(TagResult.failed(row_id, message), None,
                  save=checking and item.field is None and _names_a_storable_id(item))
        elif item.id in finished:
            continue
        elif checking and (problem := _unstorable(item)):
            summary.malformed += 1
            write(TagResult.failed(item.id, f"not saved in the product database: {problem}"), None, save=False)
        else:
            if in_flight is not None:
                in_flight[item.id] = item
            yield item


def _names_a_storable_id(row: RowError) -> bool:
    """A malformed row is saved (as a new error product) only when it names an id the database can hold."""
    from skutag.queue.store_sink import storable_id_problem

    return row.id is not None and storable_id_problem(row.id) is None


def _unstorable(product: Product) -> str | None:
    from skutag.queue.store_sink import storable_product_problem

    return storable_product_problem(product)


def _run_local(request: BatchRequest, products: Iterator[Product], write, summary: BatchSummary) -> None:
    from skutag.queue.local import run_local

    config = request.config
    processes, threads = plan_processes(config.workers, config.threads_per_worker)
    summary.processes, summary.threads_per_process = processes, threads

    def on_results(chunk: list[tuple[TagResult, str | None]]) -> None:
        for result, digest in chunk:
            write(result, digest)

    run_local(
        products,
        on_results,
        tagger_spec(config, request.config_file, threads, request.store_url or config.store_url),
        processes,
        chunk_size=config.chunk_size,
        policy=RetryPolicy(config.max_retries, config.retry_backoff, config.retry_backoff_max),
        start_method=config.start_method,
        pool_restarts=config.pool_restarts,
    )


def _run_celery(request: BatchRequest, products: Iterator[Product], write, summary: BatchSummary,
                progress: BatchProgress, lexicon_version: int | None = None) -> None:
    """Enqueue for Celery workers and collect; ``lexicon_version``: the database's edited brand lexicon, part of
    the task ids (results read with another lexicon are not reused)."""
    from skutag.queue.celery_app import make_app
    from skutag.queue.remote import RemoteStats, collect, enqueue, workers_online

    config = request.config
    spec = tagger_spec(config, request.config_file)
    app = make_app(config, spec=spec)
    stats = RemoteStats()

    def on_ready(result: TagResult, digest: str | None, _meta: dict) -> None:
        write(result, digest)

    def on_bad_product(product: Product, exc: Exception) -> None:
        write(TagResult.failed(product.id, f"{type(exc).__name__}: {exc}"), image_hash(product.image))

    try:
        namespace = tagger_namespace(spec, lexicon_version)
        namespace += f"|force-{uuid.uuid4()}" if request.force else ""
        with _broker_errors(config):
            pending = enqueue(app, products, namespace, config.queue_name, config.embed_images,
                              config.max_embedded_image_bytes, on_ready, stats, on_bad_product)
            summary.enqueued = stats.sent
            if request.wait and pending:
                if not workers_online(app):
                    progress.console.print(
                        f"[yellow]no worker answered yet on {_redacted(config.broker_url)}; waiting "
                        f"(start one with: skutag worker --broker URL)[/yellow]"
                    )
                collect(app, pending, on_ready, stats, timeout=config.result_timeout)
    finally:
        summary.already_done_in_backend = stats.already_done
        summary.redelivered = stats.redelivered
        summary.served_from_cache = stats.served_from_cache
        summary.retried = stats.retried
        summary.workers = stats.workers
        app.close()


@contextmanager
def _broker_errors(config: QueueConfig) -> Iterator[None]:
    """The broker or result backend out of reach: BrokerUnavailableError naming both (passwords hidden); the rows
    written so far stay, a rerun goes on from there."""
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        yield
    except (KombuOperationalError, RedisConnectionError, RedisTimeoutError) as exc:
        from skutag.queue.celery_app import backend_for

        backend = backend_for(config.broker_url, config.result_backend)
        raise BrokerUnavailableError(
            f"cannot reach the broker {_redacted(config.broker_url)} or the result backend {_redacted(backend)}: "
            f"{str(exc).rstrip('.')}; rows written so far are kept, rerun the same command to go on"
        ) from exc


def _redacted(url: str | None) -> str:
    return redacted_url(url) if url else ""
