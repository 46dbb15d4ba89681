"""dlib's face-recognition network tuned to tell gender, for the second opinion.

    facegender tune-second-opinion --data ../shared/data/utkface --out runs/tuned/dlib-gender.npz
    facegender second-opinion --network runs/tuned/dlib-gender.npz ...

dlib's network learnt to tell people apart; a linear probe reads gender from its 128 numbers with about 92%
accuracy on our chips. Here every one of its weights trains further, on the train split's chips (made by
:mod:`facegender.chips`, augmented as the gender model's are by
:func:`~facegender.training.train.augment_chips`), with a linear head on the descriptor that starts as that
probe. The head is dropped afterwards: the network is saved as a :class:`DlibNetwork`, and
``facegender second-opinion --network`` fits its probe and stack as it does for dlib's own. Needs the ``[train]``
extra (PyTorch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional

from facegender.chips import make_chips
from facegender.data import load_dataset
from facegender.errors import DatasetError
from facegender.training.config import TUNING_BATCH_SIZE, TUNING_EPOCHS, TUNING_LEARNING_RATE
from facegender.training.logistic import fit_logistic
from facegender.training.second_opinion import (
    DLIB_NETWORK_FILE,
    DlibAffine,
    DlibConvolution,
    DlibNetwork,
    DlibPool,
    descriptor_crop_side,
    dlib_models_folder,
    dlib_structure,
    load_dlib_network,
    save_dlib_network,
)
from facegender.training.train import augment_chips, optimisation_step, unit_chips

__all__ = ["DlibGenderNet", "TuningRecord", "tune_dlib_network", "tune_second_opinion_network"]


class DlibGenderNet(nn.Module):
    """dlib's network (:func:`~facegender.training.second_opinion.dlib_structure`) in PyTorch with every weight
    trainable, and a gender head on its descriptor. Takes chips (N, 3, side, side), RGB on 0-1 as
    :func:`~facegender.training.train.augment_chips` gives them, and sees their centre ``crop_side`` pixels
    resized to the network's input size, as :func:`~facegender.training.second_opinion.chip_descriptor_model`
    does; gives the log-odds of male."""

    means: torch.Tensor

    def __init__(self, network: DlibNetwork, *, crop_side: int) -> None:
        super().__init__()
        self.network = network  # the template: its pools and strides, and the layers' order
        self.structure = dlib_structure(network)
        self.crop_side = crop_side
        self.layer_weights = nn.ParameterDict()
        for index, layer in enumerate(network.layers):
            if isinstance(layer, DlibConvolution):
                self.layer_weights[f"{index}_weights"] = _parameter(layer.weights)
                self.layer_weights[f"{index}_bias"] = _parameter(layer.bias)
            elif isinstance(layer, DlibAffine):
                self.layer_weights[f"{index}_gamma"] = _parameter(layer.gamma)
                self.layer_weights[f"{index}_beta"] = _parameter(layer.beta)
        self.projection = _parameter(network.projection)
        self.head = nn.Linear(network.projection.shape[1], 1)
        self.register_buffer("means", torch.tensor(network.channel_means, dtype=torch.float32).view(1, 3, 1, 1))

    def descriptors(self, chips: torch.Tensor) -> torch.Tensor:
        start = (chips.shape[-1] - self.crop_side) // 2
        x = chips[..., start : start + self.crop_side, start : start + self.crop_side] * 255
        size = self.network.input_size
        x = functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = (x - self.means) / 256
        x = functional.relu(self._convolve(x, self.structure.stem))
        x = self._pool(x, self.structure.stem_pool)
        for block in self.structure.blocks:
            branch = self._convolve(functional.relu(self._convolve(x, block.first)), block.second)
            if block.shortcut_pool is not None:
                x = self._pool(x, block.shortcut_pool)
            x = functional.relu(_add_where_they_overlap(x, branch))
        descriptors: torch.Tensor = x.mean(dim=(2, 3)) @ self.projection
        return descriptors

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        log_odds: torch.Tensor = self.head(self.descriptors(chips)).squeeze(1)
        return log_odds

    def _convolve(self, x: torch.Tensor, pair: tuple[int, int]) -> torch.Tensor:
        convolution, affine = pair
        layer = self.network.layers[convolution]
        assert isinstance(layer, DlibConvolution)  # by dlib_structure
        weights = self.layer_weights
        x = functional.conv2d(
            x, weights[f"{convolution}_weights"], weights[f"{convolution}_bias"], layer.stride, layer.padding
        )
        scaled: torch.Tensor = x * weights[f"{affine}_gamma"].view(1, -1, 1, 1) + weights[f"{affine}_beta"].view(
            1, -1, 1, 1
        )
        return scaled

    def _pool(self, x: torch.Tensor, index: int) -> torch.Tensor:
        layer = self.network.layers[index]
        assert isinstance(layer, DlibPool)  # by dlib_structure
        if layer.kind == "max":
            return functional.max_pool2d(x, layer.size, layer.stride, layer.padding)
        return functional.avg_pool2d(x, layer.size, layer.stride, layer.padding, count_include_pad=False)

    def to_network(self) -> DlibNetwork:
        """The network with the weights as trained; the head is left out."""

        def array(name: str) -> NDArray[np.float32]:
            return np.asarray(self.layer_weights[name].detach().float().cpu().numpy(), dtype=np.float32)

        layers: list[DlibConvolution | DlibAffine | DlibPool] = []
        for index, layer in enumerate(self.network.layers):
            if isinstance(layer, DlibConvolution):
                layers.append(
                    DlibConvolution(array(f"{index}_weights"), array(f"{index}_bias"), layer.stride, layer.padding)
                )
            elif isinstance(layer, DlibAffine):
                layers.append(DlibAffine(array(f"{index}_gamma"), array(f"{index}_beta")))
            else:
                layers.append(layer)
        projection = self.projection.detach().float().cpu().numpy()
        return DlibNetwork(self.network.channel_means, self.network.input_size, tuple(layers), projection)


def _parameter(values: NDArray[np.float32]) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.array(values, dtype=np.float32)))


def _add_where_they_overlap(shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """dlib's residual addition: where the two differ in channels or size, the rest of the larger is kept."""
    target = [max(a, b) for a, b in zip(shortcut.shape[1:], branch.shape[1:], strict=True)]

    def widen(x: torch.Tensor) -> torch.Tensor:
        channels, rows, columns = (t - s for t, s in zip(target, x.shape[1:], strict=True))
        return functional.pad(x, (0, columns, 0, rows, 0, channels)) if channels or rows or columns else x

    return widen(shortcut) + widen(branch)


@dataclass(frozen=True)
class TuningRecord:
    """One epoch of tuning: the mean loss and accuracy on the augmented train chips, and the accuracy on the
    validation chips where they were given."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None
    seconds: float


def tune_dlib_network(
    *,
    network: DlibNetwork,
    chips: NDArray[np.uint8],
    targets: NDArray[np.int64],
    crop_side: int,
    validation: tuple[NDArray[np.uint8], NDArray[np.int64]] | None = None,
    epochs: int = TUNING_EPOCHS,
    batch_size: int = TUNING_BATCH_SIZE,
    learning_rate: float = TUNING_LEARNING_RATE,
    seed: int = 0,
    log: Callable[[TuningRecord], None] | None = None,
) -> DlibNetwork:
    """``network`` trained further to tell gender on ``chips`` (N, side, side, 3, uint8 RGB; the centre
    ``crop_side`` pixels are what it sees, the rest is room for augmentation to move the face) with ``targets``
    (1 for male). The head starts as a logistic regression on the untuned descriptors, the network's weights
    as they are; all then train together for ``epochs`` with the one-cycle schedule, in bfloat16 on a GPU. The
    last epoch's weights are returned: ``validation``, if given, is only scored, for the log.

    Raises:
        DatasetError: no chips, or chips smaller than ``crop_side``.
    """
    if len(chips) == 0 or chips.shape[1] < crop_side:
        raise DatasetError(f"tuning needs chips of at least {crop_side} px, got {chips.shape}")
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = DlibGenderNet(network, crop_side=crop_side).to(device)
    images = torch.from_numpy(chips)
    labels = torch.from_numpy(targets.astype(np.int64))

    probe = fit_logistic(
        _outputs(model, images, device, batch_size, head=False).astype(np.float64), targets.astype(np.float64)
    )
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(probe[:-1]).view(1, -1))
        model.head.bias.fill_(float(probe[-1]))

    # The head learns ten times as fast as the network: dlib's weights are small (a standard deviation of about
    # 0.01, scaled up by the affine layers after them), and Adam moves each by about the learning rate a step.
    backbone = [parameter for name, parameter in model.named_parameters() if not name.startswith("head.")]
    groups = [{"params": backbone, "lr": learning_rate}, {"params": model.head.parameters(), "lr": learning_rate * 10}]
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, weight_decay=0.0)
    steps = epochs * math.ceil(len(images) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[learning_rate, learning_rate * 10], total_steps=max(1, steps), pct_start=0.15
    )
    generator = torch.Generator().manual_seed(seed)
    mixed = device.type == "cuda"  # bfloat16 where it is fast; float32 on the CPU, for the tests
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(images), generator=generator)
        seen, loss_sum, correct = 0, 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x = augment_chips(
                unit_chips(images[index], device), generator, noise_share=0.0, noise_sigma=0.0, turned_share=0.0
            )
            y = labels[index].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
                log_odds = model(x)
            loss = functional.binary_cross_entropy_with_logits(log_odds.float(), y.float())
            seen += len(index)
            loss_sum += optimisation_step(loss, optimizer, scheduler) * len(index)
            correct += int(((log_odds > 0).long() == y).sum())
        val_accuracy = None
        if validation is not None:
            val_log_odds = _outputs(model, torch.from_numpy(validation[0]), device, batch_size, head=True)
            val_accuracy = float(((val_log_odds > 0).astype(np.int64) == validation[1]).mean())
        if log:
            log(TuningRecord(epoch, loss_sum / seen, correct / seen, val_accuracy, time.perf_counter() - started))
    return model.to_network()


def tune_second_opinion_network(
    *,
    data: Path,
    out: Path,
    chip_size: int,
    network: Path | None = None,
    epochs: int = TUNING_EPOCHS,
    learning_rate: float = TUNING_LEARNING_RATE,
    batch_size: int = TUNING_BATCH_SIZE,
    seed: int = 0,
    cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[TuningRecord], None] | None = None,
) -> Path:
    """Tune ``network`` (default: dlib's own) by :func:`tune_dlib_network` on the train split of ``data``, on
    chips of the gender model's ``chip_size``, and save it to ``out`` (``.npz``). Chips without a face found are
    left out; the validation split is scored each epoch, for the log only.

    Raises:
        DatasetError: ``data`` has no training images with a face found.
        ModelError: ``network`` is not a dlib network.
        MissingExtraError: no ``network`` given and dlib's models are not installed.
    """
    start = load_dlib_network(network or dlib_models_folder() / DLIB_NETWORK_FILE)
    items = load_dataset(data)
    items = [item for item in items if item.split == "train"] + [item for item in items if item.split == "val"]
    chips = make_chips([item.path for item in items], size=chip_size, cache_dir=cache_dir, progress=progress)
    targets = np.array([item.target for item in items], dtype=np.int64)
    is_train = np.array([item.split == "train" for item in items]) & chips.found
    is_val = np.array([item.split == "val" for item in items]) & chips.found
    if not is_train.any():
        raise DatasetError(f"{data} has no training images with a face found")
    tuned = tune_dlib_network(
        network=start,
        chips=chips.chips[is_train],
        targets=targets[is_train],
        crop_side=descriptor_crop_side(chip_size),
        validation=(chips.chips[is_val], targets[is_val]) if is_val.any() else None,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
        log=log,
    )
    save_dlib_network(tuned, out)
    return out


def _outputs(
    model: DlibGenderNet, images: torch.Tensor, device: torch.device, batch_size: int, *, head: bool
) -> NDArray[np.float32]:
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size * 4):
            x = unit_chips(images[start : start + batch_size * 4], device)
            outputs.append((model(x) if head else model.descriptors(x)).float().cpu().numpy())
    return np.concatenate(outputs)
