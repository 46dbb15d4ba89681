"""``facegender batch`` and :mod:`facegender.batch`: inputs, records, resume, formats and the Ray engine."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from facegender.batch import BatchProgress, list_inputs, run_batch
from facegender.errors import BatchInputError, MissingExtraError
from facegender.records import FLAT_COLUMNS

CHIPS = 200


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facegender", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def photos(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 UTKFace chips in two nested folders, plus ``broken.jpg``, which is text."""
    chips = sorted((shared_data / "utkface" / "images").glob("*.jpg"))[::100][:CHIPS]
    if len(chips) < CHIPS:
        pytest.skip("fewer UTKFace chips than the test needs")
    root = tmp_path_factory.mktemp("photos")
    for number, chip in enumerate(chips):
        folder = root / ("a" if number % 2 else "b/deeper")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(chip, folder / chip.name)
    (root / "broken.jpg").write_text("not a photo")
    (root / "notes.txt").write_text("not an image name: left out of a folder walk")
    return root


@pytest.fixture(scope="module")
def local_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("local") / "faces.jsonl"
    return cli("batch", str(photos), "--out", str(out), "--workers", "2"), out


def by_file(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["file"]: record for record in records}


@pytest.fixture(scope="module")
def faced(local_run: tuple[subprocess.CompletedProcess[str], Path]) -> list[Path]:
    """Chips under ``a/`` in which the local run found a face."""
    return sorted(Path(r["file"]) for r in read_jsonl(local_run[1]) if r["faces"] and "/a/" in r["file"])


def test_local_batch_writes_one_record_per_file(local_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, out = local_run
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert len(records) == len(by_file(records)) == CHIPS + 1
    broken = next(record for record in records if record["file"].endswith("broken.jpg"))
    assert broken["faces"] == [] and broken["error"]["code"] == "bad_image"
    chips = [record for record in records if record is not broken]
    no_face = [record for record in chips if not record["faces"]]
    assert all(record["error"] == {"code": "no_face", "message": "no face found"} for record in no_face)
    assert len(no_face) <= 2 and all(record["error"] is None for record in chips if record["faces"])
    for record in chips:
        assert record["model"] and record["size"] > 0 and record["mtime"] > 0 and Path(record["file"]).is_absolute()
        if not record["faces"]:
            continue
        face = record["faces"][0]
        assert set(face["box"]) == {"left", "top", "width", "height"}
        assert face["label"] == {"female": 0, "male": 1}[face["class"]]
        assert 0.5 <= face["probability"] <= 1 and 0 < face["detection_score"] <= 1
        assert -90 <= face["head_turn"] <= 90
    # Not a terminal: plain progress lines on stderr, then the summary on stdout.
    assert "facegender: batch: 201 files to do, 0 already done" in result.stderr
    assert f"{CHIPS + 1}/{CHIPS + 1} files" in result.stderr
    assert "files    201 (skipped, already recorded: 0)" in result.stdout
    assert "errors   1" in result.stdout


def test_rerun_skips_recorded_files_and_drops_a_cut_line(
    local_run: tuple[subprocess.CompletedProcess[str], Path], photos: Path, tmp_path: Path
) -> None:
    complete = local_run[1].read_text(encoding="utf-8").splitlines(keepends=True)
    out = tmp_path / "faces.jsonl"
    out.write_text("".join(complete[:50]) + complete[50][:40], encoding="utf-8")  # as a kill mid-write leaves it
    updates: list[BatchProgress] = []
    summary = run_batch(inputs=str(photos), out=out, workers=2, progress=updates.append)
    records = read_jsonl(out)
    assert len(records) == len(by_file(records)) == CHIPS + 1
    assert (summary.skipped, summary.files) == (50, CHIPS + 1 - 50)
    assert updates[0] == BatchProgress(done=0, total=CHIPS + 1 - 50, skipped=50) and updates[-1].done == summary.files
    again = run_batch(inputs=str(photos), out=out, workers=2)
    assert (again.files, again.skipped) == (0, CHIPS + 1) and len(read_jsonl(out)) == CHIPS + 1


def test_a_changed_file_gets_a_newer_record(faced: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for chip in faced[:5]:
        shutil.copy2(chip, folder)
    out = tmp_path / "faces.jsonl"
    first = run_batch(inputs=str(folder), out=out, workers=1)
    changed = sorted(folder.iterdir())[0]
    os.utime(changed, (time.time() + 60, time.time() + 60))
    second = run_batch(inputs=str(folder), out=out, workers=1)
    assert (second.files, second.skipped) == (1, first.files - 1)
    assert [record["file"] for record in read_jsonl(out)].count(str(changed)) == 2


@pytest.mark.slow
def test_killed_run_leaves_whole_lines_and_resumes(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "faces.jsonl"
    command = [sys.executable, "-m", "facegender", "batch", str(photos), "--out", str(out), "--chunk-size", "4"]
    job = subprocess.Popen([*command, "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (not out.exists() or out.read_bytes().count(b"\n") < 20) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    cut = read_jsonl(out)  # every line whole
    assert 20 <= len(cut) < CHIPS + 1
    resumed = cli("batch", str(photos), "--out", str(out), "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert f"already recorded: {len(cut)})" in resumed.stdout
    records = read_jsonl(out)
    assert len(records) == len(by_file(records)) == CHIPS + 1


def test_csv_and_parquet_flatten_the_largest_face_and_resume(
    photos: Path, tmp_path: Path, local_run: tuple[subprocess.CompletedProcess[str], Path]
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    expected = by_file(read_jsonl(local_run[1]))
    inputs = str(photos / "a" / "*.jpg")
    names = {item.path for item in list_inputs(inputs)}

    table = tmp_path / "faces.csv"
    run_batch(inputs=inputs, out=table, workers=2)
    resumed = run_batch(inputs=inputs, out=table, workers=2)
    with table.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert table.read_text(encoding="utf-8").count("file,size,mtime") == 1 and resumed.skipped == len(names)
    assert {row["file"] for row in rows} == names and len(rows) == len(names)

    folder = tmp_path / "faces.parquet"
    run_batch(inputs=inputs, out=folder, workers=2)
    run_batch(inputs=inputs, out=folder, workers=2)
    parquet_rows = pq.read_table(folder).to_pylist()
    assert len(parquet_rows) == len(names) and list(parquet_rows[0]) == list(FLAT_COLUMNS)

    for row, kind in [(row, "csv") for row in rows] + [(row, "parquet") for row in parquet_rows]:
        if not expected[row["file"]]["faces"]:
            assert int(row["faces"]) == 0 and row["error_code"] == "no_face", kind
            continue
        face = expected[row["file"]]["faces"][0]
        assert row["class"] == face["class"] and int(row["faces"]) == 1, kind
        assert int(row["label"]) == face["label"] and int(row["box_width"]) == face["box"]["width"], kind
        assert float(row["probability"]) == pytest.approx(face["probability"], abs=1e-5), kind
        assert row["error_code"] in ("", None) and row["model"] == expected[row["file"]]["model"], kind


def test_parquet_keeps_errors(photos: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "errors.parquet"
    run_batch(inputs=str(photos / "broken.jpg"), out=folder, workers=1)
    (row,) = pq.read_table(folder).to_pylist()
    assert (row["faces"], row["class"], row["error_code"]) == (0, None, "bad_image")


def test_glob_and_list_inputs(photos: Path, tmp_path: Path) -> None:
    everything = {item.path for item in list_inputs(str(photos))}
    assert len(everything) == CHIPS + 1 and not any(path.endswith("notes.txt") for path in everything)
    deep = {item.path for item in list_inputs(str(photos / "**" / "*.jpg"))}
    assert deep == everything
    shallow = [item.path for item in list_inputs(str(photos / "a" / "*.jpg"))]
    assert len(shallow) == CHIPS // 2 and all("/a/" in path for path in shallow)

    names = sorted(path.relative_to(photos) for path in (photos / "a").glob("*.jpg"))[:3]
    listed = {str(photos / name) for name in names}
    text = photos / "some.txt"
    text.write_text("# three chips\n" + "".join(f"{name}\n" for name in names) + f"\n{names[0]}\n")
    assert {item.path for item in list_inputs(str(text))} == listed  # relative to the list, each once
    with_header = tmp_path / "labels.csv"
    with_header.write_text("gender,file\n" + "".join(f"x,{photos / name}\n" for name in names))
    assert {item.path for item in list_inputs(str(with_header))} == listed
    without_header = tmp_path / "plain.csv"
    without_header.write_text("".join(f"{photos / name},x\n" for name in names) + f"{tmp_path / 'gone.jpg'},x\n")
    files = list_inputs(str(without_header))
    assert {item.path for item in files[:3]} == listed and (files[3].size, files[3].mtime) == (None, None)


def test_fsspec_urls(faced: list[Path], tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    chips = faced[:4]
    for chip in chips:
        memory.pipe(f"/batch-test/{chip.name}", chip.read_bytes())
    memory.pipe("/batch-test/sub/broken.png", b"not a photo")
    out = tmp_path / "faces.jsonl"
    try:
        summary = run_batch(inputs="memory://batch-test", out=out, workers=2, pool="threads")
    finally:
        memory.rm("/batch-test", recursive=True)
    records = by_file(read_jsonl(out))
    assert (summary.files, summary.errors, summary.faces) == (5, 1, 4)
    assert records["memory:///batch-test/sub/broken.png"]["error"]["code"] == "bad_image"
    assert all(records[f"memory:///batch-test/{chip.name}"]["faces"] for chip in chips)

    listed = tmp_path / "urls.txt"
    listed.write_text(f"file://{chips[0]}\n")
    run_batch(inputs=str(listed), out=tmp_path / "urls.jsonl", workers=1)
    (record,) = read_jsonl(tmp_path / "urls.jsonl")
    assert record["file"] == f"file://{chips[0]}" and record["faces"] and record["size"] == chips[0].stat().st_size


def test_predict_json_and_batch_share_the_record(faced: list[Path], tmp_path: Path) -> None:
    chip = faced[0]
    predicted = json.loads(cli("predict", "--json", str(chip)).stdout)
    run_batch(inputs=str(chip), out=tmp_path / "one.jsonl", workers=1)
    (batched,) = read_jsonl(tmp_path / "one.jsonl")
    assert predicted["file"] == str(chip) == batched["file"]
    assert (predicted["error"], predicted["model"]) == (batched["error"], batched["model"])
    face, same = predicted["faces"][0], batched["faces"][0]
    assert face["label"] == same["class"] and {**face, "label": same["label"]} == same


def test_bad_input_and_output_are_one_line_errors(photos: Path, tmp_path: Path) -> None:
    missing = cli("batch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.jsonl"))
    assert missing.returncode == 2 and "bad_batch_input" in missing.stderr and "Traceback" not in missing.stderr
    suffix = cli("batch", str(photos), "--out", str(tmp_path / "x.txt"))
    assert suffix.returncode == 2 and "output format" in suffix.stderr
    foreign = tmp_path / "other.jsonl"
    foreign.write_text("[1, 2]\n")
    with pytest.raises(BatchInputError):
        run_batch(inputs=str(photos / "broken.jpg"), out=foreign)
    foreign_csv = tmp_path / "other.csv"
    foreign_csv.write_text("name,value\n")
    with pytest.raises(BatchInputError):
        run_batch(inputs=str(photos / "broken.jpg"), out=foreign_csv)


def test_missing_ray_names_the_extra(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(MissingExtraError, match=r"facegender\[ray\]"):
        run_batch(inputs=str(photos / "broken.jpg"), out=tmp_path / "x.jsonl", engine="ray")


@pytest.mark.slow
def test_ray_engine_gives_the_local_answers(
    photos: Path, tmp_path: Path, local_run: tuple[subprocess.CompletedProcess[str], Path]
) -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("the [ray] extra is not installed")
    out = tmp_path / "ray.jsonl"
    result = cli("batch", str(photos), "--out", str(out), "--engine", "ray", "--workers", "2", timeout=300)
    assert result.returncode == 0, result.stderr
    ray_records, local_records = by_file(read_jsonl(out)), by_file(read_jsonl(local_run[1]))
    assert ray_records.keys() == local_records.keys()
    for name, local in local_records.items():
        ray = ray_records[name]
        assert [face["class"] for face in ray["faces"]] == [face["class"] for face in local["faces"]], name
        assert [face["box"] for face in ray["faces"]] == [face["box"] for face in local["faces"]], name
        assert ray["error"] == local["error"] and (ray["size"], ray["mtime"]) == (local["size"], local["mtime"])
