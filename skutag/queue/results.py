"""Where batch results go: a JSONL file (resumable) and, optionally, the product database.

One row per product id, always: rows already in the output are skipped on a rerun, a result
that arrives twice (a task redelivered after a worker died) is written once — de-duplicated
on product id + image hash. A run cut off mid-line leaves a partial last line; it is dropped on
the next run and that product is tagged again.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusion.result import TagResult
from skutag.catalog import Product
from skutag.queue.core import product_key, result_row

if TYPE_CHECKING:
    from skutag.queue.store_sink import StoreSink

log = logging.getLogger(__name__)


@dataclass
class ResumeState:
    """What an earlier run of the same output already finished."""

    done_ids: set[str] = field(default_factory=set)
    failed_ids: set[str] = field(default_factory=set)
    dropped_partial_line: bool = False

    @property
    def finished_ids(self) -> set[str]:
        return self.done_ids | self.failed_ids


def read_resume_state(path: Path, retry_failed: bool = False) -> ResumeState:
    """Read an existing output; with ``retry_failed`` its failed rows are removed (to be tagged again)."""
    state = ResumeState()
    if not path.exists():
        return state
    state.dropped_partial_line = _drop_partial_last_line(path)
    kept: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                product_id = str(row["id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not a skutag result row; use another --out") from None
            if row.get("error"):
                if retry_failed:
                    continue
                state.failed_ids.add(product_id)
            else:
                state.done_ids.add(product_id)
            if retry_failed:
                kept.append(line if line.endswith("\n") else line + "\n")
    if retry_failed:
        _replace_atomically(path, kept)
    return state


def _drop_partial_last_line(path: Path) -> bool:
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return False
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return False
        block = min(size, 1 << 20)
        handle.seek(size - block)
        tail = handle.read(block)
        cut = tail.rfind(b"\n")
        handle.truncate(size - block + cut + 1 if cut >= 0 else 0)
        return True


def _replace_atomically(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ResultSink:
    """Writes each product's result once to the JSONL output (and the store, when given)."""

    def __init__(self, path: Path | None, store: "StoreSink | None" = None, flush_every: int = 64):
        self.path = path
        self.store = store
        self.flush_every = flush_every
        self._handle = path.open("a", encoding="utf-8") if path is not None else None
        self._seen_keys: set[str] = set()
        self._seen_ids: set[str] = set()
        self._unflushed = 0
        self.written = 0
        self.failed = 0
        self.duplicates = 0
        self.rows: list[dict[str, Any]] | None = [] if path is None else None

    def add(self, result: TagResult, digest: str | None, product: Product | None = None) -> bool:
        """Write ``result``; False (and nothing written) when this product's result is already in."""
        key = product_key(result.id, digest)
        if key in self._seen_keys or result.id in self._seen_ids:
            self.duplicates += 1
            return False
        self._seen_keys.add(key)
        self._seen_ids.add(result.id)
        if self.store is not None:  # the database's service rules, in the output and the database alike
            result = self.store.apply_rules(result)
        row = result_row(result, digest)
        if self._handle is not None:
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._unflushed += 1
            if self._unflushed >= self.flush_every:
                self.flush()
        if self.rows is not None:
            self.rows.append(row)
        if self.store is not None:
            self.store.save(product, result)
        self.written += 1
        self.failed += bool(result.error)
        return True

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            self._unflushed = 0

    def close(self) -> None:
        self.flush()
        if self._handle is not None:
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> "ResultSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
