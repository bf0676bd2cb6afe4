"""Scale-out: tag whole catalogs on a local process pool (default) or on Celery workers.

- :func:`skutag.queue.core.tag_batch` — the pure core every path calls.
- :func:`skutag.queue.runner.run_batch` — ``skutag batch``: stream a catalog, resumable JSONL output.
- :mod:`skutag.queue.celery_app` — the ``tag_product`` task and app (Redis or RabbitMQ broker).
"""

from skutag.queue.config import QueueConfig
from skutag.queue.core import TRANSIENT_ERRORS, RetryPolicy, TransientError, image_hash, tag_batch, tag_chunk

__all__ = ["QueueConfig", "TRANSIENT_ERRORS", "RetryPolicy", "TransientError", "image_hash", "tag_batch", "tag_chunk"]
