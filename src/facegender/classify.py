"""The gender classifier: our own trained network, exported to ONNX and run on onnxruntime."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from facegender._onnx import create_session
from facegender.errors import ModelError
from facegender.results import LABELS

__all__ = ["CLASSIFIER_INPUT_NAME", "CLASSIFIER_OUTPUT_NAME", "DEFAULT_CLASSIFIER_PATH", "GenderClassifier"]

DEFAULT_CLASSIFIER_PATH: Final = Path(str(resources.files("facegender") / "models" / "gender.onnx"))
CLASSIFIER_INPUT_NAME: Final = "chips"
CLASSIFIER_OUTPUT_NAME: Final = "probabilities"


class GenderClassifier:
    """Face chips in, calibrated (female, male) probabilities out.

    The ONNX graph takes uint8 RGB chips (N, size, size, 3) and does its own normalisation, mirror
    averaging and temperature scaling, so the chip size in its metadata is all a caller needs.
    """

    def __init__(self, *, model_path: Path = DEFAULT_CLASSIFIER_PATH, threads: int = 0, max_batch: int = 64) -> None:
        self._session = create_session(model_path, threads=threads)
        metadata = self._session.get_modelmeta().custom_metadata_map
        try:
            self.input_size = int(metadata["input_size"])
            self.name = str(metadata["name"])
            self.version = str(metadata["version"])
            labels = tuple(metadata["labels"].split(","))
        except (KeyError, ValueError):
            raise ModelError(
                f"{model_path.name} lacks facegender metadata (input_size, name, version, labels)"
            ) from None
        if labels != LABELS:
            raise ModelError(f"{model_path.name} has labels {labels}, expected {LABELS}")
        self.max_batch = max_batch

    def predict(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Probabilities, shape (N, 2), for chips of shape (N, size, size, 3)."""
        if chips.ndim != 4 or chips.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"chips must be (N, {self.input_size}, {self.input_size}, 3), not {chips.shape}")
        outputs = [
            self._session.run([CLASSIFIER_OUTPUT_NAME], {CLASSIFIER_INPUT_NAME: chips[start : start + self.max_batch]})[
                0
            ]
            for start in range(0, len(chips), self.max_batch)
        ]
        return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0, 2), np.float32)
