"""The HTTP rows of several checkouts of facegender, side by side on the same warm servers, in alternation; or,
with ``--library``, the CPU time of each checkout's library reading the same portraits on one thread.

    git worktree add /tmp/before COMMIT
    python -m benchmarks.compare /tmp/before .                 # 3 rounds, 2 workers, 1 and 16 clients
    python -m benchmarks.compare /tmp/before . --library --rounds 20   # what a default change is judged by

Each checkout runs from its own ``src/`` (first on ``PYTHONPATH``), with the same Python and packages: a server
(``facegender serve``) or, with ``--library``, a process of ``benchmarks/library_pass.py`` on one thread. They
start together and stay up. Each round sends the portraits to each server in turn, from each number of clients
(``--requests`` requests, at least one per client), or has each library read all of them once, so that whatever
else the machine does weighs on all alike: its speed moves by up to a third from hour to hour here, so only
numbers from the same run compare. Odd rounds take the checkouts in the order given, even rounds in the reverse
order, so that a drift within a round weighs on each side alike.

Prints one Markdown table of the rounds (requests/s, p50, p95 and p99 latency and the server's CPU milliseconds
per request for each client count; or the library's CPU seconds), then, for each checkout after the first, its
rounds paired with the first checkout's: the median of their differences, each with a distribution-free 95%
interval of that median (from six rounds up).

Judge a change's cost by ``--library``: on two cores, two copies of the same code differ in the p95 at 16 clients
by tens of milliseconds from round to round, and even in the server's CPU per request by several percent
(docs/performance.md, "How a change is compared").
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from facegender.data import load_dataset

from .common import ROOT, SHARED, percentile
from .library_pass import PASS, READY
from .service import our_server, payloads, send, serving, warm_up

CONFIDENCE = 0.95


@dataclass(frozen=True)
class MedianDifference:
    """The median of paired differences and its interval (``None`` when too few pairs reach ``CONFIDENCE``)."""

    median: float
    interval: tuple[float, float] | None

    def cells(self, unit: str) -> list[str]:
        interval = "n/a" if self.interval is None else f"{self.interval[0]:+.1f} to {self.interval[1]:+.1f}"
        return [f"{self.median:+.1f}{unit}", interval]


def median_difference(differences: Sequence[float], *, confidence: float = CONFIDENCE) -> MedianDifference:
    """The median of ``differences`` with the widest-ranked order statistics that cover it with ``confidence``.

    The interval from the k-th smallest to the k-th largest difference misses the median only when at most k - 1
    differences fall on one side of it, which for n pairs has the probability 2 P(Binomial(n, 1/2) <= k - 1),
    whatever the differences' distribution: the sign test's interval.
    """
    ordered = sorted(differences)
    n = len(ordered)
    ranks = [k for k in range(1, n // 2 + 1) if 1 - 2 * _binomial_tail(n, k - 1) >= confidence]
    interval = (ordered[ranks[-1] - 1], ordered[n - ranks[-1]]) if ranks else None
    return MedianDifference(median=float(statistics.median(ordered)), interval=interval)


def _binomial_tail(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def _relative(ours: float, base: float) -> float:
    return 100 * (ours / base - 1)


def _absolute(ours: float, base: float) -> float:
    return ours - base


@dataclass(frozen=True)
class Paired:
    """A column of the paired table: a measure's difference, ``(ours, base) -> difference``, and its unit."""

    name: str
    difference: Callable[[float, float], float]
    unit: str


SERVICE_COLUMNS = (
    Paired("p95 ms", _absolute, " ms"),
    Paired("requests/s", _relative, "%"),
    Paired("server CPU per request", _relative, "%"),
)
LIBRARY_COLUMNS = (Paired("CPU seconds", _relative, "%"),)

Measures = dict[tuple[int, int, int], tuple[float, ...]]
"""By (checkout index, client count or threads, round): the measures in the order of the paired columns."""


def _checkout(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "src" / "facegender" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a checkout of facegender (no src/facegender)")
    return path


def _in_turn(count: int, round_: int) -> list[int]:
    """The checkouts' indices in a round's order: as given in odd rounds, reversed in even ones."""
    order = list(range(count))
    return order if round_ % 2 else order[::-1]


def _paired_table(
    checkouts: Sequence[Path], group: str, groups: Sequence[int], columns: Sequence[Paired], measures: Measures
) -> list[str]:
    rounds = max(round_ for _, _, round_ in measures)
    header = [f"{column.name}, median difference | 95% interval" for column in columns]
    lines = [
        f"| checkout | against | {group} | rounds | " + " | ".join(header) + " |",
        "| --- | --- | ---: | ---: |" + " ---: | ---: |" * len(columns),
    ]
    for index in range(1, len(checkouts)):
        for count in groups:
            cells = [str(checkouts[index]), str(checkouts[0]), str(count), str(rounds)]
            for position, column in enumerate(columns):
                differences = [
                    column.difference(measures[(index, count, r)][position], measures[(0, count, r)][position])
                    for r in range(1, rounds + 1)
                ]
                cells += median_difference(differences).cells(column.unit)
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _compare_services(checkouts: Sequence[Path], args: argparse.Namespace) -> Measures | None:
    photos = payloads([item.path for item in load_dataset(SHARED / "portraits")])
    command, env = our_server(workers=args.workers, clients=max(args.clients))
    commands = [(command, {**env, "PYTHONPATH": str(path / "src")}) for path in checkouts]
    measures: Measures = {}
    print("| round | checkout | clients | requests/s | p50 ms | p95 ms | p99 ms | server CPU ms per request |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with serving(*commands) as servers:
        for server in servers:
            warm_up(server, photos, args.workers)
        for round_ in range(1, args.rounds + 1):
            for index in _in_turn(len(servers), round_):
                for clients in args.clients:
                    load = send(servers[index], photos, clients=clients, requests=max(args.requests, clients))
                    if load.failures:
                        print(f"{load.failures} requests failed at {checkouts[index]}", file=sys.stderr)
                        return None
                    latencies = load.latencies_ms
                    p95 = percentile(latencies, 95)
                    measures[(index, clients, round_)] = (p95, load.rate, load.server_cpu_ms_per_request)
                    print(
                        f"| {round_} | {checkouts[index]} | {clients} | {load.rate:.1f}"
                        f" | {percentile(latencies, 50):.1f} | {p95:.1f} | {percentile(latencies, 99):.1f}"
                        f" | {load.server_cpu_ms_per_request:.2f} |",
                        flush=True,
                    )
    return measures


@contextmanager
def _libraries(checkouts: Sequence[Path]) -> Iterator[list[subprocess.Popen[str]]]:
    """A ``benchmarks.library_pass`` process per checkout, each on one thread, ready once the block begins."""
    with ExitStack() as stack:
        processes = []
        for path in checkouts:
            env = {**os.environ, "PYTHONPATH": str(path / "src"), "FACEGENDER_THREADS": "1"}
            command = [sys.executable, "-m", "benchmarks.library_pass"]
            process = stack.enter_context(
                subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
            processes.append(process)
        for path, process in zip(checkouts, processes, strict=True):
            if _answer(process) != READY:
                raise RuntimeError(f"the library of {path} did not start")
        yield processes  # (leaving each Popen closes its stdin, which ends its loop, and waits for it)


def _answer(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


def _library_pass(process: subprocess.Popen[str]) -> float:
    """The CPU seconds of one pass of ``process``'s library over the portraits."""
    assert process.stdin is not None
    process.stdin.write(f"{PASS}\n")
    process.stdin.flush()
    return float(_answer(process))


def _compare_libraries(checkouts: Sequence[Path], args: argparse.Namespace) -> Measures:
    measures: Measures = {}
    print("| round | checkout | threads | CPU seconds for the portraits |")
    print("| ---: | --- | ---: | ---: |")
    with _libraries(checkouts) as processes:
        for round_ in range(1, args.rounds + 1):
            for index in _in_turn(len(processes), round_):
                seconds = _library_pass(processes[index])
                measures[(index, 1, round_)] = (seconds,)
                print(f"| {round_} | {checkouts[index]} | 1 | {seconds:.3f} |", flush=True)
    return measures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="+", type=_checkout, help="checkouts of facegender to compare")
    parser.add_argument("--library", action="store_true", help="compare the libraries' CPU time, one thread each")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2; servers only)")
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[1, 16], help="client counts (default 1 16; servers only)"
    )
    parser.add_argument(
        "--requests", type=int, default=400, help="requests per client count (default 400; servers only)"
    )
    args = parser.parse_args(argv)
    if args.library:
        library = _compare_libraries(args.checkouts, args)
        paired = _paired_table(args.checkouts, "threads", [1], LIBRARY_COLUMNS, library)
    else:
        measures = _compare_services(args.checkouts, args)
        if measures is None:
            return 1
        paired = _paired_table(args.checkouts, "clients", args.clients, SERVICE_COLUMNS, measures)
    if len(args.checkouts) > 1:
        print()
        print("\n".join(paired))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
