"""``vision.heap``: with its settings, buffers a training run frees leave the process's RSS (glibc on Linux)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from skutag.vision import heap

PROBE = """
import sys
import numpy as np
from skutag.vision.heap import return_freed_memory

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

applied = return_freed_memory() if sys.argv[1] == "on" else False
first = np.ones(2_000_000)  # a 16 MB buffer, freed: glibc would now take blocks up to 16 MB from the heap
del first
before = rss_mb()
buffers = [np.ones(1_000_000) for _ in range(50)]  # 50 buffers of 8 MB, as a fold fit's temporaries
last = buffers[-1]  # still in use: the heap cannot shrink below it
del buffers
print(applied, round(rss_mb() - before))
"""


def _retained(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(heap._libc() is None, reason="glibc's malloc only")
def test_freed_buffers_leave_the_rss_with_the_settings():
    applied, kept_with = _retained("on")
    _, kept_without = _retained("off")
    assert applied
    assert kept_without > 300  # MB: the 49 freed buffers stay resident below the one in use
    assert kept_with < 40


def test_the_users_own_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert heap.return_freed_memory() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("SKUTAG_MALLOC_DEFAULTS", "1")  # glibc's own behaviour, to compare
    assert heap.return_freed_memory() is False
