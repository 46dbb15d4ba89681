"""Load check of the HTTP service: concurrent requests over distinct photos, every answer checked.

    python -m benchmarks.load                                  # 1000 requests from 16 clients, 1 worker
    python -m benchmarks.load --requests 5000 --clients 16     # the run the README shows
    python -m benchmarks.load --requests 300 --clients 8 --workers 2 --warmup 50

Starts ``facegender serve`` on a free port, asks for each photo's answer alone first (one request at a time:
the solo answers), then sends ``--warmup`` concurrent requests (they bring every inference thread and buffer
into use, so the memory baseline is taken after them), then ``--requests`` requests over those photos, cycling
through UTKFace chips and portraits in turn, from ``--clients`` threads at once. Every concurrent answer must
equal its photo's solo answer (status, error code, and the class and probability of every face, to the 4
decimals the API gives): a difference means answers crossed between requests. Prints a Markdown table with
the throughput, the latency percentiles and the server's resident memory (the server process and its worker
processes) after the warm-up, at its highest during the load and at the end, and how the load's CPU time split
among the server's processes (with several workers: how evenly the connections were shared) and the CPU time
per request of the server and of the clients (which share its cores); exits 1 if any answer was a 5xx, failed
or crossed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import FormBody, FormClient, NoAnswerError
from .common import SHARED, PeakSampler, cpu_seconds, percentile, resident_bytes
from .service import MIB, REQUEST_TIMEOUT_S, our_server, payloads, serving

Answer = tuple[Any, ...]
"""What must not change between a photo's solo and concurrent answers."""


@dataclass(frozen=True)
class Outcome:
    photo: int
    status: int | None  # None: no HTTP answer at all
    answer: Answer
    latency_ms: float


def _labelled(folder: Path) -> list[Path]:
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return [folder / row["file"] for row in csv.DictReader(handle)]


def choose_photos(count: int, shared: Path = SHARED) -> list[FormBody]:
    """``count`` distinct photos as the clients send them, UTKFace chips and portraits alternately, each spread
    evenly through its set."""
    portraits = _labelled(shared / "portraits")
    chips = _labelled(shared / "utkface")
    from_portraits = min(len(portraits), count // 2)
    from_chips = min(len(chips), count - from_portraits)
    picked_portraits = portraits[:: max(1, len(portraits) // max(1, from_portraits))][:from_portraits]
    picked_chips = chips[:: max(1, len(chips) // max(1, from_chips))][:from_chips]
    mixed: list[Path] = []
    for index in range(max(len(picked_chips), len(picked_portraits))):
        mixed += [group[index] for group in (picked_chips, picked_portraits) if index < len(group)]
    return payloads(mixed)


def answer_of(status: int, content: bytes) -> Answer:
    """The parts of a response that depend only on the photo."""
    body = json.loads(content)
    if status != 200:
        return (status, body.get("error", {}).get("code"))
    faces = tuple(
        (face["class"], face["probability"], tuple(p["probability"] for p in face["predictions"]))
        for face in body["faces"]
    )
    top = body["predictions"]
    return (200, top["class"], top["probability"], faces)


def _request(client: FormClient, photos: Sequence[FormBody], index: int) -> Outcome:
    started = time.perf_counter()
    try:
        status: int | None
        status, content = client.post("/api/gender", photos[index])
        answer = answer_of(status, content)
    except (NoAnswerError, ValueError) as error:
        status, answer = None, ("failed", type(error).__name__)
    return Outcome(photo=index, status=status, answer=answer, latency_ms=(time.perf_counter() - started) * 1000)


@dataclass(frozen=True)
class Report:
    requests: int
    clients: int
    workers: int
    photos: int
    seconds: float
    latencies_ms: list[float]
    server_errors: int
    failed: int
    crossed: int
    statuses: dict[int, int]
    warmup: int
    rss_warm: int | None
    rss_peak: int | None
    rss_end: int | None
    cpu_shares: list[float]
    """Each server process's share of the server's CPU time during the load, largest first."""
    server_cpu_s: float
    """CPU time of all the server's processes during the load."""
    client_cpu_s: float
    """CPU time of this process (the clients) during the load: taken from the cores the server runs on."""

    @property
    def memory_growth(self) -> float | None:
        """Resident memory at the end over that after the warm-up, minus one."""
        if self.rss_warm is None or self.rss_end is None:
            return None
        return self.rss_end / self.rss_warm - 1.0

    @property
    def ok(self) -> bool:
        return self.server_errors == 0 and self.failed == 0 and self.crossed == 0

    def markdown(self) -> str:
        def mib(value: int | None) -> str:
            return "n/a" if value is None else f"{value / MIB:.1f}"

        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        growth = self.memory_growth
        rows = [
            ("requests", f"{self.requests}"),
            ("concurrent clients", f"{self.clients}"),
            ("server workers", f"{self.workers}"),
            ("distinct photos (UTKFace chips and portraits)", f"{self.photos}"),
            ("statuses", statuses or "none"),
            ("5xx responses", f"{self.server_errors}"),
            ("requests without an answer", f"{self.failed}"),
            ("crossed answers (differ from the photo's solo answer)", f"{self.crossed}"),
            ("wall time, s", f"{self.seconds:.2f}"),
            ("requests/s", f"{self.requests / self.seconds:.1f}"),
            ("latency p50, ms", f"{percentile(self.latencies_ms, 50):.1f}"),
            ("latency p95, ms", f"{percentile(self.latencies_ms, 95):.1f}"),
            ("latency p99, ms", f"{percentile(self.latencies_ms, 99):.1f}"),
            ("concurrent warm-up requests before the memory baseline", f"{self.warmup}"),
            ("server resident memory after warm-up, MiB", mib(self.rss_warm)),
            ("server resident memory, highest during the load, MiB", mib(self.rss_peak)),
            ("server resident memory at the end, MiB", mib(self.rss_end)),
            ("memory growth after warm-up", "n/a" if growth is None else f"{growth:+.1%}"),
            (
                "share of the server's CPU time by process, during the load",
                ", ".join(f"{s:.0%}" for s in self.cpu_shares),
            ),
            ("server CPU time per request, ms", f"{1000 * self.server_cpu_s / self.requests:.2f}"),
            ("the clients' own CPU time per request, ms", f"{1000 * self.client_cpu_s / self.requests:.2f}"),
        ]
        lines = [
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}.",
            "",
            "| measure | value |",
            "| --- | ---: |",
            *(f"| {measure} | {value} |" for measure, value in rows),
        ]
        return "\n".join(lines)


def run(*, requests: int, clients: int, workers: int, distinct: int, warmup: int) -> Report:
    """Start a server, take the solo answers, warm it up, run the load, stop the server; the measurements."""
    photos = choose_photos(min(distinct, requests))
    with (
        serving(our_server(workers=workers, clients=clients)) as (server,),
        FormClient(server.url, timeout_s=REQUEST_TIMEOUT_S) as client,
    ):
        solo = [_request(client, photos, index) for index in range(len(photos))]
        if any(outcome.status is None or outcome.status >= 500 for outcome in solo):
            raise RuntimeError(f"a solo request failed: {[o.answer for o in solo if o.status != 200][:5]}")
        with ThreadPoolExecutor(max_workers=clients) as pool:
            # Concurrent requests, unlike the solo ones, bring every inference thread and buffer into use.
            warm_up = [index % len(photos) for index in range(warmup)]
            list(pool.map(lambda index: _request(client, photos, index), warm_up))
            rss_warm = resident_bytes(server.process.pid)
            order = [index % len(photos) for index in range(requests)]
            cpu_before, client_cpu_before = cpu_seconds(server.process.pid), time.process_time()
            with PeakSampler(server.process.pid) as sampler:
                started = time.perf_counter()
                outcomes = list(pool.map(lambda index: _request(client, photos, index), order))
                seconds = time.perf_counter() - started
            cpu_after, client_cpu_s = cpu_seconds(server.process.pid), time.process_time() - client_cpu_before
        rss_end = resident_bytes(server.process.pid)
    server_cpu = {pid: cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after}
    statuses: dict[int, int] = {}
    for outcome in outcomes:
        if outcome.status is not None:
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    return Report(
        requests=requests,
        clients=clients,
        workers=workers,
        photos=len(photos),
        seconds=seconds,
        latencies_ms=[outcome.latency_ms for outcome in outcomes],
        server_errors=sum(1 for outcome in outcomes if outcome.status is not None and outcome.status >= 500),
        failed=sum(1 for outcome in outcomes if outcome.status is None),
        crossed=sum(
            1
            for outcome in outcomes
            if outcome.status is not None and outcome.status < 500 and outcome.answer != solo[outcome.photo].answer
        ),
        statuses=statuses,
        warmup=warmup,
        rss_warm=rss_warm,
        rss_peak=sampler.peak.resident if sampler.peak else None,
        rss_end=rss_end,
        cpu_shares=_shares(server_cpu),
        server_cpu_s=sum(server_cpu.values()),
        client_cpu_s=client_cpu_s,
    )


def _shares(used: dict[int, float]) -> list[float]:
    total = sum(used.values())
    return sorted((seconds / total for seconds in used.values()), reverse=True) if total > 0 else []


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=_positive, default=1000, help="requests to send (default 1000)")
    parser.add_argument("--clients", type=_positive, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--workers", type=_positive, default=1, help="server worker processes (default 1)")
    parser.add_argument(
        "--photos", type=_positive, default=400, help="distinct photos, at most --requests (default 400)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="concurrent requests after the solo answers and before the memory baseline (default 500)",
    )
    args = parser.parse_args(argv)
    report = run(
        requests=args.requests, clients=args.clients, workers=args.workers, distinct=args.photos, warmup=args.warmup
    )
    print(report.markdown())
    if not report.ok:
        print("FAILED: 5xx responses, requests without an answer, or crossed answers", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
