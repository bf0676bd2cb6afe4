"""The ``queue`` config section: how batches run (local pool or Celery workers).

Result backend: Redis by default for both brokers. Results must outlive the client that
sent the tasks (``skutag batch --no-wait`` exits at once; a rerun collects what is done), and
a redelivered task must find the finished result of its first run (idempotency on product id +
image hash). Celery's ``rpc://`` backend delivers results as messages to the one client that
sent the task and keeps nothing, so it can do neither; it is accepted (``--backend rpc://``) for
RabbitMQ-only setups that always wait, with output de-duplication as the only guard.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueConfig:
    # --- local pool -------------------------------------------------------------------
    workers: int = 0  # processes; 0 = as many as cores (each loads the models once)
    threads_per_worker: int = 0  # torch/BLAS/OpenCV threads per process; 0 = cores // workers
    chunk_size: int = 16  # products per tagger call (images batched into the vision model)
    start_method: str = "spawn"  # multiprocessing start method for pool processes
    pool_restarts: int = 2  # a chunk whose worker process dies is retried this often, then failed
    # --- the tagger every path loads --------------------------------------------------
    tagger_factory: str = "skutag.pipeline:load_pipeline"  # "module:function(config=, model_dir=)"
    model_dir: str | None = None
    # --- transient errors (any path) --------------------------------------------------
    max_retries: int = 5
    retry_backoff: float = 1.0  # seconds, doubled per retry (with jitter)
    retry_backoff_max: float = 60.0
    # --- Celery -----------------------------------------------------------------------
    broker_url: str | None = None  # redis://... or amqp://...; None = local pool
    result_backend: str | None = None  # None = the broker URL if Redis, else redis://127.0.0.1:6379/0
    queue_name: str = "skutag"
    worker_concurrency: int = 0  # processes per `skutag worker`; 0 = cores
    worker_pool: str = "prefork"  # prefork | solo | threads
    visibility_timeout: int = 300  # Redis broker: seconds before an unacked task is redelivered
    restore_interval: int = 10  # Redis broker: seconds between sweeps for unacked tasks
    max_redeliveries: int = 3  # a product whose worker process died this often is failed, not requeued again
    result_expires: int = 7 * 24 * 3600  # seconds results (and idempotency keys) are kept
    result_timeout: float | None = None  # seconds `batch --broker` waits; None = until done
    embed_images: bool = False  # send image bytes in the message (workers without shared storage)
    max_embedded_image_bytes: int = 8 * 1024 * 1024
    # --- sinks ------------------------------------------------------------------------
    store_url: str | None = None  # also write results to the product database (skutag.store)
