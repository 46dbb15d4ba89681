"""How the cost of one photo grows: with its size (0.3 to 24 megapixels) and with its faces (1 to 32).

Sizes: real portraits scaled up or down to each size and saved as JPEG (quality 90), as a camera would.
Faces: UTKFace chips of 300x300 pixels on a fixed 2400x1200 grey canvas (eight by four places), one to
32 of the places filled, so that only the number of faces changes. Each photo is sent as encoded bytes, one
at a time, to each library in turn; the table gives the median time and how many faces each found.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facegender import FaceGender

from .peer import Peer

__all__ = ["FACE_COUNTS", "MEGAPIXELS", "Point", "by_faces", "by_size", "markdown", "plot"]

MEGAPIXELS = (0.3, 1.0, 3.0, 6.0, 12.0, 24.0)
FACE_COUNTS = (1, 2, 4, 8, 16, 32)
CELL = 300
GRID = (8, 4)  # columns, rows: 32 places
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Point:
    """One photo size or face count: the median milliseconds per photo and the faces found, for each library."""

    x: float
    ours_ms: float
    peer_ms: float
    ours_faces: float
    peer_faces: float


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _measure(x: float, photos: Sequence[bytes], ours: FaceGender, peer: Peer, repeats: int) -> Point:
    our_ms, peer_ms, our_faces, peer_faces = [], [], [], []
    for data in photos:
        for _ in range(repeats):
            started = time.perf_counter()
            faces = ours.predict(data)
            our_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            answer = peer.predict(data)
            peer_ms.append((time.perf_counter() - started) * 1000)
            our_faces.append(len(faces))
            peer_faces.append(answer.faces)
    return Point(
        x=x,
        ours_ms=statistics.median(our_ms),
        peer_ms=statistics.median(peer_ms),
        ours_faces=statistics.mean(our_faces),
        peer_faces=statistics.mean(peer_faces),
    )


def by_size(portraits: Sequence[Path], ours: FaceGender, peer: Peer, *, repeats: int) -> list[Point]:
    """Time per photo for each of ``MEGAPIXELS``, over ``portraits`` scaled to that size."""
    bases = [Image.open(path).convert("RGB") for path in portraits]
    points = []
    for megapixels in MEGAPIXELS:
        photos = []
        for base in bases:
            factor = (megapixels * 1e6 / (base.width * base.height)) ** 0.5
            size = (round(base.width * factor), round(base.height * factor))
            photos.append(_jpeg(base.resize(size, Image.Resampling.BICUBIC)))
        points.append(_measure(megapixels, photos, ours, peer, repeats))
    return points


def by_faces(chips: Sequence[Path], ours: FaceGender, peer: Peer, *, repeats: int) -> list[Point]:
    """Time per photo for each of ``FACE_COUNTS``, the first places of the canvas holding ``chips`` in turn."""
    columns, rows = GRID
    faces = [
        np.asarray(Image.open(path).convert("RGB").resize((CELL, CELL), Image.Resampling.BICUBIC)) for path in chips
    ]
    points = []
    for count in FACE_COUNTS:
        canvas = np.full((rows * CELL, columns * CELL, 3), 128, np.uint8)
        for place in range(count):
            top, left = (place // columns) * CELL, (place % columns) * CELL
            canvas[top : top + CELL, left : left + CELL] = faces[place % len(faces)]
        points.append(_measure(count, [_jpeg(Image.fromarray(canvas))], ours, peer, repeats))
    return points


def markdown(sizes: Sequence[Point], faces: Sequence[Point]) -> str:
    def table(header: str, points: Sequence[Point], label: Callable[[float], str]) -> list[str]:
        lines = [
            f"| {header} | facegender, ms | age-and-gender, ms | ratio (ours / peer) | faces found (ours / peer) |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for p in points:
            ratio = p.ours_ms / p.peer_ms if p.peer_ms else float("nan")
            found = f"{p.ours_faces:g} / {p.peer_faces:g}"
            lines.append(f"| {label(p.x)} | {p.ours_ms:.1f} | {p.peer_ms:.1f} | {ratio:.2f}x | {found} |")
        return lines

    return "\n".join(
        [
            *table("megapixels", sizes, lambda x: f"{x:g}"),
            "",
            *table(f"faces on a {GRID[0] * CELL}x{GRID[1] * CELL} photo", faces, lambda x: f"{x:g}"),
        ]
    )


def plot(sizes: Sequence[Point], faces: Sequence[Point], path: Path) -> None:
    """Both series, ours and the peer's, as a two-panel PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axes, points, xlabel, base in (
        (left, sizes, "photo size, megapixels", 10),
        (right, faces, f"faces in a {GRID[0] * CELL}x{GRID[1] * CELL} photo", 2),
    ):
        xs = [p.x for p in points]
        axes.plot(xs, [p.ours_ms for p in points], "o-", label="facegender")
        axes.plot(xs, [p.peer_ms for p in points], "s--", label="age-and-gender")
        axes.set_xscale("log", base=base)
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(ScalarFormatter())
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.set_xticks(xs, [f"{x:g}" for x in xs])
        axes.set_xlabel(xlabel)
        axes.set_ylabel("ms per photo (median)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.suptitle("Time per photo, one photo at a time, decoding included")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
