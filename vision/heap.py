"""The process heap's settings: freed memory goes back to the operating system (one home for this policy: the
photo decoder after a large photo, ``skutag train`` (without a vision tail: torch's training steps allocate and
free mid-size tensors, faster kept in the heap) and ``skutag retrain`` from their start).

glibc's malloc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which large
numpy and scipy buffers come from the heap, and a heap only shrinks from its top: the fold fits of a training
run then leave their freed buffers resident, and the peak RSS grows with every fit although live memory does
not; a server that decoded one huge photo would hold that memory for good. Fixing the thresholds keeps large
buffers in their own mappings (unmapped when freed) and trims the heap's top. A no-op outside glibc, where the user set glibc's own ``MALLOC_*_`` or ``GLIBC_TUNABLES`` variables, and with
``SKUTAG_MALLOC_DEFAULTS=1`` (glibc's own behaviour, to compare: ``bench/bench_train_scale.py --malloc-defaults``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
LARGE_BLOCK = 128 * 1024  # glibc's default mmap threshold: blocks from here on get their own mapping


@lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # musl has neither


def return_freed_memory(large_block: int = LARGE_BLOCK) -> bool:
    """Keep blocks of ``large_block`` bytes and more in their own mappings and trim the heap above that much
    free memory. True when the settings were applied."""
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")) or \
            "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False  # the user chose
    if os.environ.get("SKUTAG_MALLOC_DEFAULTS", "").strip() in ("1", "true", "yes"):
        return False
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(large_block))) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, int(large_block)))


def trim() -> bool:
    """Give the heap's free pages back now (after a phase that freed many small objects). True if any went."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
