"""What a training run is asked to do; free of PyTorch, so the command line can read its defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "FROZEN_LAYERS",
    "ORIENTATION_EPOCHS",
    "TUNING_BATCH_SIZE",
    "TUNING_EPOCHS",
    "TUNING_LEARNING_RATE",
    "Precision",
    "TrainConfig",
]

# The stem convolution and the first block keep their ImageNet filters (generic edges and colours). Training
# from the second block on (1.2.0) beat training from the fourth stage on (1.1.0) on validation, at 1.6 times
# the time per epoch: about an hour on two CPU cores.
FROZEN_LAYERS = 2

# dlib's network tuned for gender (facegender tune-second-opinion): of 5e-6, 1e-5 and 2e-5, 5e-6 gave the second
# opinion the fewest validation mistakes (runs of 2026-11-27; none beat dlib's untuned network, MODEL_CARD.md).
TUNING_EPOCHS = 10
TUNING_BATCH_SIZE = 64
TUNING_LEARNING_RATE = 5e-6

# facegender train-orientation: a small network on an easy task.
ORIENTATION_EPOCHS = 8

Precision = Literal["float32", "bfloat16"]
"""The arithmetic of training steps. ``bfloat16`` runs them in mixed precision (weights, batch-norm statistics
and the optimiser stay float32) on channels-last tensors, the layout oneDNN's bfloat16 kernels work in: an
epoch took 0.6 times as long on this project's two-core AVX-512 BF16 machine. Validation and export are float32."""


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    out: Path
    epochs: int = 10
    batch_size: int = 64
    image_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    limit: int | None = None
    pretrained: bool = True
    initial_weights: Path | None = None
    """A ``gender.pt`` that an earlier run wrote, to start from instead of ImageNet's weights: to fine-tune a
    trained model. Its backbone and gender head must fit; heads for second tasks start afresh where it lacks them.
    Its batch normalisations keep their statistics throughout (their scale and shift still learn)."""
    cache_dir: Path | None = None
    model_version: str = "1.2.0"
    frozen_layers: int = FROZEN_LAYERS
    precision: Precision = "float32"
    age_weight: float = 0.0
    """The weight of age as a second training task where the data gives ages (0: none). Its loss is added to the
    gender loss, and so to the train loss of the log; the age head is not exported."""
    noise_share: float = 0.0
    """The share of training chips given Gaussian pixel noise (sensor noise of dim or small photos; 0: none)."""
    noise_sigma: float = 16.0
    """The strongest of that noise, in grey levels of 255: each chip's sigma is drawn from an eighth of it to it."""
    turned_share: float = 0.0
    """The share of training chips turned by a quarter, a half or three quarters of a turn (0: none). A photo that
    lost its orientation brings its faces to the classifier on their side or upside down: the detector finds them,
    but the chip is turned only to level the eyes, by at most a quarter turn (``facegender.align``)."""
    teacher: Path | None = None
    """Soft targets for distillation (``tools/teacher_probabilities.py`` writes them): an ``.npz`` with ``names``
    (file names) and ``male`` (the probability that teacher models give each training chip)."""
    teacher_weight: float = 0.0
    """The share of the training loss that is the cross-entropy with the teacher's probabilities (0: none); the
    rest is the cross-entropy with the labels. Needs ``teacher``."""
    self_distillation: float = 0.0
    """The share of each training chip's target taken, by the last epoch, from the model's own answer to that chip
    in the epoch before (progressive self-knowledge distillation, Kim et al., 2021; 0: none): growing from 0 in the
    first epoch, it teaches the model the doubt it came to have about a chip, at no extra cost per step."""
    descriptors: Path | None = None
    """Face descriptors of another model (``tools/face_descriptors.py`` writes them): an ``.npz`` with ``names``
    (file names) and ``descriptors`` (one row per image)."""
    descriptor_weight: float = 0.0
    """The weight of regressing each training chip's face descriptor as a second task (0: none). Its loss, one
    minus the cosine similarity, is added to the gender loss; the descriptor head is not exported."""
