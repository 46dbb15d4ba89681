"""Dataset layouts and the content-hash split."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from facegender.data import age_band, content_split, load_dataset
from facegender.errors import DatasetError


@pytest.fixture(scope="module")
def utk_sample(shared_data: Path) -> list[Path]:
    images = sorted((shared_data / "utkface" / "images").glob("*.jpg"))
    return images[:: len(images) // 40][:40]


def test_split_depends_only_on_bytes() -> None:
    assert content_split(b"same bytes") == content_split(b"same bytes")
    splits = [content_split(str(i).encode()) for i in range(5000)]
    assert 0.77 < splits.count("train") / 5000 < 0.83
    assert 0.08 < splits.count("val") / 5000 < 0.12
    assert 0.08 < splits.count("test") / 5000 < 0.12


def test_utkface_csv_is_read_deterministically(shared_data: Path) -> None:
    first = load_dataset(shared_data / "utkface")
    second = load_dataset(shared_data / "utkface")
    assert first == second
    assert len(first) == 21258
    assert {item.label for item in first} == {"male", "female"}
    assert {item.race for item in first} == {"white", "black", "asian", "indian", "other"}


def test_identical_files_share_a_split(shared_data: Path) -> None:
    items = load_dataset(shared_data / "utkface")
    by_content: dict[bytes, set[str]] = {}
    for item in items[:3000]:
        by_content.setdefault(item.path.read_bytes(), set()).add(item.split)
    assert all(len(splits) == 1 for splits in by_content.values())


def test_class_folders_and_utkface_names_agree(tmp_path: Path, utk_sample: list[Path]) -> None:
    named = tmp_path / "named"
    folders = tmp_path / "folders"
    named.mkdir()
    for path in utk_sample:
        shutil.copy(path, named / path.name)
        gender = "male" if path.name.split("_")[1] == "0" else "female"
        (folders / "train" / gender).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folders / "train" / gender / path.name)
    from_names = {item.path.name: (item.label, item.split, item.age, item.race) for item in load_dataset(named)}
    from_folders = {item.path.name: (item.label, item.split) for item in load_dataset(folders)}
    assert len(from_names) == len(utk_sample)
    assert {name: value[:2] for name, value in from_names.items()} == from_folders
    assert all(age is not None and race is not None for _, _, age, race in from_names.values())


def test_csv_with_numeric_gender(tmp_path: Path, utk_sample: list[Path]) -> None:
    shutil.copy(utk_sample[0], tmp_path / "a.jpg")
    (tmp_path / "labels.csv").write_text("file,gender\na.jpg,1\n")
    (item,) = load_dataset(tmp_path)
    assert item.label == "male"
    assert item.age is None


@pytest.mark.parametrize(
    ("content", "message"),
    [("file,gender\na.jpg,robot\n", "gender must be"), ("name,sex\na.jpg,male\n", "needs the columns")],
)
def test_bad_csv_raises_dataset_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path)


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        load_dataset(tmp_path / "absent")
    with pytest.raises(DatasetError):
        load_dataset(tmp_path)


@pytest.mark.parametrize(
    ("age", "band"),
    [(0, "0-2"), (2, "0-2"), (9, "3-9"), (17, "10-17"), (18, "18-29"), (59, "45-59"), (60, "60+"), (None, None)],
)
def test_age_bands(age: int | None, band: str | None) -> None:
    assert age_band(age) == band
