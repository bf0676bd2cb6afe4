"""A Rich progress bar for batches: done / total, products per second, elapsed and ETA, failures."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Products per second since the bar started (stable even when results arrive in chunks)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        speed = task.completed / elapsed if elapsed and task.completed else None
        return Text("-- products/s" if speed is None else f"{speed:,.1f} products/s", style="progress.data.speed")


class BatchProgress:
    """Context manager; ``advance(done, failed)`` after each chunk of results."""

    def __init__(self, total: int | None, description: str, enabled: bool = True, console: Console | None = None):
        self.console = console or Console(file=sys.stderr)
        self.enabled = enabled
        self.started = time.perf_counter()
        self.done = 0
        self.failed = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
            speed_estimate_period=60.0,
        )
        self._task = self._progress.add_task(description, total=total, failed=0)

    def __enter__(self) -> "BatchProgress":
        self.started = time.perf_counter()
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, done: int = 1, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        self._progress.update(self._task, advance=done, failed=self.failed)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
