"""The HTTP services side by side: ours (``facegender serve``) and a minimal one around the peer (uvicorn).

For each worker count, both servers run at once; for each number of concurrent clients, the same portraits
are sent to one and then the other (``POST /api/gender``, multipart ``image``), so that whatever else the
machine does weighs on both alike. Memory is summed over each server's process tree: idle after a warm-up,
and the highest seen while the clients send (sampled every quarter second). The clients share the cores with
the servers, so they are kept light: ``benchmarks/client.py`` and ``PeakSampler``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from .client import FormBody, FormClient, NoAnswerError, form_body
from .common import (
    NO_MEMORY,
    ROOT,
    Memory,
    PeakSampler,
    Row,
    cpu_seconds,
    free_port,
    percentile,
    process_memory,
    wait_until_ready,
)

__all__ = ["CLIENTS", "WORKERS", "Load", "Server", "our_server", "payloads", "run", "send", "serving", "warm_up"]

WORKERS = (1, 2)
CLIENTS = (1, 4, 16)
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 120.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class Load:
    """One burst of requests from ``clients`` concurrent clients."""

    clients: int
    seconds: float
    latencies_ms: list[float]
    failures: int
    peak_memory: Memory
    server_cpu_s: float
    """User and system CPU seconds that the server's process tree spent during the burst."""

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds

    @property
    def server_cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / len(self.latencies_ms)


def our_server(*, workers: int, clients: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment of ``facegender serve`` with ``workers`` workers, for ``clients`` clients."""
    command = [sys.executable, "-m", "facegender", "serve", "--workers", str(workers)]
    # Room for every client to wait: a 503 from our queue limit would be the benchmark's own doing.
    return command, {"FACEGENDER_MAX_QUEUE": str(max(32, clients))}


@contextmanager
def serving(*commands: tuple[Sequence[str], dict[str, str]]) -> Iterator[list[Server]]:
    """Run each (command, environment), a server taking ``--host`` and ``--port``, on a free port until the
    block ends; they start side by side, and the block begins once every one answers ``/ready``."""
    with ExitStack() as stack:
        started = []
        for command, env in commands:
            port = free_port()
            log = stack.enter_context(tempfile.TemporaryFile())
            process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_stop, process)
            started.append((Server(url=f"http://127.0.0.1:{port}", process=process), log))
        for server, log in started:
            wait_until_ready(server.url, server.process, timeout_s=START_TIMEOUT_S, output=partial(_read, log))
        yield [server for server, _ in started]


def _read(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    if code != 0:  # a graceful stop exits 0: anything else is worth a look, not a failed benchmark
        print(f"warning: {process.args!r} exited with {code} on SIGTERM", file=sys.stderr)


def send(server: Server, photos: Sequence[FormBody], *, clients: int, requests: int) -> Load:
    """``requests`` requests over ``photos`` in turn from ``clients`` threads.

    An answer is 200 (faces) or 422 (no face found: the peer misses some faces); anything else is a failure.
    """
    with FormClient(server.url, timeout_s=REQUEST_TIMEOUT_S) as client:

        def one(index: int) -> tuple[float, bool]:
            started = time.perf_counter()
            try:
                status, _ = client.post("/api/gender", photos[index % len(photos)])
                ok = status in (200, 422)
            except NoAnswerError:
                ok = False
            return (time.perf_counter() - started) * 1000, ok

        with ThreadPoolExecutor(max_workers=clients) as pool, PeakSampler(server.process.pid) as sampler:
            cpu_before = cpu_seconds(server.process.pid)
            started = time.perf_counter()
            outcomes = list(pool.map(one, range(requests)))
            seconds = time.perf_counter() - started
            cpu_after = cpu_seconds(server.process.pid)
    return Load(
        clients=clients,
        seconds=seconds,
        latencies_ms=[latency for latency, _ in outcomes],
        failures=sum(not ok for _, ok in outcomes),
        peak_memory=sampler.peak or NO_MEMORY,
        server_cpu_s=sum(after - cpu_before.get(pid, 0.0) for pid, after in cpu_after.items()),
    )


def warm_up(server: Server, photos: Sequence[FormBody], workers: int) -> Memory:
    """Bring every worker into use, let it settle, and return the idle memory."""
    send(server, photos, clients=2 * workers, requests=8 * workers)
    time.sleep(1.0)
    return process_memory(server.process.pid) or NO_MEMORY


def run(*, photos: Sequence[FormBody], requests: int, clients: Sequence[int] = CLIENTS) -> list[Row]:
    """Rows for requests/s and latency at each client count and worker count, then memory."""
    load_rows: list[Row] = []
    memory_rows: list[Row] = []
    for workers in WORKERS:
        our_command = our_server(workers=workers, clients=max(clients))
        peer_command = [sys.executable, "-m", "uvicorn", "benchmarks.peer_server:app", "--workers", str(workers)]
        peer_command += ["--log-level", "warning"]
        with serving(our_command, (peer_command, {})) as (ours, peer):
            idle = (warm_up(ours, photos, workers), warm_up(peer, photos, workers))
            peaks = [idle[0], idle[1]]
            for count in clients:
                our_load = send(ours, photos, clients=count, requests=max(requests, count))
                peer_load = send(peer, photos, clients=count, requests=max(requests, count))
                for load in (our_load, peer_load):
                    if load.failures:
                        raise RuntimeError(f"{load.failures} requests failed at {count} clients, {workers} workers")
                peaks = [peaks[0].peak(our_load.peak_memory), peaks[1].peak(peer_load.peak_memory)]
                prefix = f"HTTP, {workers} worker{'s' if workers > 1 else ''}, {count} client{'s' if count > 1 else ''}"
                load_rows.append(Row(f"{prefix}: requests/s", our_load.rate, peer_load.rate, True))
                for q in (50, 95, 99):
                    load_rows.append(
                        Row(
                            f"{prefix}: p{q} latency, ms",
                            percentile(our_load.latencies_ms, q),
                            percentile(peer_load.latencies_ms, q),
                            False,
                        )
                    )
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        # Memory fields in order: resident, proportional.
        for field, kind in enumerate(("resident memory (RSS)", "memory, shared pages counted once (PSS)")):
            for state, ours_peer in (("idle", idle), ("under load (highest)", peaks)):
                ours_mib, peer_mib = (memory[field] / MIB for memory in ours_peer)
                memory_rows.append(Row(f"server {kind}, {label}, {state}, MiB", ours_mib, peer_mib, False))
    return load_rows + memory_rows


def payloads(paths: Sequence[Path]) -> list[FormBody]:
    """Each photo as the clients send it: a form with the file under ``image``, built once."""
    return [form_body(field="image", filename=path.name, data=path.read_bytes()) for path in paths]
