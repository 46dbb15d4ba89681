"""Train the gender network on face chips, calibrate it, and export it to ONNX."""

from __future__ import annotations

import json
import math
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional
from tqdm import tqdm

from facegender.chips import make_chips
from facegender.classify import CLASSIFIER_INPUT_NAME, CLASSIFIER_OUTPUT_NAME
from facegender.data import LabeledImage, load_dataset
from facegender.errors import DatasetError, ModelError
from facegender.results import LABELS
from facegender.training.config import Precision, TrainConfig
from facegender.training.float16 import export_chip_model
from facegender.training.network import GenderNet, imagenet_weights_path

__all__ = [
    "EpochRecord",
    "Precision",
    "TrainConfig",
    "TrainResult",
    "augment_chips",
    "fit_temperature",
    "optimisation_step",
    "train",
    "uniform",
    "unit_chips",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float

    def line(self) -> str:
        """The epoch as the training commands log it."""
        return (
            f"epoch {self.epoch}: train loss {self.train_loss:.4f} acc {self.train_accuracy:.4f}, "
            f"val loss {self.val_loss:.4f} acc {self.val_accuracy:.4f} ({self.seconds:.0f}s)"
        )


@dataclass
class TrainResult:
    model_path: Path
    temperature: float
    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class _Exportable(nn.Module):
    """uint8 NHWC chips in, calibrated probabilities out; averages the chip and its mirror image."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: GenderNet, temperature: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)
        self.temperature = temperature

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips.permute(0, 3, 1, 2).float() - self.mean) / self.std
        logits = (self.net(x) + self.net(torch.flip(x, dims=[3]))) / 2
        return torch.softmax(logits / self.temperature, dim=1)


def _normalise(chips: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=chips.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=chips.device).view(1, 3, 1, 1)
    return (chips.permute(0, 3, 1, 2).float() / 255 - mean) / std


def unit_chips(chips: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 chips (N, side, side, 3) as floats (N, 3, side, side) on 0-1 on ``device``, as :func:`augment_chips`
    takes them."""
    return chips.to(device).permute(0, 3, 1, 2).float() / 255


def augment_chips(
    batch: torch.Tensor,
    generator: torch.Generator,
    *,
    noise_share: float,
    noise_sigma: float,
    turned_share: float,
) -> torch.Tensor:
    """Random mirror, small rotation/scale/shift, colour and lighting jitter, greyscale, blur, pixel noise on
    ``noise_share`` of the chips (see :func:`_noise_some`), quarter turns of ``turned_share`` of them (see
    :func:`_turn_some`) and an erased patch (NCHW, [0,1])."""
    n = batch.shape[0]
    draw = partial(uniform, generator)

    angle = draw(-12, 12, n) * math.pi / 180
    scale = draw(0.9, 1.12, n)
    shift = draw(-0.06, 0.06, n, 2)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = functional.affine_grid(theta.to(batch.device), list(batch.shape), align_corners=False)
    out = functional.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = draw(0.75, 1.25, n, 1, 1, 1).to(batch.device)
    contrast = draw(0.75, 1.25, n, 1, 1, 1).to(batch.device)
    saturation = draw(0.6, 1.4, n, 1, 1, 1).to(batch.device)
    grey = out.mean(dim=1, keepdim=True)
    out = grey + (out - grey) * saturation
    out = (out - out.mean(dim=(1, 2, 3), keepdim=True)) * contrast + out.mean(dim=(1, 2, 3), keepdim=True)
    # Gamma stands in for hard, low-key or high-key lighting; greyscale for monochrome photos.
    gamma = draw(0.7, 1.4, n, 1, 1, 1).to(batch.device)
    out = (out * brightness).clamp(0, 1) ** gamma
    to_grey = (torch.rand(n, generator=generator) < 0.2).to(batch.device).view(n, 1, 1, 1)
    out = torch.where(to_grey, out.mean(dim=1, keepdim=True).expand_as(out), out)
    out = _blur_some(out, generator, share=1 / 3)
    out = _noise_some(out, generator, share=noise_share, sigma=noise_sigma)
    out = _turn_some(out, generator, share=turned_share)
    return _erase_some(out, generator, share=1 / 4).clamp(0, 1)


def uniform(generator: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
    """Draws from the uniform distribution on [low, high), of ``shape``."""
    return torch.rand(*shape, generator=generator) * (high - low) + low


def _blur_some(batch: torch.Tensor, generator: torch.Generator, *, share: float) -> torch.Tensor:
    """Gaussian blur (one sigma per batch, 0.4 to 1.2 px) on about ``share`` of the chips: photos come
    soft from small or out-of-focus faces, and the model should not lean on fine texture alone."""
    n = batch.shape[0]
    sigma = float(uniform(generator, 0.4, 1.2, 1))
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    line = line / line.sum()
    kernel = (line[:, None] * line[None, :]).to(batch.device).expand(3, 1, 2 * radius + 1, 2 * radius + 1)
    blurred = functional.conv2d(functional.pad(batch, (radius,) * 4, mode="replicate"), kernel, groups=3)
    chosen = (torch.rand(n, generator=generator) < share).to(batch.device).view(n, 1, 1, 1)
    return torch.where(chosen, blurred, batch)


def _noise_some(batch: torch.Tensor, generator: torch.Generator, *, share: float, sigma: float) -> torch.Tensor:
    """Gaussian noise on about ``share`` of the chips, its sigma drawn for each chip from ``sigma`` / 8 to
    ``sigma`` grey levels of 255: model 1.2.0, trained without it, lost 2 points of validation accuracy to noise
    of 5 grey levels, barely visible (``tools/noisy_validation.py``)."""
    if share <= 0:  # draws nothing, so a run without noise repeats the runs from before it
        return batch
    chosen = torch.nonzero(torch.rand(batch.shape[0], generator=generator) < share).flatten()
    if len(chosen) == 0:
        return batch
    sigmas = uniform(generator, sigma / 8 / 255, sigma / 255, len(chosen), 1, 1, 1)
    noise = torch.randn(len(chosen), *batch.shape[1:], generator=generator) * sigmas
    out = batch.clone()
    out[chosen.to(batch.device)] += noise.to(batch.device)
    return out


def _turn_some(batch: torch.Tensor, generator: torch.Generator, *, share: float) -> torch.Tensor:
    """About ``share`` of the (square) chips turned by one, two or three quarter turns, each as likely: faces of
    photos that lost their orientation reach the classifier so (``TrainConfig.turned_share``)."""
    if share <= 0:  # draws nothing, so a run without turns repeats the runs from before it
        return batch
    chosen = torch.nonzero(torch.rand(batch.shape[0], generator=generator) < share).flatten()
    quarters = torch.randint(1, 4, (len(chosen),), generator=generator)
    out = batch.clone()
    for index, turns in zip(chosen.tolist(), quarters.tolist(), strict=True):
        out[index] = torch.rot90(batch[index], turns, dims=(1, 2))
    return out


def _erase_some(batch: torch.Tensor, generator: torch.Generator, *, share: float) -> torch.Tensor:
    """A flat grey rectangle (2-15% of the area) over about ``share`` of the chips, standing in for
    hands, glasses, hair and the edge of a photo: the model learns from more than one part of the face."""
    out = batch.clone()
    height, width = out.shape[2], out.shape[3]
    for index in torch.nonzero(torch.rand(out.shape[0], generator=generator) < share).flatten().tolist():
        area = float(uniform(generator, 0.02, 0.15, 1)) * height * width
        aspect = float(uniform(generator, 0.5, 2.0, 1))
        patch_height = min(height, int((area * aspect) ** 0.5))
        patch_width = min(width, int((area / aspect) ** 0.5))
        top = int(torch.randint(0, height - patch_height + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - patch_width + 1, (1,), generator=generator))
        out[index, :, top : top + patch_height, left : left + patch_width] = float(uniform(generator, 0.2, 0.8, 1))
    return out


def optimisation_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
) -> float:
    """One step of ``optimizer`` on ``loss`` and of the learning-rate ``scheduler``; the loss, as a number."""
    optimizer.zero_grad()
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    scheduler.step()
    return float(loss.item())


def fit_temperature(logits: NDArray[np.float32], targets: NDArray[np.int64]) -> float:
    """The temperature that minimises validation negative log-likelihood (Guo et al., 2017)."""
    candidates = np.exp(np.linspace(math.log(0.25), math.log(4.0), 241))
    best, best_nll = 1.0, math.inf
    for temperature in candidates:
        scaled = logits / temperature
        log_probs = scaled - np.logaddexp(scaled[:, 0], scaled[:, 1])[:, None]
        nll = float(-log_probs[np.arange(len(targets)), targets].mean())
        if nll < best_nll:
            best, best_nll = float(temperature), nll
    return best


def _per_training_image(
    path: Path | None, key: str, items: list[LabeledImage], *, what: str, option: str
) -> dict[str, NDArray[np.generic]]:
    """The rows under ``key`` of an ``.npz`` with ``names``, by file name; every training item must have one."""
    if path is None:
        raise DatasetError(f"a {what} weight needs a {what} file ({option})")
    try:
        with np.load(path) as stored:
            by_name = dict(zip(stored["names"].tolist(), stored[key], strict=True))
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"cannot read the {what} file {path}: {exc}") from None
    missing = sum(item.split == "train" and item.path.name not in by_name for item in items)
    if missing:
        raise DatasetError(f"the {what} file {path} lacks {missing} training images")
    return by_name


def _teacher_probabilities(config: TrainConfig, items: list[LabeledImage]) -> torch.Tensor:
    """Each item's probability of male by the teacher file; the labels where it has none (outside the train split,
    which the teacher's loss never sees)."""
    by_name = _per_training_image(config.teacher, "male", items, what="teacher", option="--teacher")
    return torch.tensor([float(by_name.get(item.path.name, item.target)) for item in items])


def _descriptor_targets(config: TrainConfig, items: list[LabeledImage]) -> torch.Tensor:
    """Each item's face descriptor by the descriptor file, scaled to length 1; zeros (no target) where it has none
    outside the train split."""
    by_name = _per_training_image(config.descriptors, "descriptors", items, what="descriptor", option="--descriptors")
    size = len(next(iter(by_name.values())))
    rows = [by_name.get(item.path.name, np.zeros(size)) for item in items]
    return functional.normalize(torch.from_numpy(np.stack(rows).astype(np.float32)), dim=1)


def _soft_cross_entropy(logits: torch.Tensor, male: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (female, male) ``logits`` with the probabilities of male ``male``, in float32."""
    log_probabilities = functional.log_softmax(logits.float(), dim=1)
    return -(male * log_probabilities[:, 1] + (1 - male) * log_probabilities[:, 0]).mean()


def _predict_logits(net: GenderNet, chips: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    net.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(chips), batch_size * 4):
            x = _normalise(chips[start : start + batch_size * 4].to(device))
            outputs.append(((net(x) + net(torch.flip(x, dims=[3]))) / 2).cpu())
    return torch.cat(outputs) if outputs else torch.zeros((0, 2))


def _load_trained(net: GenderNet, path: Path) -> None:
    try:
        net.load_trained(path)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        raise ModelError(f"cannot start from {path}: {exc}") from None


def _select(items: list[LabeledImage], limit: int | None) -> list[LabeledImage]:
    if limit is None:
        return items
    # An even slice keeps every split and class represented in small smoke-test runs.
    step = max(1, len(items) // limit)
    return items[::step][:limit]


def train(config: TrainConfig, *, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train, calibrate and export; writes ``gender.onnx``, ``gender.pt`` and ``training.json`` to ``config.out``."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    items = _select(load_dataset(config.data), config.limit)
    with tqdm(total=len(items), desc="face chips", unit="img", disable=None) as bar:
        chip_set = make_chips(
            [item.path for item in items], size=config.image_size, cache_dir=config.cache_dir, progress=bar.update
        )
    chips = torch.from_numpy(chip_set.chips)
    targets = torch.tensor([item.target for item in items])
    teacher_male = _teacher_probabilities(config, items) if config.teacher_weight > 0 else None
    descriptors = _descriptor_targets(config, items) if config.descriptor_weight > 0 else None
    ages = torch.tensor([-1.0 if item.age is None else float(item.age) for item in items])
    usable = torch.from_numpy(chip_set.found)
    train_index = torch.tensor([i for i, item in enumerate(items) if item.split == "train"], dtype=torch.long)
    val_index = torch.tensor([i for i, item in enumerate(items) if item.split == "val"], dtype=torch.long)
    train_index = train_index[usable[train_index]]
    val_index = val_index[usable[val_index]]
    if len(train_index) == 0:
        raise DatasetError("no training images with a detectable face")
    if len(val_index) == 0:  # tiny smoke-test sets: calibrate on what there is
        val_index = train_index

    net = GenderNet(
        age_head=config.age_weight > 0, descriptor_size=0 if descriptors is None else descriptors.shape[1]
    ).to(device)
    if config.initial_weights is not None:
        weights: Path | None = config.initial_weights
        _load_trained(net, config.initial_weights)
    else:
        weights = imagenet_weights_path() if config.pretrained else None
        if weights is not None:
            net.load_imagenet_backbone(weights)
    mixed = config.precision == "bfloat16"
    layout = torch.channels_last if mixed else torch.contiguous_format
    net = net.to(memory_format=layout)  # type: ignore[call-overload]  # (the stubs lack this keyword)
    frozen = net.features[: config.frozen_layers]
    for parameter in frozen.parameters():
        parameter.requires_grad = False
    # Kept in eval mode while training, so their batch normalisations keep their statistics: the frozen layers keep
    # ImageNet's; a fine-tune keeps all that its weights were trained with, which a few epochs of batch statistics
    # would move, and a network rebuilt from its exported graph has none of its own (checkpoint_from_onnx).
    kept_statistics: list[nn.Module] = (
        [module for module in net.modules() if isinstance(module, nn.BatchNorm2d)]
        if config.initial_weights is not None
        else [frozen]
    )
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(train_index) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=max(1, steps), pct_start=0.15
    )
    generator = torch.Generator().manual_seed(config.seed)
    # The model's last answer for each chip, as a probability of male; the labels until it has answered.
    own_male = targets.float().to(device) if config.self_distillation > 0 else None
    history: list[EpochRecord] = []
    best_state, best_accuracy, best_epoch = None, -1.0, 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        net.train()
        for module in kept_statistics:
            module.eval()
        order = train_index[torch.randperm(len(train_index), generator=generator)]
        own_share = config.self_distillation * (epoch - 1) / max(1, config.epochs - 1)
        seen, loss_sum, correct = 0, 0.0, 0
        with tqdm(total=len(order), desc=f"epoch {epoch}/{config.epochs}", unit="img", disable=None) as bar:
            for start in range(0, len(order), config.batch_size):
                index = order[start : start + config.batch_size]
                # Augmented where the network runs: on a GPU the CPU would otherwise be the bottleneck.
                x = augment_chips(
                    unit_chips(chips[index], device),
                    generator,
                    noise_share=config.noise_share,
                    noise_sigma=config.noise_sigma,
                    turned_share=config.turned_share,
                )
                x = _normalise((x * 255).permute(0, 2, 3, 1)).contiguous(memory_format=layout)
                y = targets[index].to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
                    logits, age_out, descriptor_out = net.forward_heads(x)
                    if own_male is None:
                        loss = functional.cross_entropy(logits, y)
                    else:
                        own_target = (1 - own_share) * y.float() + own_share * own_male[index]
                        loss = _soft_cross_entropy(logits, own_target)
                    if teacher_male is not None:
                        soft = _soft_cross_entropy(logits, teacher_male[index].to(device))
                        loss = (1 - config.teacher_weight) * loss + config.teacher_weight * soft
                    if age_out is not None:
                        batch_ages = ages[index]
                        known = batch_ages >= 0  # decided on the CPU, without waiting for the device
                        if bool(known.any()):
                            age_target = torch.log1p(batch_ages[known]).to(device)
                            age_loss = functional.smooth_l1_loss(age_out[known.to(device)].float(), age_target)
                            loss = loss + config.age_weight * age_loss
                    if descriptor_out is not None and descriptors is not None:
                        # Augmentation moves and turns the chip a little; the descriptor hardly notices such changes.
                        similarity = functional.cosine_similarity(
                            descriptor_out.float(), descriptors[index].to(device), dim=1
                        )
                        loss = loss + config.descriptor_weight * (1 - similarity).mean()
                if own_male is not None:
                    own_male[index] = functional.softmax(logits.detach().float(), dim=1)[:, 1]
                seen += len(index)
                loss_sum += optimisation_step(loss, optimizer, scheduler) * len(index)
                correct += int((logits.argmax(1) == y).sum())
                bar.update(len(index))
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        val_logits = _predict_logits(net, chips[val_index], device, config.batch_size)
        val_targets = targets[val_index]
        record = EpochRecord(
            epoch=epoch,
            train_loss=loss_sum / seen,
            train_accuracy=correct / seen,
            val_loss=float(functional.cross_entropy(val_logits, val_targets)),
            val_accuracy=float((val_logits.argmax(1) == val_targets).float().mean()),
            seconds=time.perf_counter() - started,
        )
        history.append(record)
        if log:
            log(record.line())
        if record.val_accuracy > best_accuracy:
            best_accuracy, best_epoch = record.val_accuracy, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    assert best_state is not None
    net.load_state_dict(best_state)
    val_logits = _predict_logits(net, chips[val_index], device, config.batch_size)
    temperature = fit_temperature(val_logits.numpy(), targets[val_index].numpy())
    config.out.mkdir(parents=True, exist_ok=True)
    model_path = config.out / "gender.onnx"
    torch.save(best_state, config.out / "gender.pt")  # to fine-tune or re-export without retraining
    _export(net.cpu().to(memory_format=torch.contiguous_format), temperature, config, model_path)
    counts = {
        "train": len(train_index),
        "val": len(val_index),
        "test": sum(item.split == "test" for item in items),
        "no_face": int((~usable).sum()),
    }
    result = TrainResult(model_path, temperature, best_epoch, history, counts)
    summary = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "pretrained_weights": str(weights) if weights else None,
        "temperature": temperature,
        "best_epoch": best_epoch,
        "counts": counts,
        "history": [asdict(record) for record in history],
    }
    (config.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result


def _export(net: GenderNet, temperature: float, config: TrainConfig, path: Path) -> None:
    metadata = {
        "name": "facegender-mobilenetv2",
        "version": config.model_version,
        "input_size": str(config.image_size),
        "labels": ",".join(LABELS),
        "temperature": f"{temperature:.4f}",
        "trained_on": config.data.name,
    }
    export_chip_model(
        _Exportable(net, temperature),
        path,
        chip_size=config.image_size,
        input_name=CLASSIFIER_INPUT_NAME,
        output_name=CLASSIFIER_OUTPUT_NAME,
        metadata=metadata,
    )
