"""``skutag batch CATALOG`` (local pool or Celery) and ``skutag worker --broker URL``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from skutag.cli import UserFacingError
from skutag.commands.flags import load_config


def register(subparsers: argparse._SubParsersAction) -> None:
    batch = subparsers.add_parser(
        "batch",
        help="tag a whole catalog (local process pool, or Celery workers with --broker)",
        description="Tag every product of a JSONL/CSV catalog. Resumable: a rerun with the same --out skips "
        "the ids already in it. Failed and malformed rows are written with their error.",
    )
    batch.add_argument("catalog", type=Path, help="catalog file (.jsonl or .csv)")
    batch.add_argument("--out", type=Path, help="results JSONL (default: ./<catalog name>.results.jsonl)")
    batch.add_argument("--workers", type=int, help="local processes (default: one per core; not with --broker)")
    batch.add_argument("--threads", type=int,
                       help="compute threads per process (default: cores / processes; not with --broker)")
    batch.add_argument("--chunk-size", type=int,
                       help="products per tagger call (images batched together; not with --broker)")
    batch.add_argument("--broker", help="redis://... or amqp://...: enqueue for `skutag worker`s instead")
    batch.add_argument("--backend", help="Celery result backend (default: the Redis broker, or local Redis)")
    batch.add_argument("--queue", help="Celery queue name (default: skutag)")
    batch.add_argument("--no-wait", action="store_true", help="with --broker: enqueue and exit")
    batch.add_argument("--timeout", type=float, help="with --broker: give up waiting after this many seconds")
    batch.add_argument("--force", action="store_true",
                       help="with --broker: tag again even products whose result for the same photo is stored")
    batch.add_argument("--retry-failed", action="store_true", help="tag again the rows an earlier run failed")
    batch.add_argument("--model", help="model bundle folder (default: the bundled cold-start defaults)")
    batch.add_argument("--tagger", help="tagger factory 'module:function' (default: skutag.pipeline:load_pipeline)")
    batch.add_argument("--db", help="also save products and predictions in this database (SQLite path or URL)")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.add_argument("--json", action="store_true", help="print the summary as JSON")
    batch.set_defaults(func=run_batch_command)

    worker = subparsers.add_parser(
        "worker",
        help="run a Celery worker that tags products sent by `skutag batch --broker`",
        description="A Celery worker: each process loads the models once; one task at a time per process.",
    )
    worker.add_argument("--broker", help="redis://... or amqp://... (default: queue.broker_url)")
    worker.add_argument("--backend", help="result backend (default: the Redis broker, or local Redis)")
    worker.add_argument("--queue", help="queue to consume (default: skutag)")
    worker.add_argument("--concurrency", type=int, help="worker processes (default: one per core)")
    worker.add_argument("--threads", type=int, help="compute threads per process (default: cores / processes)")
    worker.add_argument("--pool", choices=("prefork", "solo", "threads"), help="Celery pool (default: prefork)")
    worker.add_argument("--model", help="model bundle folder")
    worker.add_argument("--tagger", help="tagger factory 'module:function'")
    worker.add_argument("--db", help="also save every result in this product database (SQLite path or URL); "
                        "for `batch --no-wait`")
    worker.add_argument("--hostname", help="worker name (default: skutag-<pid>@<host>)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=run_worker_command)


QUEUE_FLAGS = {"queue.broker_url": "broker", "queue.result_backend": "backend", "queue.queue_name": "queue",
               "queue.model_dir": "model", "queue.tagger_factory": "tagger"}


def _queue_config(args: argparse.Namespace, **extra):
    """``extra``: queue fields -> values (``workers=2``)."""
    return load_config(args, QUEUE_FLAGS, **{f"queue__{key}": value for key, value in extra.items()}).queue


def run_batch_command(args: argparse.Namespace) -> int:
    from skutag.queue.catalog_source import CatalogFormatError
    from skutag.queue.celery_app import BrokerUrlError
    from skutag.queue.runner import BatchRequest, BrokerUnavailableError, run_batch
    from skutag.queue.store_sink import StoreUnavailableError
    from skutag.queue.tagger_factory import TaggerLoadError

    if args.no_wait and not args.broker:
        raise UserFacingError("--no-wait needs --broker (the local pool always waits)")
    if args.timeout is not None and not args.broker:
        raise UserFacingError("--timeout needs --broker (it bounds the wait for Celery workers' results)")
    if args.force and not args.broker:
        raise UserFacingError("--force needs --broker (it skips the workers' earlier results); the local pool tags "
                              "again what the --out file does not hold: give another --out, or --retry-failed")
    _refuse_local_pool_options(args)
    for name in ("workers", "chunk_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserFacingError(f"--{name.replace('_', '-')} must be at least 1")
    config = _queue_config(args, workers=args.workers, chunk_size=args.chunk_size, result_timeout=args.timeout,
                           threads_per_worker=args.threads)
    if args.model and not Path(args.model).is_dir():
        raise UserFacingError(f"model folder not found: {args.model}")
    out = args.out or Path.cwd() / f"{args.catalog.stem}.results.jsonl"
    request = BatchRequest(
        catalog=args.catalog,
        out=out,
        config=config,
        wait=not args.no_wait,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        config_file=args.config,
        force=args.force,
        store_url=args.db,
    )
    try:
        summary = run_batch(request)
    except KeyboardInterrupt:
        print(f"skutag: interrupted; what was tagged is in {out} (rerun the same command to go on)", file=sys.stderr)
        return 130
    except (CatalogFormatError, BrokerUrlError, BrokerUnavailableError, StoreUnavailableError, TaggerLoadError,
            TimeoutError) as exc:
        raise UserFacingError(str(exc)) from None
    except ValueError as exc:  # an --out that must not be written, a database URL or config value we cannot use
        raise UserFacingError(str(exc)) from None
    if args.json:
        print(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        _print_summary(summary, request)
    return 0


# local-pool options and what sets the same thing for Celery workers
LOCAL_POOL_OPTIONS = {
    "workers": "`skutag worker --concurrency N`",
    "threads": "`skutag worker --threads N`",
    "chunk_size": "none needed, each Celery task tags one product",
}


def _refuse_local_pool_options(args: argparse.Namespace) -> None:
    """With --broker the client only enqueues and collects, so local-pool options would be silently ignored."""
    if not args.broker:
        return
    given = [name for name in LOCAL_POOL_OPTIONS if getattr(args, name) is not None]
    if given:
        flags = ", ".join(_flag(name) for name in given)
        instead = "; ".join(f"instead of {_flag(name)}: {LOCAL_POOL_OPTIONS[name]}" for name in given)
        raise UserFacingError(f"{flags}: local-pool option(s), ignored with --broker (the workers tag); {instead}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _print_summary(summary, request) -> None:
    lines = [
        f"{summary.tagged} products tagged in {summary.seconds:.1f} s ({summary.products_per_second:.2f}/s), "
        f"{summary.failed} failed ({summary.malformed} malformed rows), {summary.skipped} skipped (already done)",
    ]
    if summary.mode == "local":
        processes, threads = summary.processes, summary.threads_per_process
        lines.append(f"local pool: {processes} process{'es' if processes != 1 else ''} x "
                     f"{threads} thread{'s' if threads != 1 else ''} each")
    else:
        lines.append(
            f"celery: {summary.enqueued} enqueued, {summary.already_done_in_backend} already done, "
            f"{summary.redelivered} redelivered, {summary.duplicates_dropped} duplicates dropped"
        )
        if not request.wait:
            lines.append("not waiting (--no-wait): rerun without --no-wait to collect the results into --out")
    if summary.out and request.wait:
        lines.append(f"results: {summary.out}")
    print("\n".join(lines), file=sys.stderr)


def run_worker_command(args: argparse.Namespace) -> int:
    from skutag.queue.celery_app import BrokerUrlError, make_app
    from skutag.queue.runner import tagger_spec
    from skutag.queue.tagger_factory import plan_processes

    config = _queue_config(args, worker_concurrency=args.concurrency, worker_pool=args.pool,
                           threads_per_worker=args.threads)
    for name in ("concurrency", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserFacingError(f"--{name} must be at least 1")
    if args.model and not Path(args.model).is_dir():
        raise UserFacingError(f"model folder not found: {args.model}")
    pool = config.worker_pool
    processes, threads = plan_processes(config.worker_concurrency, config.threads_per_worker)
    if pool == "solo":
        processes = 1
    try:
        app = make_app(config, spec=tagger_spec(config, args.config, threads, args.db), store_url=args.db)
    except BrokerUrlError as exc:
        raise UserFacingError(str(exc)) from exc
    hostname = args.hostname or f"skutag-{os.getpid()}@%h"
    argv = [
        "worker",
        f"--queues={config.queue_name}",
        f"--pool={pool}",
        f"--concurrency={processes}",
        "--prefetch-multiplier=1",
        f"--loglevel={args.loglevel}",
        f"--hostname={hostname}",
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv=argv)
    return 0
