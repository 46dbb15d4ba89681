"""Settings: defaults that depend on the machine."""

from __future__ import annotations

import pytest

from facegender import settings as settings_module
from facegender.settings import DEFAULT_CONCURRENT_INFERENCES, Settings


@pytest.mark.parametrize(
    ("cores", "workers", "expected"),
    [
        (2, 1, DEFAULT_CONCURRENT_INFERENCES),
        (2, 2, 1),  # the workers outnumber half the cores
        (4, 2, DEFAULT_CONCURRENT_INFERENCES),
        (16, 2, DEFAULT_CONCURRENT_INFERENCES),  # never more than the default
        (2, 8, 1),  # never fewer than one
        (1, 1, 1),
    ],
)
def test_concurrent_inferences_share_the_cores_among_the_workers(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, expected: int
) -> None:
    monkeypatch.setattr(settings_module, "_usable_cores", lambda: cores)
    assert Settings(workers=workers).concurrent_inferences == expected


def test_concurrent_inferences_set_explicitly_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "_usable_cores", lambda: 2)
    assert Settings(workers=2, max_concurrent_inferences=3).concurrent_inferences == 3
    monkeypatch.setenv("FACEGENDER_MAX_CONCURRENT_INFERENCES", "4")
    assert Settings(workers=2).concurrent_inferences == 4
