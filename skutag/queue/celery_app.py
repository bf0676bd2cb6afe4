"""Celery: the ``tag_product`` task and the app that carries it over Redis or RabbitMQ.

Delivery guarantees (why each setting is here):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only after it
  finished; a worker killed mid-task (SIGKILL, OOM) leaves it unacknowledged and the broker
  redelivers it to another worker (RabbitMQ: at once, when the connection drops; Redis: after
  ``visibility_timeout``, swept every ``restore_interval`` seconds).
- ``worker_prefetch_multiplier = 1``: a worker holds one task per process, so a killed worker
  takes as few tasks down with it as possible and work spreads evenly.
- Idempotency on product id + image hash: the task id is derived from (tagger namespace, product
  id, image hash). A redelivered or re-sent task first looks for its own finished result in the
  result backend and returns it without tagging again; the client writes each product once. On Redis a
  stored SUCCESS is final: two copies of one task running at once (a retry delivered twice) cannot turn it
  back into RETRY (:mod:`skutag.queue.result_backend`).
- Transient errors (:data:`skutag.queue.core.TRANSIENT_ERRORS`) are retried with exponential
  backoff and jitter; other errors become a failed row with the error, never a lost product.
- A product that kills its worker process every time (a "poison" photo) would be requeued for
  ever (``task_reject_on_worker_lost``); redeliveries are counted in the result backend and after
  ``max_redeliveries`` the product is answered with a failed row instead.
- The tagger (models) is loaded once per worker process, in ``worker_process_init``.

``celery -A skutag.queue.celery_app worker`` works too: the module-level ``app`` is built from
the config (``SKUTAG_QUEUE__BROKER_URL`` ...) on first access.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import uuid
from contextlib import contextmanager
from typing import Any

from celery import Celery, signals
from celery.backends.base import BaseKeyValueStoreBackend

from skutag.fusion.result import TagResult
from skutag.queue.config import QueueConfig
from skutag.queue.core import (
    TRANSIENT_ERRORS,
    RetryPolicy,
    image_hash,
    product_from_message,
    result_row,
    tag_batch,
)
from skutag.queue.result_backend import REDIS_SCHEMES, guarded_backend_url
from skutag.queue.tagger_factory import TaggerSpec

log = logging.getLogger(__name__)

TASK_NAME = "skutag.tag_product"
SPEC_CONF_KEY = "skutag_tagger_spec"
MAX_REDELIVERIES_CONF_KEY = "skutag_max_redeliveries"
STORE_CONF_KEY = "skutag_store_url"
DEFAULT_REDIS_BACKEND = "redis://127.0.0.1:6379/0"
_TASK_ID_NAMESPACE = uuid.UUID("5b0c7a1e-4a57-4d3c-9a53-7f0c2b9d6e11")


class BrokerUrlError(ValueError):
    """A broker or backend URL this package cannot use."""


def broker_kind(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in {"amqp", "amqps", "pyamqp"}:
        return "amqp"
    raise BrokerUrlError(f"broker URL must start with redis:// or amqp://, got {url!r}")


def backend_for(broker_url: str, backend_url: str | None) -> str:
    """The result backend: as configured, else the broker itself when it is Redis, else local Redis."""
    if backend_url:
        return backend_url
    return broker_url if broker_kind(broker_url) == "redis" else DEFAULT_REDIS_BACKEND


def task_id_for(namespace: str, product_id: str, digest: str | None) -> str:
    """Deterministic task id: the same product + photo under the same tagger is the same task."""
    return str(uuid.uuid5(_TASK_ID_NAMESPACE, f"{namespace}\x00{product_id}\x00{digest or '-'}"))


def make_app(config: QueueConfig, broker_url: str | None = None, backend_url: str | None = None,
             spec: TaggerSpec | None = None, store_url: str | None = None) -> Celery:
    """A Celery app for ``config`` with the ``tag_product`` task registered.

    ``store_url`` (workers only): each worker also saves every result in that product database, so
    ``skutag batch --no-wait`` lands results in the database without a client waiting.
    """
    broker = broker_url or config.broker_url
    if not broker:
        raise BrokerUrlError("no broker URL: pass --broker redis://... or amqp://... (or set queue.broker_url)")
    kind = broker_kind(broker)
    backend = guarded_backend_url(backend_for(broker, backend_url or config.result_backend))
    app = Celery("skutag", broker=broker, backend=backend, set_as_current=False)
    transport_options: dict[str, Any] = {}
    if kind == "redis":
        transport_options = {
            "visibility_timeout": config.visibility_timeout,
            "unacked_restore_interval": config.restore_interval,
            "unacked_restore_throttle": 1,
        }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=config.queue_name,
        task_create_missing_queues=True,
        result_expires=config.result_expires,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_send_sent_event=False,
        worker_send_task_events=False,
    )
    app.conf[SPEC_CONF_KEY] = dataclasses.asdict(spec or TaggerSpec(config.tagger_factory, config.model_dir))
    app.conf[MAX_REDELIVERIES_CONF_KEY] = config.max_redeliveries
    app.conf[STORE_CONF_KEY] = store_url
    _register_tasks(app, RetryPolicy(config.max_retries, config.retry_backoff, config.retry_backoff_max))
    global _APP
    _APP = app  # the app whose worker processes load the tagger (worker_process_init)
    return app


# --- the worker side ------------------------------------------------------------------

_APP: Celery | None = None
_STORE = None
_TAGGER = None
_TAGGER_LOCK = threading.Lock()


def _worker_tagger(app: Celery):
    """This process's tagger, loaded on first use (prefork children load it in worker_process_init)."""
    global _TAGGER
    if _TAGGER is None:
        with _TAGGER_LOCK:
            if _TAGGER is None:
                spec = TaggerSpec(**app.conf[SPEC_CONF_KEY])
                log.info("loading tagger %s in process %d", spec.factory, os.getpid())
                _TAGGER = spec.load()
    return _TAGGER


def _worker_store(app: Celery):
    """This process's ``StoreSink`` on the worker's product database, or None without ``--db``."""
    global _STORE
    url = app.conf.get(STORE_CONF_KEY)
    if not url:
        return None
    if _STORE is None:
        from skutag.queue.store_sink import StoreSink

        _STORE = StoreSink(url, config_file=(app.conf.get(SPEC_CONF_KEY) or {}).get("config_file"))
    return _STORE


@contextmanager
def _database_errors_are_transient():
    """A locked or unreachable product database: retry the task with backoff."""
    from sqlalchemy.exc import OperationalError

    from skutag.queue.core import TransientError

    try:
        yield
    except OperationalError as exc:
        raise TransientError(f"product database: {exc}") from exc


def _follow_store(app: Celery, tagger) -> None:
    """Read brands with the lexicon edited in the worker's product database (re-read with its rules)."""
    with _database_errors_are_transient():
        store = _worker_store(app)
        if store is not None:
            store.follow_lexicon(tagger)


def _save_in_store(app: Celery, product, result: TagResult) -> None:
    """Save the result in the worker's product database (when it has one) under that database's service rules
    (the task itself returns the model's answer: the backend may hand it to later runs, whose rules may have
    changed; a client with ``--db`` applies them when it writes)."""
    with _database_errors_are_transient():
        store = _worker_store(app)
        if store is not None:
            store.save(product, store.apply_rules(result))


@signals.worker_process_init.connect
def _load_models_in_process(**_: Any) -> None:
    if _APP is not None:
        _worker_tagger(_APP)


def _finished_result(task, task_id: str) -> dict | None:
    """The stored result of an earlier run of this very task (redelivery, re-send), if any."""
    backend = task.backend
    if not isinstance(backend, BaseKeyValueStoreBackend):
        return None
    meta = backend.get_task_meta(task_id, cache=False)
    if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
        return meta["result"]
    return None


def _redeliveries(task) -> int | None:
    """How often this task's message came back after a worker died (Redis result backend only)."""
    client = getattr(task.backend, "client", None)
    if client is None or not hasattr(client, "incr"):
        return None
    key = f"skutag-redeliveries-{task.request.id}"
    count = int(client.incr(key))
    client.expire(key, int(task.app.conf.result_expires or 86400))
    return count


def _register_tasks(app: Celery, policy: RetryPolicy) -> None:
    @app.task(
        name=TASK_NAME,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        autoretry_for=TRANSIENT_ERRORS,
        max_retries=policy.max_retries,
        retry_backoff=policy.backoff,
        retry_backoff_max=policy.backoff_max,
        retry_jitter=True,
        resultrepr_maxsize=160,  # keep the worker log to one short line per task
    )
    def tag_product(self, message: dict) -> dict:
        """Tag one product; returns ``{"row": <result row>, "worker", "pid", "redelivered", "cached"}``."""
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        previous = _finished_result(self, self.request.id) if self.request.id else None
        if previous is not None:
            return {**previous, "cached": True, "redelivered": redelivered}
        product = product_from_message(message)
        count = _redeliveries(self) if redelivered else None
        limit = self.app.conf.get(MAX_REDELIVERIES_CONF_KEY, 3)
        if count is not None and count > limit:
            error = f"the worker process died {count} times while tagging this product; not requeued again"
            log.error("product %s: %s", product.id, error)
            return {"row": result_row(TagResult.failed(product.id, error), image_hash(product.image)),
                    "worker": self.request.hostname, "pid": os.getpid(), "redelivered": True,
                    "retries": self.request.retries, "cached": False}
        tagger = _worker_tagger(self.app)
        _follow_store(self.app, tagger)
        results = tag_batch([product], tagger)
        _save_in_store(self.app, product, results[0])
        return {
            "row": result_row(results[0], image_hash(product.image)),
            "worker": self.request.hostname,
            "pid": os.getpid(),
            "redelivered": redelivered,
            "retries": self.request.retries,
            "cached": False,
        }


# --- `celery -A skutag.queue.celery_app worker` ---------------------------------------

def __getattr__(name: str) -> Any:
    if name == "app":
        from skutag.config import SkutagConfig

        app = make_app(SkutagConfig.load().queue)
        globals()["app"] = app
        return app
    raise AttributeError(name)
