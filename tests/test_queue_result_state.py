"""The Celery result backend on real Redis: a product's stored SUCCESS is final.

Two copies of one task can run at once (a retry message delivered twice). The copy that fails reads the
state before the other's SUCCESS lands and writes RETRY after it; the client then waits on RETRY for ever.
Each test replays that interleaving by handing the late writer the stale read it made.
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from queue_support import BROKERS, require_broker
from skutag.queue.celery_app import make_app
from skutag.queue.config import QueueConfig
from skutag.queue.core import TransientError
from skutag.queue.result_backend import FinalSuccessRedisBackend

ROW = {"row": {"id": "sku-1", "label": "Arla Mellanmjölk", "status": "auto"}, "worker": "w1", "cached": False}


@pytest.fixture()
def backend():
    broker, result_backend = require_broker("redis")
    app = make_app(QueueConfig(broker_url=broker, result_backend=result_backend, result_expires=600))
    return app.backend


def _stale_read(backend, monkeypatch) -> None:
    """What the late copy read: no state yet (it read before the other copy's SUCCESS was stored)."""
    monkeypatch.setattr(backend, "_get_task_meta_for", lambda task_id: {"status": "PENDING", "result": None})


def _stored(backend, task_id: str) -> dict:
    return json.loads(backend.client.get(backend.get_key_for_task(task_id)))


@pytest.mark.parametrize("late_state", ["RETRY", "FAILURE"])
def test_a_late_copys_retry_or_failure_never_replaces_a_stored_success(backend, monkeypatch, late_state):
    task_id = str(uuid.uuid4())
    backend.mark_as_done(task_id, ROW)
    _stale_read(backend, monkeypatch)
    if late_state == "RETRY":
        backend.mark_as_retry(task_id, TransientError("try 2"))
    else:
        backend.mark_as_failure(task_id, TransientError("try 2"))
    monkeypatch.undo()

    meta = backend.get_task_meta(task_id, cache=False)
    assert meta["status"] == "SUCCESS"
    assert meta["result"] == ROW


def test_states_before_success_are_written_published_and_expire(backend):
    task_id = str(uuid.uuid4())
    key = backend.get_key_for_task(task_id)
    listener = redis.Redis.from_url(BROKERS["redis"][1]).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(key)
    try:
        backend.mark_as_retry(task_id, TransientError("try 1"))
        assert _stored(backend, task_id)["status"] == "RETRY"
        backend.mark_as_done(task_id, ROW)
        assert _stored(backend, task_id)["status"] == "SUCCESS"
        published = []
        for _ in range(50):
            message = listener.get_message(timeout=0.1)
            if message is not None:
                published.append(json.loads(message["data"])["status"])
            if len(published) == 2:
                break
        assert published == ["RETRY", "SUCCESS"]
        assert 0 < backend.client.ttl(key) <= 600
    finally:
        listener.close()


def test_group_keys_are_written_as_celery_writes_them(backend):
    group_id = str(uuid.uuid4())
    key = backend.get_key_for_group(group_id)
    backend.set(key, json.dumps({"status": "SUCCESS"}))
    backend.set(key, json.dumps({"status": "PENDING"}))
    assert json.loads(backend.client.get(key))["status"] == "PENDING"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_the_apps_backend_is_the_guarded_one_for_either_broker(broker):
    broker_url, result_backend, _ = BROKERS[broker]
    app = make_app(QueueConfig(broker_url=broker_url, result_backend=None))
    assert isinstance(app.backend, FinalSuccessRedisBackend)
    assert isinstance(make_app(QueueConfig(broker_url=broker_url, result_backend=result_backend)).backend,
                      FinalSuccessRedisBackend)
