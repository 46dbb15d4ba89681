"""tools/second_opinion_inputs.py and tools/refining_cost.py: the figures the README gives for the second opinion."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from tool_runs import run_tool

from facegender.classify import FLOAT_CLASSIFIER_PATH, SECOND_OPINION_PATH


@pytest.mark.slow
def test_each_crop_gets_a_probe_and_a_stack(utkface_subset: Callable[[int], Path], tmp_path: Path) -> None:
    pytest.importorskip("dlib")  # the descriptors extra, which brings dlib's model files too
    from facegender.training.second_opinion import (
        DLIB_NETWORK_FILE,
        dlib_models_folder,
        read_dlib_network,
        save_dlib_network,
    )

    saved = tmp_path / "saved.npz"  # as tune-second-opinion writes a network
    save_dlib_network(read_dlib_network(dlib_models_folder() / DLIB_NETWORK_FILE), saved)
    out = run_tool(
        "second_opinion_inputs.py",
        "--data",
        str(utkface_subset(20)),
        "--crops",
        "102",
        "128",
        "--networks",
        str(saved),
        "--cache-dir",
        str(tmp_path),
    )
    rows = [line for line in out.splitlines() if line.startswith(("| crop", "| tuned"))]
    assert [row.split("|")[1].strip() for row in rows] == ["crop 102 px", "crop 128 px", "tuned: saved.npz"]
    cells = [[float(cell) for cell in row.strip("|").split("|")[1:]] for row in rows]
    for *accuracies, mistakes in cells:
        assert all(0.5 < accuracy <= 1 for accuracy in accuracies) and mistakes >= 0
    # dlib's network saved in float16 scores as it does on the same crop (give or take a borderline chip).
    assert cells[2][:-1] == pytest.approx(cells[0][:-1], abs=0.01) and abs(cells[2][-1] - cells[0][-1]) <= 2


@pytest.mark.slow
def test_the_refining_step_is_counted_timed_and_weighed(shared_data: Path, tmp_path: Path) -> None:
    out = run_tool(
        "refining_cost.py",
        "--data",
        str(shared_data / "utkface"),
        "--portraits",
        str(shared_data / "portraits"),
        "--cache-dir",
        str(tmp_path),
        str(FLOAT_CLASSIFIER_PATH),
        str(SECOND_OPINION_PATH),
    )
    share = float(re.search(r"validation chips refined: ([\d.]+)%", out).group(1))  # type: ignore[union-attr]
    refined, faces = map(int, re.search(r"portrait faces refined: (\d+) of (\d+)", out).groups())  # type: ignore[union-attr]
    assert 0 < share < 20 and refined < faces and faces >= 187
    rows = [line for line in out.splitlines() if line.startswith("| gender")]
    assert [row.split("|")[1].strip() for row in rows] == [FLOAT_CLASSIFIER_PATH.name, SECOND_OPINION_PATH.name]
    assert all(float(row.split("|")[2]) > 0 and float(row.split("|")[3]) > 0 for row in rows)
