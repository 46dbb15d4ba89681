"""The validation split's face chips and what is known of each, for the tools that compare models on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facegender.chips import make_chips
from facegender.data import load_dataset

Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class ValidationChips:
    chips: NDArray[np.uint8]
    targets: NDArray[np.int64]
    adult: Mask
    found: Mask

    def correct(self, male: Mask) -> Mask:
        """Which answers (``male``: said "male") are right; a chip whose face the detector missed counts as wrong,
        as in facegender evaluate."""
        return (male == self.targets.astype(bool)) & self.found


def validation_chips(data: Path, *, size: int, cache_dir: Path) -> ValidationChips:
    """The chips of the validation split of ``data`` (the test split plays no part), made as for training."""
    items = [item for item in load_dataset(data) if item.split == "val"]
    chip_set = make_chips([item.path for item in items], size=size, cache_dir=cache_dir)
    return ValidationChips(
        chips=chip_set.chips,
        targets=np.array([item.target for item in items], dtype=np.int64),
        adult=np.array([item.is_adult is True for item in items]),
        found=chip_set.found,
    )
