"""What the benchmarks share: where the test photos are, and percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["SHARED", "percentile"]

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""``<repo>/../shared/data``: ``portraits`` and ``utkface``, each with a ``labels.csv``."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) of ``values``, linearly interpolated."""
    return float(np.percentile(np.asarray(values), q))
