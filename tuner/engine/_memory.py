"""Giving memory back between trials.

A worker runs hundreds of trials in one process. After a trial its model, optimizer state and
activations are garbage, but glibc keeps the freed heap pages, so the worker's resident memory
stays near its peak between trials (on the 2-core machine: about 1,060-1,100 MiB after each
MiniLM trial). ``malloc_trim(0)`` hands them back (about 650 MiB after each trial; see
``bench/rss_trials.py --malloc-trim``), which matters when several workers share one machine.

The *peak* still steps up once over trials 2-5 (about +140 MiB, then flat): glibc raises its mmap
threshold when a large mmapped block is freed, so from trial 2 large tensors come from the heap,
where freed blocks linger until the trim. A fixed ``MALLOC_MMAP_THRESHOLD_`` keeps the peak flat
but made trials about 20% slower on this machine, so it is not set.
"""
from __future__ import annotations

import ctypes
import gc
import sys


def malloc_trim() -> bool:
    """glibc ``malloc_trim(0)``: return free heap pages to the OS (False where unavailable)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False


def release_memory() -> None:
    """Collect garbage (reference cycles of the last trial) and trim the heap."""
    gc.collect()
    malloc_trim()
