"""The orientation classifier: a small network of our own that says whether the face in a chip is upright."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from facegender._onnx import create_session, model_metadata

__all__ = [
    "DEFAULT_ORIENTATION_PATH",
    "ORIENTATION_INPUT_NAME",
    "ORIENTATION_OUTPUT_NAME",
    "QUARTER_TURNS",
    "OrientationClassifier",
]

DEFAULT_ORIENTATION_PATH: Final = Path(str(resources.files("facegender") / "models")) / "orientation.onnx"
ORIENTATION_INPUT_NAME: Final = "chips"
ORIENTATION_OUTPUT_NAME: Final = "quarter_turns"
QUARTER_TURNS: Final = 4
"""The classes: the face in the chip as it would be after 0, 1, 2 or 3 quarter turns (counter-clockwise, as
:func:`numpy.rot90`) of an upright photo."""


class OrientationClassifier:
    """Classifier chips in, the probability that each shows an upright face out.

    The ONNX graph takes the gender classifier's uint8 RGB chips (N, size, size, 3) and shrinks and normalises
    them itself, so the chip size in its metadata is all a caller needs. Made by ``facegender train-orientation``.
    """

    def __init__(self, *, model_path: Path = DEFAULT_ORIENTATION_PATH, threads: int = 0) -> None:
        self._session = create_session(model_path, threads=threads)
        metadata = model_metadata(self._session, model_path, "input_size", "name", "version")
        self.input_size = int(metadata["input_size"])
        self.name = metadata["name"]
        self.version = metadata["version"]

    def upright_probability(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The probability, shape (N,), that each chip of shape (N, size, size, 3) shows an upright face."""
        if chips.ndim != 4 or chips.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"chips must be (N, {self.input_size}, {self.input_size}, 3), not {chips.shape}")
        if not len(chips):
            return np.zeros(0, np.float32)
        turns = self._session.run([ORIENTATION_OUTPUT_NAME], {ORIENTATION_INPUT_NAME: chips})[0]
        return np.asarray(turns[:, 0], dtype=np.float32)
