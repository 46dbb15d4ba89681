"""Train the orientation classifier on chips cut from photos turned by quarter turns, and export it to ONNX."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from facegender.chips import make_chips
from facegender.data import LabeledImage, load_dataset
from facegender.errors import DatasetError
from facegender.orientation import ORIENTATION_INPUT_NAME, ORIENTATION_OUTPUT_NAME, QUARTER_TURNS
from facegender.training.config import ORIENTATION_EPOCHS
from facegender.training.float16 import export_chip_model
from facegender.training.train import EpochRecord, optimisation_step, uniform

__all__ = ["OrientationNet", "OrientationResult", "train_orientation"]

_SHRINK = 2
"""The network sees the classifier's chip shrunk this many times: which way up a face is shows at any size."""


class OrientationNet(nn.Module):
    """uint8-valued NHWC chips in, logits of the four quarter turns out; shrinks and normalises the chips itself,
    so that training and the exported graph prepare them one way."""

    def __init__(self) -> None:
        super().__init__()
        widths = (3, 16, 32, 64, 128)
        layers: list[nn.Module] = []
        for inputs, outputs in pairwise(widths):
            layers += [nn.Conv2d(inputs, outputs, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(outputs)]
            layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(widths[-1], QUARTER_TURNS)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = functional.avg_pool2d(chips.float().permute(0, 3, 1, 2), _SHRINK)
        logits: torch.Tensor = self.head(self.features((x / 255 - 0.5) / 0.25))
        return logits


class _Exportable(nn.Module):
    """The network with softmax: the probabilities of the four quarter turns."""

    def __init__(self, net: OrientationNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return functional.softmax(self.net(chips), dim=1)


@dataclass
class OrientationResult:
    model_path: Path
    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def train_orientation(
    *,
    data: Path,
    out: Path,
    chip_size: int,
    epochs: int = ORIENTATION_EPOCHS,
    batch_size: int = 256,
    learning_rate: float = 4e-3,
    seed: int = 0,
    limit: int | None = None,
    model_version: str = "1.0.0",
    cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> OrientationResult:
    """Train on the train split's photos, each turned by 0 to 3 quarter turns and cut into the classifier's chip by
    the serving pipeline's own detector and alignment; keep the epoch best on the validation split's; write
    ``orientation.onnx`` and ``orientation.json`` to ``out``. ``limit`` keeps that many photos (a smoke test)."""
    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    items = [item for item in load_dataset(data) if item.split in ("train", "val")][:limit]
    chips, turns, splits = _turned_chips(items, chip_size=chip_size, cache_dir=cache_dir, progress=progress)
    train_index = np.flatnonzero(splits == "train")
    val_index = np.flatnonzero(splits == "val")
    counts = {"train": len(train_index), "val": len(val_index)}
    if len(train_index) == 0:
        raise DatasetError("no training images with a detectable face")
    if len(val_index) == 0:  # tiny smoke-test sets: choose the epoch on what there is
        val_index = train_index
    net = OrientationNet()
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train_index) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max(1, steps))
    generator = torch.Generator().manual_seed(seed)
    history: list[EpochRecord] = []
    best_state, best_accuracy, best_epoch = None, -1.0, 0
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        net.train()
        order = torch.from_numpy(train_index)[torch.randperm(len(train_index), generator=generator)]
        seen, loss_sum, correct = 0, 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x, y = _augmented(chips[index], turns[index], generator)
            logits = net(x)
            loss = functional.cross_entropy(logits, y)
            seen += len(index)
            loss_sum += optimisation_step(loss, optimizer, scheduler) * len(index)
            correct += int((logits.argmax(1) == y).sum())
        val_loss, val_accuracy = _scores(net, chips[val_index], turns[val_index], batch_size)
        record = EpochRecord(
            epoch, loss_sum / seen, correct / seen, val_loss, val_accuracy, time.perf_counter() - started
        )
        history.append(record)
        if log:
            log(record.line())
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch = val_accuracy, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    assert best_state is not None
    net.load_state_dict(best_state)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "orientation.onnx"
    _export(net, model_path, chip_size=chip_size, model_version=model_version, trained_on=data.name)
    summary = {
        "seed": seed,
        "epochs": epochs,
        "best_epoch": best_epoch,
        "counts": counts,
        "history": [asdict(record) for record in history],
    }
    (out / "orientation.json").write_text(json.dumps(summary, indent=2) + "\n")
    return OrientationResult(model_path, best_epoch, history, counts)


def _turned_chips(
    items: list[LabeledImage], *, chip_size: int, cache_dir: Path | None, progress: Callable[[int], None] | None
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The chip of each photo's largest face after each quarter turn, where one is found, with its turns and split."""
    paths = [item.path for item in items]
    splits = np.array([item.split for item in items])
    chips, turns, kept_splits = [], [], []
    for quarter_turns in range(QUARTER_TURNS):
        chip_set = make_chips(
            paths, size=chip_size, cache_dir=cache_dir, quarter_turns=quarter_turns, progress=progress
        )
        chips.append(torch.from_numpy(chip_set.chips[chip_set.found]))
        turns.append(torch.full((int(chip_set.found.sum()),), quarter_turns))
        kept_splits.append(splits[chip_set.found])
    return torch.cat(chips), torch.cat(turns), np.concatenate(kept_splits)


def _augmented(
    chips: torch.Tensor, turns: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the chips mirrored (:func:`_mirror_half`), each reframed (:func:`_reframed`), and its brightness and
    contrast changed."""
    x, y = _mirror_half(chips.float(), turns, generator)
    x = _reframed(x, generator)
    contrast = 0.6 + 0.8 * torch.rand(len(x), 1, 1, 1, generator=generator)
    brightness = 40 * torch.randn(len(x), 1, 1, 1, generator=generator)
    return ((x - 128) * contrast + 128 + brightness).clamp(0, 255), y


def _reframed(chips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each NHWC chip zoomed (0.85 to 1.35 times), moved (up to a tenth of its side) and tilted (up to 20 degrees
    either way), its edge pixels repeated where it then reaches past them, as face_chip pads: UTKFace's chips frame
    faces alike, where photos bring faces framed closer, cut by the photo's edge, or tilted; none of it changes
    which way up the face is."""
    count = len(chips)
    angle = torch.deg2rad(uniform(generator, -20.0, 20.0, count))
    shrink = 1 / uniform(generator, 0.85, 1.35, count)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) * shrink
    theta[:, 0, 1] = -torch.sin(angle) * shrink
    theta[:, 1, 0] = torch.sin(angle) * shrink
    theta[:, :, 2] = uniform(generator, -0.2, 0.2, count, 2)
    images = chips.permute(0, 3, 1, 2)
    grid = functional.affine_grid(theta, list(images.shape), align_corners=False)
    moved = functional.grid_sample(images, grid, padding_mode="border", align_corners=False)
    return moved.permute(0, 2, 3, 1)


def _mirror_half(
    chips: torch.Tensor, turns: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """About half the NHWC chips mirrored, with their turns: a face turned by k quarter turns, mirrored, is the
    mirror image turned by -k."""
    x, y = chips.clone(), turns.clone()
    mirrored = torch.rand(len(x), generator=generator) < 0.5
    x[mirrored] = x[mirrored].flip(2)
    y[mirrored] = (QUARTER_TURNS - y[mirrored]) % QUARTER_TURNS
    return x, y


def _scores(net: OrientationNet, chips: torch.Tensor, turns: torch.Tensor, batch_size: int) -> tuple[float, float]:
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(chips[start : start + batch_size]) for start in range(0, len(chips), batch_size)])
    return float(functional.cross_entropy(logits, turns)), float((logits.argmax(1) == turns).float().mean())


def _export(net: OrientationNet, path: Path, *, chip_size: int, model_version: str, trained_on: str) -> None:
    metadata = {
        "name": "facegender-orientation",
        "version": model_version,
        "input_size": str(chip_size),
        "trained_on": trained_on,
    }
    export_chip_model(
        _Exportable(net),
        path,
        chip_size=chip_size,
        input_name=ORIENTATION_INPUT_NAME,
        output_name=ORIENTATION_OUTPUT_NAME,
        metadata=metadata,
    )
