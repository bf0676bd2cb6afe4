"""A service's retraining from operators' corrections: the plan (enough verified products to learn from and to
compare on), the run (in a background thread or the caller's), the not-worse check and the promotion.

``Retraining`` works for one ``TaggingService`` (its ``RetrainHost``): it reads the host's settings, store,
served model and retrainer when a retraining starts, and swaps a promoted candidate in through ``host.install``.
It starts one by hand (``start``, ``run_now``), after N verdicts (``after_verdicts``) or on the clock
(``schedule``, which calls ``on_schedule``). How a model is trained and compared is ``skutag.service.retrain``'s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skutag.catalog import Product
from skutag.paths import artifact_dir
from skutag.service.config import ServiceConfig
from skutag.service.retrain import (
    Comparison,
    RetrainRequest,
    Retrainer,
    TaggerFactory,
    compare,
    split_examples,
    to_product,
)
from skutag.service.schedule import RetrainSchedule
from skutag.store.repository import Store
from skutag.store.views import Conflict
from skutag.tagger import Tagger

log = logging.getLogger("skutag.service")


@dataclass
class RetrainJob:
    state: str = "idle"  # idle | running | promoted | rejected | failed
    started_at: str | None = None
    finished_at: str | None = None
    message: str = ""
    candidate_version: str | None = None
    comparison: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RetrainHost(Protocol):
    """What retraining needs of the service it works for (``skutag.service.engine.TaggingService``)."""

    settings: ServiceConfig
    store: Store
    tagger_factory: TaggerFactory
    retrainer: Retrainer | None

    @property
    def tagger(self) -> Tagger: ...

    @property
    def model_dir(self) -> str | None: ...

    def path_aliases(self) -> dict[str, str]: ...

    def install(self, tagger: Tagger, model_dir: str | None) -> None: ...


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Retraining:
    """One retraining at a time (``lock``); ``job``: the latest one's state, for the API and the dashboard."""

    def __init__(self, host: RetrainHost):
        self.host = host
        self.lock = threading.Lock()
        self.job = RetrainJob()
        self.last_started: dt.datetime | None = None  # the last retraining this process started
        # the clock (service.retrain_every_hours); the app's lifespan starts and stops it
        self.schedule = RetrainSchedule(self.on_schedule, host.settings.retrain_every_hours)

    # ---------------------------------------------------------------- cadence
    def cadence(self) -> dict[str, Any]:
        """``service.retrain_after_verdicts``, ``service.retrain_every_hours`` with the clock's next check, and
        the verdicts given since the last retraining (the newest model version, or the last retraining this
        process started, whichever is later)."""
        store, settings = self.host.store, self.host.settings
        since = max([m.created_at for m in store.list_models()] + ([self.last_started] if self.last_started else []),
                    default=None)
        next_at = self.schedule.next_at
        return {"retrain_after_verdicts": settings.retrain_after_verdicts,
                "retrain_every_hours": settings.retrain_every_hours,
                "next_scheduled_check": next_at.isoformat(timespec="seconds") if next_at else None,
                "verdicts_since_last_retraining": store.verdicts_since(since),
                "since": since.isoformat(timespec="seconds") if since else None}

    def after_verdicts(self, who: str = "cadence") -> RetrainJob | None:
        """Start a retraining when ``service.retrain_after_verdicts`` (> 0) new verdicts came in since the last
        one; a plan that cannot run yet (too few verified products) waits for as many verdicts again."""
        every = self.host.settings.retrain_after_verdicts
        if every <= 0 or self.lock.locked():
            return None
        new = self.cadence()["verdicts_since_last_retraining"]
        if new < every:
            return None
        return self._start_counted(f"{who}: {new} new verdicts")

    def on_schedule(self, who: str = "schedule") -> RetrainJob | None:
        """The clock's check (``service.retrain_every_hours``): start a retraining when at least one verdict came
        in since the last one and none is running; the same not-worse check decides the promotion. A plan that
        cannot run yet (too few verified products) waits for a new verdict and the next tick."""
        if self.lock.locked():
            return None
        new = self.cadence()["verdicts_since_last_retraining"]
        if new < 1:
            return None
        return self._start_counted(f"{who}: {new} new verdicts")

    def _start_counted(self, why: str) -> RetrainJob | None:
        """Start a retraining in the background; the verdicts counted so far are spent either way (a refused
        plan is not retried before new ones come in)."""
        self.last_started = dt.datetime.now(dt.timezone.utc)
        try:
            return self.start(why)
        except Conflict as exc:
            log.info("no retraining (%s): %s", why, exc)
            return None

    def start(self, who: str) -> RetrainJob:
        """Check there is enough to learn from, then retrain in a background thread.
        Conflict when one is already running or there are too few verified products."""
        plan = self._plan()
        if not self.lock.acquire(blocking=False):
            raise Conflict("a retraining is already running")
        self.job = RetrainJob(state="running", started_at=_now(), message=f"started by {who}")
        thread = threading.Thread(target=self._run, args=(plan,), name="skutag-retrain", daemon=True)
        thread.start()
        return self.job

    def run_now(self, who: str = "system") -> RetrainJob:
        """Retrain in the calling thread and return the finished job."""
        plan = self._plan()
        if not self.lock.acquire(blocking=False):
            raise Conflict("a retraining is already running")
        self.job = RetrainJob(state="running", started_at=_now(), message=f"started by {who}")
        self._run(plan)
        return self.job

    def _plan(self):
        host, settings = self.host, self.host.settings
        if host.retrainer is None:
            raise Conflict("this service has no retrainer configured")
        train, verified_holdout = split_examples(host.store.training_examples(), settings.holdout_fraction)
        holdout = [to_product(e) for e in verified_holdout] + self.holdout_catalog()
        if len(train) < settings.min_corrections_to_retrain:
            raise Conflict(f"{len(train)} verified products to train on; need at least "
                           f"{settings.min_corrections_to_retrain} (accept or correct more in the review queue)")
        if len(holdout) < settings.min_holdout:
            raise Conflict(f"{len(holdout)} verified products held out; need at least {settings.min_holdout} "
                           f"to compare models")
        return train, holdout

    def holdout_catalog(self) -> list[Product]:
        """The labelled products of ``service.holdout_catalog`` (a fixed yardstick for every retraining)."""
        settings = self.host.settings
        if not settings.holdout_catalog:
            return []
        from skutag.catalog_io import CatalogError, read_catalog

        try:
            catalog = read_catalog(settings.holdout_catalog, require_category=True)
        except (CatalogError, OSError) as exc:
            raise Conflict(f"service.holdout_catalog: {exc}") from None
        return list(catalog.products)

    def _run(self, plan) -> None:
        try:
            self.job = self._retrain(self.job, *plan)
        except Exception as exc:  # reported on the dashboard; the served model is untouched
            log.exception("retraining failed")
            self.job = dataclasses.replace(self.job, state="failed", finished_at=_now(),
                                           message=f"{type(exc).__name__}: {exc}")
        finally:
            self.lock.release()

    def _retrain(self, job: RetrainJob, train, holdout) -> RetrainJob:
        host, store = self.host, self.host.store
        base = host.tagger
        base_dir = host.model_dir
        out_root = Path(host.settings.bundles_dir) if host.settings.bundles_dir else artifact_dir("bundles") / "service"
        out_dir = out_root / f"retrain-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        out_root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        renames = host.path_aliases()
        candidate_dir = str(host.retrainer(RetrainRequest(base_dir, base.model_version,
                                                          [to_product(e) for e in train], out_dir, renames)))
        train_seconds = time.perf_counter() - started
        candidate = host.tagger_factory(candidate_dir)
        if candidate.model_version == base.model_version:
            raise Conflict(f"the retrained model reports the same version {candidate.model_version!r} as the "
                           f"served one")
        comparison: Comparison = compare(base, candidate, holdout, renames)
        metrics = {**comparison.to_json(), "train_n": len(train), "train_seconds": round(train_seconds, 2)}
        promote = comparison.not_worse
        store.register_model(candidate.model_version, candidate_dir, status="candidate",
                             parent_version=base.model_version, metrics=metrics, n_corrections=len(train))
        store.mark_trained([e.correction_id for e in train], candidate.model_version)
        if promote:
            store.promote(candidate.model_version)
            host.install(candidate, candidate_dir)
            message = (f"promoted {candidate.model_version}: held-out accuracy {comparison.candidate_accuracy:.3f} "
                       f">= {comparison.current_accuracy:.3f} (n={comparison.n})")
        else:
            store.set_model_status(candidate.model_version, "rejected")
            message = (f"kept {base.model_version}: candidate held-out accuracy "
                       f"{_fmt(comparison.candidate_accuracy)} < {_fmt(comparison.current_accuracy)} (n={comparison.n})")
        return dataclasses.replace(job, state="promoted" if promote else "rejected", finished_at=_now(),
                                   message=message, candidate_version=candidate.model_version, comparison=metrics)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
