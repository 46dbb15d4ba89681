"""Keep a long-running worker's resident memory flat under concurrent load."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Final

__all__ = ["MMAP_THRESHOLD_BYTES", "return_freed_memory_promptly"]

# glibc's mallopt(3) parameter numbers.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8

MMAP_THRESHOLD_BYTES: Final = 2 * 1024 * 1024
"""Allocations from this size up (decoded photos of more than about 0.7 megapixels) get their own mappings.

Not lower: every mapped buffer is page-faulted in afresh, and at 64 KiB (every decoded photo, resized view and
model tensor) a portrait took 14.6 ms instead of 10.2 in the library, and a worker served 110 instead of 134
requests/s (``python -m benchmarks.load --requests 5000 --clients 16``)."""


def return_freed_memory_promptly() -> bool:
    """Make glibc hand large freed buffers and the free top of the heap back to the OS at once.

    By default glibc raises its mmap threshold after the first large buffer is freed, so later decoded photos
    come from the heap arenas of whichever thread decoded them; under concurrent requests those arenas fragment
    and resident memory creeps up request after request. Fixing the thresholds, and making every thread share
    one arena, keeps it flat (``benchmarks/load.py`` measures it). Returns False, changing nothing, where the
    C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # One arena: buffers under the mmap threshold come from a heap that every thread reuses, instead of one
    # heap per thread each keeping its own high-water mark (with a 4 MiB threshold, an arena per thread
    # held ~28 MiB more under load than one shared arena).
    return all(
        mallopt(parameter, value)
        for parameter, value in (
            (_M_ARENA_MAX, 1),
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (_M_TRIM_THRESHOLD, 0),
        )
    )
