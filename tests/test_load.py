"""The load check passes at a small scale: no 5xx, no failed request and no crossed answer (speed is not judged)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _row(output: str, measure: str) -> str:
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == measure:
            return cells[1]
    raise AssertionError(f"no row {measure!r} in:\n{output}")


@pytest.mark.slow
def test_concurrent_answers_match_the_solo_answers(shared_data: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.load", "--requests", "300", "--clients", "8", "--photos", "60"]
    command += ["--warmup", "50"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _row(result.stdout, "requests") == "300"
    assert _row(result.stdout, "5xx responses") == "0"
    assert _row(result.stdout, "requests without an answer") == "0"
    assert _row(result.stdout, "crossed answers (differ from the photo's solo answer)") == "0"
    assert _row(result.stdout, "statuses").startswith("200: ")
    shares = [
        int(share.rstrip("%"))
        for share in _row(result.stdout, "share of the server's CPU time by process, during the load").split(", ")
    ]
    assert shares == sorted(shares, reverse=True) and 98 <= sum(shares) <= 102 and shares[0] > 50
    server_ms = float(_row(result.stdout, "server CPU time per request, ms"))
    client_ms = float(_row(result.stdout, "the clients' own CPU time per request, ms"))
    assert 0 < client_ms < server_ms
