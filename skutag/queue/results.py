"""Where batch results go: a JSONL file (resumable) and, optionally, the product database.

One row per product id, always: rows already in the output are skipped on a rerun, a result
that arrives twice (a task redelivered after a worker died) is written once — de-duplicated
on product id + image hash. A run cut off mid-line leaves a partial last line; it is dropped on
the next run and that product is tagged again. An ``--out`` that is not a results file of ours (the
catalog itself, a photo, any other file) is refused before anything is written to it.

With a database, each product is saved there first and its line written after: a product the
database refuses (a value it cannot hold) becomes a failed row saying why; a database that is away
stops the batch (:class:`~skutag.queue.store_sink.StoreUnavailableError`) before the product's line
is written, so a rerun tags it again.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skutag.fusion.result import TagResult
from skutag.catalog import Product
from skutag.queue.core import product_key, result_row

if TYPE_CHECKING:
    from skutag.queue.store_sink import StoreSink

log = logging.getLogger(__name__)


# every row :func:`skutag.queue.core.result_row` writes has these keys, and starts with ``{"id": ``
RESULT_ROW_KEYS = frozenset({"id", "decision", "error", "image_hash"})
RESULT_ROW_START = b'{"id": '


class OutputFileError(ValueError):
    """An ``--out`` that must not be written (the catalog, a folder, a file that is not a results file of ours)."""


@dataclass
class ResumeState:
    """What an earlier run of the same output already finished."""

    done_ids: set[str] = field(default_factory=set)
    failed_ids: set[str] = field(default_factory=set)
    dropped_partial_line: bool = False
    complete_bytes: int | None = None  # where a line cut off by a crash starts (None: no such line)

    @property
    def finished_ids(self) -> set[str]:
        return self.done_ids | self.failed_ids


def check_output_path(out: Path, catalog: Path) -> None:
    """Refuse, before anything is written, an ``--out`` that is the catalog, a folder, not a regular file, or in a
    folder that does not exist."""
    if out.is_dir():
        raise OutputFileError(f"--out {out} is a folder; give the path of a results file (.jsonl)")
    if not out.parent.is_dir():
        raise OutputFileError(f"--out {out}: the folder {out.parent} does not exist")
    if not out.exists():
        return
    if not out.is_file():
        raise OutputFileError(f"--out {out} is not a regular file; give the path of a results file (.jsonl)")
    if catalog.exists() and os.path.samefile(out, catalog):
        raise OutputFileError(f"--out {out} is the catalog itself; write the results to another file")


def scan_results_file(path: Path, retry_failed: bool = False) -> ResumeState:
    """What an existing output holds, read only: a file that is not a skutag results file is refused
    (:class:`OutputFileError`, naming it) and left exactly as it is."""
    state = ResumeState()
    if not path.exists():
        return state
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                _check_cut_line(path, number, raw)
                state.complete_bytes = offset
                break
            offset += len(raw)
            row = _result_row(path, number, raw)
            if row is None:
                continue
            failed = bool(row.get("error"))
            (state.failed_ids if failed else state.done_ids).add(row["id"])
    if retry_failed:
        state.failed_ids.clear()
    return state


def repair_results_file(path: Path, state: ResumeState, retry_failed: bool = False) -> None:
    """Make a scanned output ready to append to: drop the line a crash cut off and (``retry_failed``) the failed
    rows, which are tagged again."""
    if state.complete_bytes is not None:
        with path.open("rb+") as handle:
            handle.truncate(state.complete_bytes)
        state.dropped_partial_line = True
        state.complete_bytes = None
    if retry_failed and path.exists():
        _rewrite_without_failed_rows(path)


def read_resume_state(path: Path, retry_failed: bool = False) -> ResumeState:
    """Read an existing output (refused when it is not ours), drop a cut-off last line; with ``retry_failed`` its
    failed rows are removed (to be tagged again)."""
    state = scan_results_file(path, retry_failed)
    repair_results_file(path, state, retry_failed)
    return state


def _result_row(path: Path, number: int, raw: bytes) -> dict[str, Any] | None:
    """The row on a complete line (None for a blank line); OutputFileError when it is not a result row."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_ours(path, number, "is not UTF-8 text") from None
    if not text.strip():
        return None
    try:
        row = json.loads(text)
    except json.JSONDecodeError:
        raise _not_ours(path, number, "is not JSON") from None
    if not isinstance(row, dict) or not RESULT_ROW_KEYS <= row.keys() or not isinstance(row["id"], str):
        raise _not_ours(path, number, "is not a skutag result row")
    return row


def _check_cut_line(path: Path, number: int, raw: bytes) -> None:
    """A last line without its newline: a row cut off mid-write by a crash, or a file that is not ours."""
    start = raw[:len(RESULT_ROW_START)]
    if not RESULT_ROW_START.startswith(start):
        raise _not_ours(path, number, "is not a skutag result row, nor one cut off by a crash")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)  # a character cut in two is fine
    except UnicodeDecodeError:
        raise _not_ours(path, number, "is not UTF-8 text") from None


def _not_ours(path: Path, number: int, what: str) -> OutputFileError:
    return OutputFileError(f"--out {path} is not a skutag results file (line {number} {what}); "
                           f"it was left as it is: use another --out")


def _rewrite_without_failed_rows(path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with path.open("rb") as source, tmp.open("wb") as target:
        for raw in source:
            if raw.strip() and not json.loads(raw).get("error"):
                target.write(raw)
        target.flush()
        os.fsync(target.fileno())
    os.replace(tmp, path)


class ResultSink:
    """Writes each product's result once to the JSONL output (and the store, when given)."""

    def __init__(self, path: Path | None, store: "StoreSink | None" = None, flush_every: int = 64):
        self.path = path
        self.store = store
        self.flush_every = flush_every
        self._handle = _open_for_append(path) if path is not None else None
        self._seen_keys: set[str] = set()
        self._seen_ids: set[str] = set()
        self._unflushed = 0
        self.written = 0
        self.failed = 0
        self.duplicates = 0
        self.rows: list[dict[str, Any]] | None = [] if path is None else None

    def add(self, result: TagResult, digest: str | None, product: Product | None = None, save: bool = True) -> bool:
        """Save ``result`` in the store (unless ``save`` is False: a row that names no product), then write it;
        False (and nothing written) when this product's result is already in."""
        key = product_key(result.id, digest)
        if key in self._seen_keys or result.id in self._seen_ids:
            self.duplicates += 1
            return False
        if self.store is not None:
            result = self._saved(result, product, save)
        self._seen_keys.add(key)
        self._seen_ids.add(result.id)
        self._write(result_row(result, digest))
        self.written += 1
        self.failed += bool(result.error)
        return True

    def _saved(self, result: TagResult, product: Product | None, save: bool) -> TagResult:
        """``result`` under the database's service rules (the output and the database agree), saved there; a
        product the database refuses comes back as a failed result saying why. StoreUnavailableError propagates."""
        from skutag.queue.store_sink import StoreRefusedError, StoreUnavailableError

        try:
            result = self.store.apply_rules(result)
            if save:
                self.store.save(product, result)
        except StoreUnavailableError as exc:
            raise StoreUnavailableError(f"{exc}; the batch stopped before writing product {result.id!r}: the rows "
                                        f"written so far are kept, rerun the same command to go on") from exc
        except StoreRefusedError as exc:
            log.info("product %s not saved in the database: %s", result.id, exc)
            reason = f"not saved in the product database: {exc}"
            if result.error:
                reason = f"{result.error}; {reason}"
            return dataclasses.replace(TagResult.failed(result.id, reason), model_version=result.model_version)
        return result

    def _write(self, row: dict[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._unflushed += 1
            if self._unflushed >= self.flush_every:
                self.flush()
        if self.rows is not None:
            self.rows.append(row)

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


def _open_for_append(path: Path):
    try:
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise OutputFileError(f"cannot write --out {path}: {exc.strerror or exc}") from None
