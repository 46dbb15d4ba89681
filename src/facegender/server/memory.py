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

MMAP_THRESHOLD_BYTES: Final = 64 * 1024
"""Allocations from this size up (decoded photos, resized views, model tensors) get their own mappings."""


def return_freed_memory_promptly() -> bool:
    """Make glibc hand large freed buffers and the free top of the heap back to the OS at once.

    By default glibc raises its mmap threshold after the first large buffer is freed, so later decoded photos
    come from the heap arenas of whichever thread decoded them; under concurrent requests those arenas fragment
    and resident memory creeps up request after request. Fixing the thresholds keeps it flat
    (``benchmarks/load.py`` measures it). Returns False, changing nothing, where the C library is not glibc.
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
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, 0))
