"""The HTTP rows of several checkouts of facegender, side by side on the same warm servers, in alternation.

    git worktree add /tmp/before COMMIT
    python -m benchmarks.compare /tmp/before .                 # 3 rounds, 2 workers, 1 and 16 clients
    python -m benchmarks.compare /tmp/before . --rounds 5 --workers 1 --clients 1 4 16

Each checkout's server is ``facegender serve`` run from that checkout's own ``src/`` (first on
``PYTHONPATH``), with the same Python and packages; they start together and stay up. Each round sends the
portraits to each server in turn, from each number of clients (``--requests`` requests, at least one per
client), so that whatever else the machine does weighs on all alike: its speed moves by up to a third from hour
to hour here, so only numbers from the same run compare. Prints one Markdown table: requests/s and p50, p95 and
p99 latency per checkout, client count and round.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from facegender.data import load_dataset

from .common import SHARED, percentile
from .service import our_server, payloads, send, serving, warm_up


def _checkout(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "src" / "facegender" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a checkout of facegender (no src/facegender)")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="+", type=_checkout, help="checkouts of facegender to compare")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16], help="client counts (default 1 16)")
    parser.add_argument("--requests", type=int, default=400, help="requests per client count (default 400)")
    args = parser.parse_args(argv)
    photos = payloads([item.path for item in load_dataset(SHARED / "portraits")])
    command, env = our_server(workers=args.workers, clients=max(args.clients))
    commands = [(command, {**env, "PYTHONPATH": str(path / "src")}) for path in args.checkouts]
    print("| round | checkout | clients | requests/s | p50 ms | p95 ms | p99 ms |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    with serving(*commands) as servers:
        for server in servers:
            warm_up(server, photos, args.workers)
        for round_ in range(1, args.rounds + 1):
            for path, server in zip(args.checkouts, servers, strict=True):
                for clients in args.clients:
                    load = send(server, photos, clients=clients, requests=max(args.requests, clients))
                    if load.failures:
                        print(f"{load.failures} requests failed at {path}", file=sys.stderr)
                        return 1
                    latencies = load.latencies_ms
                    print(
                        f"| {round_} | {path} | {clients} | {load.rate:.1f} | {percentile(latencies, 50):.1f}"
                        f" | {percentile(latencies, 95):.1f} | {percentile(latencies, 99):.1f} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
