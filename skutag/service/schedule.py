"""Retraining on a clock (``service.retrain_every_hours``; 0 = off): one background thread, started and stopped
with the app's lifespan, that calls a check every interval. The check (``Retraining.on_schedule``) decides
whether a retraining starts; this module only keeps time.

The check is a plain callable, so tests call it directly; the interval is float hours, so a test can use a
tiny one and see the thread fire; ``now`` (the wall clock shown as the next check's time) can be replaced.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("skutag.service")

STOP_WAIT_S = 10.0  # longest wait for a check in progress when the app stops


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RetrainSchedule:
    """Calls ``check()`` every ``every_hours`` (> 0) from ``start()`` until ``stop()``, in one daemon thread.
    A check that raises is logged and the clock goes on (the next tick tries again)."""

    def __init__(self, check: Callable[[], object], every_hours: float,
                 now: Callable[[], dt.datetime] = utcnow):
        self.check = check
        self.every_s = every_hours * 3600.0
        self.now = now
        self.next_at: dt.datetime | None = None  # when the running clock checks next; None while stopped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.every_s > 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the clock (nothing when the interval is 0 or it already runs); the first check comes one
        interval from now."""
        with self._lock:
            if not self.enabled or self.running:
                return
            self._stop = threading.Event()
            self.next_at = self.now() + dt.timedelta(seconds=self.every_s)
            self._thread = threading.Thread(target=self._loop, args=(self._stop,), name="skutag-retrain-schedule",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the clock and wait for a check in progress (at most ``STOP_WAIT_S``)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self.next_at = None
        if thread is not None:
            thread.join(STOP_WAIT_S)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            self.next_at = self.now() + dt.timedelta(seconds=self.every_s)
            try:
                self.check()
            except Exception:  # a database hiccup must not end the clock: logged, tried again next tick
                log.exception("scheduled retraining check failed")
