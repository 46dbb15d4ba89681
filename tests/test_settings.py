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


@pytest.mark.parametrize(
    ("cores", "workers", "threads", "expected"),
    [
        (2, 1, 0, 0),  # a spare core: threads within a photo
        (2, 2, 0, 1),  # the workers fill the cores
        (4, 3, 0, 1),
        (4, 2, 0, 0),
        (1, 1, 0, 1),
        (2, 2, 3, 3),  # set explicitly: as set
    ],
)
def test_classifier_threads_are_one_where_the_workers_fill_the_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, threads: int, expected: int
) -> None:
    monkeypatch.setattr(settings_module, "_usable_cores", lambda: cores)
    assert Settings(workers=workers, threads=threads).classifier_threads == expected
