"""The gender classifier: our own trained network, exported to ONNX and run on onnxruntime."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from facegender._onnx import create_session, model_metadata
from facegender.errors import ModelError
from facegender.results import LABELS

__all__ = [
    "CLASSIFIER_INPUT_NAME",
    "CLASSIFIER_OUTPUT_NAME",
    "DEFAULT_CLASSIFIER_PATH",
    "FLOAT_CLASSIFIER_PATH",
    "SECOND_OPINION_PATH",
    "GenderClassifier",
]

_MODELS: Final = Path(str(resources.files("facegender") / "models"))
FLOAT_CLASSIFIER_PATH: Final = _MODELS / "gender.onnx"
"""The trained model, as exported: float32 arithmetic (weights stored as float16)."""
SECOND_OPINION_PATH: Final = _MODELS / "gender-second-opinion.onnx"
"""The float model joined by dlib's face descriptor (``facegender second-opinion``): it answers the chips the
shipped model is unsure of."""
DEFAULT_CLASSIFIER_PATH: Final = _MODELS / "gender-int8.onnx"
"""The shipped model: an int8 first stage made from ``FLOAT_CLASSIFIER_PATH`` by ``facegender quantize``,
which refers its unsure chips to ``SECOND_OPINION_PATH`` (see :class:`GenderClassifier`)."""
CLASSIFIER_INPUT_NAME: Final = "chips"
CLASSIFIER_OUTPUT_NAME: Final = "probabilities"


class GenderClassifier:
    """Face chips in, calibrated (female, male) probabilities out.

    The ONNX graph takes uint8 RGB chips (N, size, size, 3) and does its own normalisation, mirror
    averaging (the shipped int8 stage skips it, for half the work) and temperature scaling, so the chip size
    in its metadata is all a caller needs.

    A fast model (``facegender quantize``) may name, in its metadata, a slower model (``refine_with``, a path
    relative to its own folder: the float model it came from, or that model with a second opinion) and a margin
    (``refine_margin``): the chips whose top probability it puts below 0.5 + margin are classified again by the
    slower model, whose answer stands. The fast model's probabilities differ from the float model's by about
    0.02 on average, so only the few chips near the boundary pay for both models, and those get the better
    answer. ``refine=False`` loads the fast model alone. ``compact=True`` makes a smaller session (see
    :func:`~facegender._onnx.create_session`): the slower model is loaded so, as it runs on about one chip
    in sixteen.
    """

    def __init__(
        self,
        *,
        model_path: Path = DEFAULT_CLASSIFIER_PATH,
        threads: int = 0,
        max_batch: int = 64,
        refine: bool = True,
        compact: bool = False,
    ) -> None:
        self._session = create_session(model_path, threads=threads, compact=compact)
        metadata = model_metadata(self._session, model_path, "input_size", "name", "version", "labels")
        self.input_size = int(metadata["input_size"])
        self.name = metadata["name"]
        self.version = metadata["version"]
        labels = tuple(metadata["labels"].split(","))
        if labels != LABELS:
            raise ModelError(f"{model_path.name} has labels {labels}, expected {LABELS}")
        self.max_batch = max_batch
        self.refiner: GenderClassifier | None = None
        self.refine_margin = 0.0
        if refine and "refine_with" in metadata:
            refiner_path = model_path.parent / metadata["refine_with"]
            self.refiner = GenderClassifier(model_path=refiner_path, threads=threads, max_batch=max_batch, compact=True)
            made_with = metadata.get("refine_with_sha256")
            if made_with and hashlib.sha256(refiner_path.read_bytes()).hexdigest() != made_with:
                raise ModelError(
                    f"{model_path.name} was made from another {refiner_path.name}: run facegender quantize again"
                )
            if self.refiner.input_size != self.input_size:
                raise ModelError(f"{refiner_path.name} takes {self.refiner.input_size} px chips, not {self.input_size}")
            try:
                self.refine_margin = float(metadata["refine_margin"])
            except (KeyError, ValueError):
                raise ModelError(f"{model_path.name} names a model to refine with but no refine_margin") from None

    def predict(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Probabilities, shape (N, 2), for chips of shape (N, size, size, 3)."""
        if chips.ndim != 4 or chips.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"chips must be (N, {self.input_size}, {self.input_size}, 3), not {chips.shape}")
        probabilities = self._run(chips)
        if self.refiner is not None and len(chips):
            unsure = np.flatnonzero(self.unsure(probabilities))
            if len(unsure):
                probabilities[unsure] = self.refiner.predict(chips[unsure])
        return probabilities

    def unsure(self, probabilities: NDArray[np.float32]) -> NDArray[np.bool_]:
        """Which rows of this model's own probabilities the refining model classifies again."""
        return np.asarray(probabilities.max(axis=1) < 0.5 + self.refine_margin)

    def _run(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        outputs = [
            self._session.run([CLASSIFIER_OUTPUT_NAME], {CLASSIFIER_INPUT_NAME: chips[start : start + self.max_batch]})[
                0
            ]
            for start in range(0, len(chips), self.max_batch)
        ]
        return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0, 2), np.float32)
