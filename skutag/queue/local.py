"""The embedded default: tag a stream of products on a local process pool.

Each process loads the tagger once (pool initializer) with its share of the cores
(processes x threads <= cores) and tags chunks of ``chunk_size`` products per call, so the
vision model sees batches of images. At most two chunks per process are in flight, so a
catalog of millions of rows streams through in constant memory. A process that dies (killed,
out of memory) breaks the pool: a fresh pool is started and the chunks it held are tagged again;
a chunk that keeps killing processes is split and, product by product, failed with the reason.
With one process everything runs in this process (no pickling, no start-up cost).

Pool processes exit when the batch process dies, even by SIGKILL or the OOM killer (which run no
clean-up): on Linux the kernel sends them SIGKILL (``PR_SET_PDEATHSIG``); elsewhere a watchdog
thread sees their parent change within a second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from skutag.fusion.result import TagResult
from skutag.catalog import Product
from skutag.queue.core import RetryPolicy, image_hash, tag_chunk
from skutag.queue.tagger_factory import TaggerLoadError, TaggerSpec

if TYPE_CHECKING:  # the pipeline module imports every stage; workers load it through the factory
    from skutag.tagger import Tagger

log = logging.getLogger(__name__)

ResultCallback = Callable[[list[tuple[TagResult, str | None]]], None]

# --- inside a pool process ------------------------------------------------------------
_TAGGER: Tagger | None = None
_LOAD_ERROR: str | None = None
_POLICY = RetryPolicy()


PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_CHECK_SECONDS = 1.0


def _init_process(spec: TaggerSpec, policy: RetryPolicy, parent_pid: int | None = None) -> None:
    global _TAGGER, _LOAD_ERROR, _POLICY
    _exit_with_parent(parent_pid or os.getppid())
    _POLICY = policy
    try:
        _TAGGER = spec.load()
    except Exception as exc:  # reported with the first chunk, as a clear error, not a broken pool
        _LOAD_ERROR = f"{type(exc).__name__}: {exc}"


def _exit_with_parent(parent_pid: int) -> None:
    """End this pool process when ``parent_pid`` (the batch process) is gone, however it died."""
    if not _kill_me_when_parent_dies():
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="skutag-parent-watchdog", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the kernel was told
        os._exit(1)


def _kill_me_when_parent_dies() -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


def _run_chunk(products: Sequence[Product]) -> list[tuple[TagResult, str | None]]:
    if _TAGGER is None:
        raise TaggerLoadError(f"the tagger did not load in a pool process: {_LOAD_ERROR}")
    return tag_chunk(products, _TAGGER, _POLICY)


# --- the driver -----------------------------------------------------------------------

@dataclass
class _Chunk:
    products: list[Product]
    crashes: int = 0


def chunked(items: Iterable[Product], size: int) -> Iterator[list[Product]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, max(1, size))):
        yield chunk


def run_local(
    products: Iterable[Product],
    on_results: ResultCallback,
    spec: TaggerSpec,
    processes: int,
    chunk_size: int = 16,
    policy: RetryPolicy = RetryPolicy(),
    start_method: str = "spawn",
    pool_restarts: int = 2,
) -> None:
    """Tag ``products`` on ``processes`` processes; ``on_results`` gets each finished chunk."""
    chunks = chunked(products, chunk_size)
    if processes <= 1:
        tagger = spec.load()
        for chunk in chunks:
            on_results(tag_chunk(chunk, tagger, policy))
        return
    _PoolDriver(spec, processes, policy, start_method, pool_restarts, on_results).run(chunks)


class _PoolDriver:
    """Keeps ``processes x 2`` chunks in flight; survives processes that die.

    When a process dies the pool breaks and every chunk in flight is a suspect: each is tried
    again (``pool_restarts`` times). A chunk that keeps breaking pools is split into single
    products that then run *alone* (nothing else in flight), so a product is only failed when
    it certainly killed its process.
    """

    def __init__(self, spec, processes, policy, start_method, pool_restarts, on_results):
        self.spec = spec
        self.processes = processes
        self.policy = policy
        self.context = multiprocessing.get_context(start_method)
        self.pool_restarts = pool_restarts
        self.on_results = on_results
        self.retry: list[_Chunk] = []
        self.quarantine: list[_Chunk] = []
        self.pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # a pool process's parent is this process; under a fork server it is the server (which exits with us)
        parent = None if self.context.get_start_method() == "forkserver" else os.getpid()
        return ProcessPoolExecutor(
            self.processes, mp_context=self.context, initializer=_init_process,
            initargs=(self.spec, self.policy, parent),
        )

    def run(self, chunks: Iterator[list[Product]]) -> None:
        self.pool = self._new_pool()
        in_flight: dict[Future, _Chunk] = {}
        alone = False  # the chunk in flight is a quarantined product running by itself
        try:
            while True:
                if self.quarantine:
                    if not in_flight:
                        chunk = self.quarantine.pop()
                        in_flight[self.pool.submit(_run_chunk, chunk.products)] = chunk
                        alone = True
                else:
                    self._fill(in_flight, chunks)
                if not in_flight:
                    return
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                suspects = []
                for future in finished:
                    chunk = in_flight.pop(future)
                    try:
                        self.on_results(future.result())
                    except BrokenProcessPool:
                        suspects.append(chunk)
                if suspects:
                    suspects.extend(in_flight.values())
                    in_flight.clear()
                    self._restart_pool()
                    if alone:
                        self._give_up(suspects[0])
                    else:
                        for chunk in suspects:
                            self._suspect(chunk)
                alone = False if not in_flight else alone
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _fill(self, in_flight: dict[Future, _Chunk], chunks: Iterator[list[Product]]) -> None:
        while len(in_flight) < self.processes * 2:
            chunk = self.retry.pop() if self.retry else next((_Chunk(c) for c in chunks), None)
            if chunk is None:
                return
            in_flight[self.pool.submit(_run_chunk, chunk.products)] = chunk

    def _restart_pool(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        log.warning("a pool process died; starting a fresh pool and tagging its chunks again")
        self.pool = self._new_pool()

    def _suspect(self, chunk: _Chunk) -> None:
        chunk.crashes += 1
        if chunk.crashes <= self.pool_restarts:
            self.retry.append(chunk)
        else:
            self.quarantine.extend(_Chunk([product], chunk.crashes) for product in chunk.products)

    def _give_up(self, chunk: _Chunk) -> None:
        product = chunk.products[0]
        message = f"the worker process died while tagging this product (alone, after {chunk.crashes} pool restarts)"
        self.on_results([(TagResult.failed(product.id, message), image_hash(product.image))])
