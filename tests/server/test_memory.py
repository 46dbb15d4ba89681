"""The allocator setting that keeps a worker's memory flat."""

from __future__ import annotations

import sys

import pytest

from facegender.server.memory import return_freed_memory_promptly


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_thresholds() -> None:
    assert return_freed_memory_promptly() is True
    assert return_freed_memory_promptly() is True  # every worker may call it again
