"""Labelled face datasets: three layouts, one deterministic train/validation/test split.

Layouts, tried in this order:

1. a CSV, ``labels.csv`` in the folder (or the CSV file itself): ``file,gender[,age,race]`` with
   ``file`` relative to the CSV's folder and ``gender`` ``male``/``female`` (or ``1``/``0``);
2. the original service's folders: ``male/`` and ``female/`` (optionally under ``train/``, ``valid/``…);
3. UTKFace file names, ``<age>_<gender>_<race>_<stamp>.jpg`` with gender 0 = male, 1 = female and
   race 0-4 = white, black, asian, indian, other.

The split is by file content: SHA-1 of the bytes, first 8 hex digits as a fraction of 2**32; below
0.8 is train, below 0.9 validation, the rest test. Byte-identical copies therefore always share a
split, the split never changes when files are added or renamed, and anyone can recompute it.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from facegender.errors import DatasetError
from facegender.results import LABELS, GenderLabel

__all__ = [
    "AGE_BANDS",
    "IMAGE_SUFFIXES",
    "LabeledImage",
    "Split",
    "age_band",
    "content_split",
    "load_dataset",
]

Split = Literal["train", "val", "test"]
IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
TRAIN_FRACTION: Final = 0.8
VAL_FRACTION: Final = 0.1
AGE_BANDS: Final = (
    (0, 2, "0-2"),
    (3, 9, "3-9"),
    (10, 17, "10-17"),
    (18, 29, "18-29"),
    (30, 44, "30-44"),
    (45, 59, "45-59"),
    (60, 200, "60+"),
)
_UTK_RACES: Final = ("white", "black", "asian", "indian", "other")
_UTK_NAME: Final = re.compile(r"^(\d+)_([01])_([0-4])_")


@dataclass(frozen=True, slots=True)
class LabeledImage:
    """One labelled photo; ``age`` and ``race`` are ``None`` where the layout does not give them."""

    path: Path
    label: GenderLabel
    split: Split
    age: int | None = None
    race: str | None = None

    @property
    def target(self) -> int:
        return LABELS.index(self.label)

    @property
    def is_adult(self) -> bool | None:
        return None if self.age is None else self.age >= 18


def content_split(data: bytes) -> Split:
    """The split a file belongs to, from its bytes alone."""
    fraction = int(hashlib.sha1(data).hexdigest()[:8], 16) / 2**32
    if fraction < TRAIN_FRACTION:
        return "train"
    return "val" if fraction < TRAIN_FRACTION + VAL_FRACTION else "test"


def age_band(age: int | None) -> str | None:
    if age is None:
        return None
    return next(name for low, high, name in AGE_BANDS if low <= age <= high)


def load_dataset(root: Path) -> list[LabeledImage]:
    """Read a dataset in any supported layout, sorted by path.

    Raises:
        DatasetError: the folder is missing, empty, or its labels cannot be read.
    """
    if root.is_file() and root.suffix.lower() == ".csv":
        items = _from_csv(root)
    elif not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    elif (root / "labels.csv").is_file():
        items = _from_csv(root / "labels.csv")
    elif any(root.rglob("male")) or any(root.rglob("female")):
        items = _from_class_folders(root)
    else:
        items = _from_utkface_names(root)
    if not items:
        raise DatasetError(f"no labelled images found in {root}")
    return sorted(items, key=lambda item: item.path)


def _labeled(path: Path, label: GenderLabel, *, age: int | None = None, race: str | None = None) -> LabeledImage:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    return LabeledImage(path=path, label=label, split=content_split(data), age=age, race=race)


def _parse_gender(value: str, where: str) -> GenderLabel:
    normalised = value.strip().lower()
    mapping: dict[str, GenderLabel] = {
        "male": "male",
        "m": "male",
        "1": "male",
        "female": "female",
        "f": "female",
        "0": "female",
    }
    if normalised not in mapping:
        raise DatasetError(f"{where}: gender must be male or female, not {value!r}")
    return mapping[normalised]


def _from_csv(path: Path) -> list[LabeledImage]:
    base = path.parent
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    if rows and not {"file", "gender"} <= set(rows[0]):
        raise DatasetError(f"{path} needs the columns file and gender")
    items: list[LabeledImage] = []
    for number, row in enumerate(rows, start=2):
        where = f"{path.name} line {number}"
        age_text = (row.get("age") or "").strip()
        items.append(
            _labeled(
                base / row["file"],
                _parse_gender(row["gender"], where),
                age=int(age_text) if age_text.isdigit() else None,
                race=(row.get("race") or "").strip() or None,
            )
        )
    return items


def _images_under(folder: Path) -> Iterable[Path]:
    return (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _from_class_folders(root: Path) -> list[LabeledImage]:
    items: list[LabeledImage] = []
    for label in LABELS:
        for folder in (p for p in root.rglob(label) if p.is_dir()):
            items.extend(_labeled(path, label) for path in _images_under(folder))
    return items


def _from_utkface_names(root: Path) -> list[LabeledImage]:
    items: list[LabeledImage] = []
    for path in _images_under(root):
        match = _UTK_NAME.match(path.name)
        if match:
            age, gender, race = match.groups()
            label: GenderLabel = "male" if gender == "0" else "female"
            items.append(_labeled(path, label, age=int(age), race=_UTK_RACES[int(race)]))
    return items
