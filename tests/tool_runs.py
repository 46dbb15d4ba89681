"""Running the scripts in ``tools/`` as a user does, for the tests of the figures they print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def run_tool(tool: str, *args: str) -> str:
    """What ``python tools/TOOL ARGS`` prints; fails on a non-zero exit status."""
    command = [sys.executable, str(TOOLS / tool), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=600).stdout
