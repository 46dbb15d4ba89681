"""tools/upright_margin.py and tools/unsure_reading.py: the tables that chose the upright setting's rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tool_runs import run_tool

from facegender.detect import SURE_UPRIGHT_SCORE
from facegender.pipeline import UNSURE_READING, UPRIGHT_PROBABILITY


def _table(out: str, first_column: str) -> dict[str, list[str]]:
    """The rows of the Markdown table headed by ``first_column``: its cells by the first one."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _looked(cell: str) -> float:
    """The share looked at, in brackets after the cell's figure."""
    return float(cell.split("(")[1].rstrip(")"))


@pytest.mark.slow
def test_the_sure_score_changes_no_decision_on_the_chips_it_was_chosen_on(shared_data: Path) -> None:
    # Every 48th train chip is every 4th of the 12th that chose it.
    rows = _table(run_tool("upright_margin.py", "--data", str(shared_data / "utkface"), "--every", "48"), "sure score")
    chosen = rows[f"{SURE_UPRIGHT_SCORE:g}"]
    assert [cell.split()[0] for cell in chosen] == [cell.split()[0] for cell in rows["none"]]
    assert _looked(chosen[0]) < 0.9  # upright faces spared the looks
    assert [_looked(cell) for cell in chosen[1:]] == [1.0, 1.0, 1.0]  # every turned face still looked at


@pytest.mark.slow
def test_looking_again_only_at_faces_read_unsurely_and_not_found_upright_leaves_upright_chips_as_read(
    utkface_subset: Callable[[int], Path],
) -> None:
    out = run_tool("unsure_reading.py", "--data", str(utkface_subset(50)))
    rows = _table(out, "unsure reading")
    assert list(rows) == ["0.9", "0.95", "0.97", "0.98", "0.99", "0.995", "none"]
    assert len({cells[0].split()[0] for cells in rows.values()}) == 1  # upright chips: the same answers
    for turned in range(4):
        looked = [_looked(cells[turned]) for cells in rows.values()]
        assert looked == sorted(looked)  # a higher threshold looks at more faces
    assert _looked(rows["0.97"][0]) < _looked(rows["none"][0])
    spared = _table(out, "upright probability")
    assert list(spared) == [f"{UPRIGHT_PROBABILITY:g}", "0.7", "0.8", "0.9", "0.95", "0.98", "0.99", "none"]
    assert spared["none"] == rows[f"{UNSURE_READING:g}"]  # no face spared: the unsure reading alone
    assert len({cells[0].split()[0] for cells in spared.values()}) == 1
    chosen = spared[f"{UPRIGHT_PROBABILITY:g}"]
    assert _looked(chosen[0]) < _looked(spared["none"][0])  # upright faces spared the looks
    for turned in (1, 2, 3):
        assert chosen[turned] == spared["none"][turned]  # turned faces still looked at, and read the same
