"""The ``facegender`` command: predict, batch, serve, train, evaluate, second-opinion, tune-second-opinion, quantize,
train-orientation.

Exit codes: 0 success, 1 no face found, 2 bad input or usage, 3 model unavailable, 5 an optional extra
missing. Errors are one line on stderr; ``FACEGENDER_DEBUG=1`` adds the traceback. ``batch`` exits 0 when
the job ran to its end: its files' own errors are in its output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, get_args

from pydantic import ValidationError

from facegender import __version__
from facegender.batch import DEFAULT_CHUNK_SIZE, DEFAULT_POOL, ENGINES, FORMATS, POOLS, run_batch
from facegender.chips import DEFAULT_CACHE_DIR
from facegender.data import Split
from facegender.errors import FaceGenderError, MissingExtraError, NoFaceError
from facegender.training.config import (
    ORIENTATION_EPOCHS,
    TUNING_BATCH_SIZE,
    TUNING_EPOCHS,
    TUNING_LEARNING_RATE,
    Precision,
    TrainConfig,
)

if TYPE_CHECKING:
    from tqdm import tqdm

    from facegender.batch import BatchProgress, BatchSummary

__all__ = ["main"]

EXIT_OK = 0
EXIT_NO_FACE = NoFaceError.exit_code
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegender", description="Find faces and tell man or woman.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="classify the faces in photos")
    predict.add_argument("photos", nargs="+", type=Path, help="image files: JPEG, PNG, WebP, BMP, GIF or TIFF")
    predict.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    predict.add_argument("--no-detect", action="store_true", help="treat each photo as one cropped face")

    batch = commands.add_parser(
        "batch",
        help="classify every photo of a folder, glob or list into a JSONL, CSV or Parquet file, with resume",
    )
    batch.add_argument("input", help="folder (recursive), glob, or .txt/.csv list of paths; fsspec URLs allowed")
    batch.add_argument("--out", required=True, help="output file (.jsonl, .csv) or Parquet folder (.parquet)")
    batch.add_argument("--format", choices=FORMATS, help="output format (default: from the --out suffix)")
    batch.add_argument("--engine", choices=ENGINES, default="local", help="local pool or Ray Data (default local)")
    batch.add_argument("--ray-address", help="Ray cluster to join (ray://host:10001 or auto); default: start one")
    batch.add_argument("--workers", type=int, help="threads, processes or Ray actors (default: one per CPU)")
    batch.add_argument("--pool", choices=POOLS, default=DEFAULT_POOL, help=f"local workers (default {DEFAULT_POOL})")
    batch.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="files per model call and write")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 3001)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")

    train = commands.add_parser("train", help="train the gender model and export it to ONNX")
    train.add_argument("--data", type=Path, required=True, help="dataset folder or labels CSV")
    train.add_argument("--out", type=Path, required=True, help="folder for gender.onnx and training.json")
    train.add_argument(
        "--epochs", type=int, default=TrainConfig.epochs, help="passes over the train split (default %(default)s)"
    )
    train.add_argument(
        "--batch-size", type=int, default=TrainConfig.batch_size, help="chips per step (default %(default)s)"
    )
    train.add_argument(
        "--image-size", type=int, default=TrainConfig.image_size, help="chip side in pixels (default %(default)s)"
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        default=TrainConfig.learning_rate,
        help="peak of the one-cycle schedule (default %(default)s)",
    )
    train.add_argument("--limit", type=int, help="use only this many images (smoke tests)")
    train.add_argument(
        "--seed",
        type=int,
        default=TrainConfig.seed,
        help="for weights, augmentation and order, not the split (default %(default)s)",
    )
    train.add_argument("--no-pretrained", action="store_true", help="start from random weights, not ImageNet")
    train.add_argument(
        "--initial-weights",
        type=Path,
        help="gender.pt of an earlier run to start from instead of ImageNet (to fine-tune)",
    )
    train.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")
    train.add_argument(
        "--model-version",
        default=TrainConfig.model_version,
        help="version written into the model (default %(default)s)",
    )
    train.add_argument(
        "--teacher", type=Path, help="soft targets for distillation (.npz from tools/teacher_probabilities.py)"
    )
    train.add_argument(
        "--descriptors", type=Path, help="another model's face descriptors (.npz from tools/face_descriptors.py)"
    )
    train.add_argument(
        "--frozen-layers",
        type=int,
        default=TrainConfig.frozen_layers,
        help="leading backbone blocks kept at their ImageNet weights (default %(default)s)",
    )
    train.add_argument(
        "--precision",
        choices=get_args(Precision),
        default=TrainConfig.precision,
        help="bfloat16: mixed-precision steps, faster on CPUs with AVX-512 BF16 or AMX (default %(default)s)",
    )
    for field, help_text in (
        ("age_weight", "weight of age as a second training task, where the data gives ages (default 0: none)"),
        ("noise_share", "share of training chips given Gaussian pixel noise (default 0: none)"),
        ("noise_sigma", "the strongest of that noise, in grey levels of 255 (each chip: an eighth of it to it)"),
        (
            "turned_share",
            "share of training chips turned by quarter turns, as in photos that lost their orientation"
            " (default 0: none)",
        ),
        ("teacher_weight", "share of the loss on the --teacher probabilities, for distillation (default 0: none)"),
        ("self_distillation", "share of each target from the model's last answer, by the last epoch (default 0: none)"),
        ("descriptor_weight", "weight of the --descriptors regression as a second task (default 0: none)"),
    ):
        option = f"--{field.replace('_', '-')}"
        train.add_argument(option, type=float, default=getattr(TrainConfig, field), help=help_text)

    evaluate = commands.add_parser("evaluate", help="write metrics.json and a Markdown report for a model")
    evaluate.add_argument("--data", type=Path, required=True, help="dataset folder or labels CSV")
    evaluate.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for metrics.json, report.md and the PNGs")
    evaluate.add_argument("--portraits", type=Path, help="labelled uncropped photos for the end-to-end check")
    evaluate.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")
    evaluate.add_argument(
        "--split",
        choices=get_args(Split),
        default="test",
        help="split for the groups, calibration and confusion matrix"
        " (compare models on val, which leaves the test split unread; report on test)",
    )

    second_opinion = commands.add_parser(
        "second-opinion", help="join dlib's face descriptor to a gender model: a probe fitted on train, a stack on val"
    )
    second_opinion.add_argument("--model", type=Path, required=True, help="float ONNX gender model")
    second_opinion.add_argument("--data", type=Path, required=True, help="dataset: train fits the probe, val the stack")
    second_opinion.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    second_opinion.add_argument(
        "--network", type=Path, help="dlib network: its own .dat (default) or a tune-second-opinion .npz"
    )
    second_opinion.add_argument("--model-version", help="version of the result (default: the model's +dlib)")
    second_opinion.add_argument("--report", type=Path, help="JSON of what was fitted (default OUT.json)")
    second_opinion.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")

    tune = commands.add_parser(
        "tune-second-opinion",
        help="train dlib's face-recognition network further to tell gender (second-opinion --network)",
    )
    tune.add_argument("--data", type=Path, required=True, help="dataset: train tunes, val is scored for the log")
    tune.add_argument("--out", type=Path, required=True, help=".npz file to write")
    tune.add_argument("--network", type=Path, help="network to start from (default: dlib's own)")
    tune.add_argument("--chip-size", type=int, default=TrainConfig.image_size, help="the gender model's chip side")
    tune.add_argument("--epochs", type=int, default=TUNING_EPOCHS, help="(default %(default)s)")
    tune.add_argument(
        "--learning-rate",
        type=float,
        default=TUNING_LEARNING_RATE,
        help="the network's (head: 10x; default %(default)s)",
    )
    tune.add_argument("--batch-size", type=int, default=TUNING_BATCH_SIZE, help="(default %(default)s)")
    tune.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    tune.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")

    quantize = commands.add_parser("quantize", help="write an int8 copy of a gender model, checked on validation")
    quantize.add_argument("--model", type=Path, required=True, help="float ONNX model")
    quantize.add_argument("--data", type=Path, required=True, help="dataset: train chips calibrate, val checks")
    quantize.add_argument("--out", type=Path, required=True, help="int8 ONNX file to write")
    quantize.add_argument("--report", type=Path, help="JSON comparison on the validation split (default OUT.json)")
    quantize.add_argument(
        "--calibration-images", type=int, default=512, help="train chips that set the int8 ranges (default %(default)s)"
    )
    quantize.add_argument(
        "--refine-margin", type=float, default=0.15, help="refine chips below 0.5+this (default %(default)s)"
    )
    quantize.add_argument(
        "--refine-with", type=Path, help="model that redoes those chips (default: --model), e.g. a second-opinion one"
    )
    quantize.add_argument(
        "--no-mirror", action="store_true", help="int8 stage sees each chip alone (half the work; float still mirrors)"
    )
    quantize.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")

    orientation = commands.add_parser(
        "train-orientation", help="train the network that tells whether a face chip is upright, and export it to ONNX"
    )
    orientation.add_argument("--data", type=Path, required=True, help="dataset: train trains, val picks the epoch")
    orientation.add_argument("--out", type=Path, required=True, help="folder for orientation.onnx")
    orientation.add_argument(
        "--chip-size", type=int, default=TrainConfig.image_size, help="the gender model's chip side"
    )
    orientation.add_argument("--epochs", type=int, default=ORIENTATION_EPOCHS, help="(default %(default)s)")
    orientation.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    orientation.add_argument("--limit", type=int, help="use only the first N photos (smoke tests)")
    orientation.add_argument("--model-version", default="1.0.0", help="(default %(default)s)")
    orientation.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")
    return parser


def _predict(args: argparse.Namespace) -> int:
    from facegender.pipeline import FaceGender
    from facegender.records import photo_record

    fg = FaceGender()
    results = fg.predict_batch(args.photos, detect=not args.no_detect, return_exceptions=True)
    status = EXIT_OK
    rows: list[tuple[str, str, str, str, str]] = []
    for photo, result in zip(args.photos, results, strict=True):
        if isinstance(result, FaceGenderError):
            status = max(status, result.exit_code)
            rows.append((str(photo), "-", "error", result.code, result.message))
        elif not result:
            status = max(status, EXIT_NO_FACE)
            rows.append((str(photo), "-", "no face", "", ""))
        for number, face in enumerate(result if isinstance(result, list) else [], start=1):
            box = face.box
            rows.append(
                (
                    str(photo),
                    str(number),
                    face.label,
                    f"{face.probability:.3f}",
                    f"{box.left},{box.top} {box.width}x{box.height}",
                )
            )
        if args.json:
            # "label" stays the class name here, as predict printed it before batch records existed.
            print(json.dumps(photo_record(str(photo), result, model_version=fg.model_version, labels="name")))
    if not args.json:
        _print_table(("file", "face", "class", "probability", "box"), rows)
    return status


def _batch(args: argparse.Namespace) -> int:
    with _BatchProgressView() as view:
        summary = run_batch(
            inputs=args.input,
            out=args.out,
            output_format=args.format,
            engine=args.engine,
            workers=args.workers,
            pool=args.pool,
            chunk_size=args.chunk_size,
            ray_address=args.ray_address,
            progress=view.update,
        )
    _print_summary(summary, args.out)
    return EXIT_OK


class _BatchProgressView:
    """A bar with rate and ETA on a terminal; otherwise a plain line on stderr every ``every_s`` seconds."""

    def __init__(self, every_s: float = 10.0) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc="batch", unit="photo", disable=None, dynamic_ncols=True)
        self.every_s = every_s
        self.started = self.last_line = time.monotonic()

    def update(self, progress: BatchProgress) -> None:
        if not self.bar.disable:
            if self.bar.total != progress.total:
                self.bar.total = progress.total
                self.bar.refresh()
            self.bar.update(progress.done - self.bar.n)
            return
        now = time.monotonic()
        if progress.done == 0:
            print(f"facegender: batch: {progress.total} files to do, {progress.skipped} already done", file=sys.stderr)
        elif now - self.last_line >= self.every_s or progress.done == progress.total:
            self.last_line = now
            rate = progress.done / max(now - self.started, 1e-9)
            print(f"facegender: batch: {progress.done}/{progress.total} files, {rate:.1f}/s", file=sys.stderr)

    def __enter__(self) -> _BatchProgressView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()


def _print_summary(summary: BatchSummary, out: str) -> None:
    by_class = ", ".join(f"{name} {count}" for name, count in summary.by_class.items())
    _print_table(
        ("batch", "value"),
        [
            ("files", f"{summary.files} (skipped, already recorded: {summary.skipped})"),
            ("faces", f"{summary.faces} ({by_class})"),
            ("no face", str(summary.no_face)),
            ("errors", str(summary.errors)),
            ("time", f"{summary.seconds:.1f} s, {summary.photos_per_second:.1f} photos/s"),
            ("output", out),
        ],
    )


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _serve(args: argparse.Namespace) -> int:
    for name in ("host", "port", "workers"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"FACEGENDER_{name.upper()}"] = str(value)
    from facegender.server import supervisor
    from facegender.server.app import prepare_workers
    from facegender.settings import Settings

    settings = Settings()
    prepare_workers(settings)
    # Hand over to a fresh, light process (same pid) that holds none of what this one has loaded.
    sys.stdout.flush()
    sys.stderr.flush()
    arguments = [settings.host, str(settings.port), str(settings.workers)]
    os.execv(sys.executable, [sys.executable, supervisor.__file__, *arguments])


def _chip_progress() -> tqdm[NoReturn]:
    """The bar of the face chips a model command makes (or reads from its cache) before its own work."""
    from tqdm import tqdm

    return tqdm(desc="face chips", unit="img", disable=None)


@contextmanager
def _extra(name: str, *, purpose: str) -> Iterator[None]:
    """Turn a failed import inside the block into :class:`MissingExtraError` naming the extra to install."""
    try:
        yield
    except ImportError as exc:
        raise MissingExtraError(f"{purpose} needs the [{name}] extra ({exc.name} is missing)") from None


def _train(args: argparse.Namespace) -> int:
    with _extra("train", purpose="training"):
        from facegender.training.train import train
    # Each option is named after its TrainConfig field; only --no-pretrained says the opposite.
    given = vars(args)
    named = {field.name: given[field.name] for field in fields(TrainConfig) if field.name in given}
    config = TrainConfig(**named, pretrained=not args.no_pretrained)
    result = train(config, log=lambda line: print(line, flush=True))
    print(f"wrote {result.model_path} (best epoch {result.best_epoch}, temperature {result.temperature:.3f})")
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from facegender.classify import DEFAULT_CLASSIFIER_PATH
    from facegender.evaluate import evaluate

    with _chip_progress() as bar:
        result = evaluate(
            data=args.data,
            model=args.model or DEFAULT_CLASSIFIER_PATH,
            out=args.out,
            portraits=args.portraits,
            cache_dir=args.cache_dir,
            progress=bar.update,
            split=args.split,
        )
    print(result.report_path.read_text())
    print(f"wrote {result.metrics_path} and {result.report_path}")
    return EXIT_OK


def _second_opinion(args: argparse.Namespace) -> int:
    with _extra("train", purpose="a second opinion"):
        from facegender.training.second_opinion import build_second_opinion
    with _chip_progress() as bar:
        result = build_second_opinion(
            model=args.model,
            data=args.data,
            out=args.out,
            network=args.network,
            model_version=args.model_version,
            report=args.report,
            cache_dir=args.cache_dir,
            progress=bar.update,
        )
    print(
        f"validation accuracy: gender model {result.gender_accuracy:.4f}, descriptor probe {result.probe_accuracy:.4f}"
        f" (train {result.probe_train_accuracy:.4f}), with the second opinion {result.second_opinion_accuracy:.4f}"
        f" (ECE {result.second_opinion_ece:.4f}; its stack is fitted on validation)"
    )
    print(f"wrote {result.model_path} and {result.report_path}")
    return EXIT_OK


def _tune_second_opinion(args: argparse.Namespace) -> int:
    with _extra("train", purpose="tuning dlib's network"):
        from facegender.training.second_opinion_tuning import TuningRecord, tune_second_opinion_network

    def log(record: TuningRecord) -> None:
        scored = "" if record.val_accuracy is None else f", val acc {record.val_accuracy:.4f}"
        print(
            f"epoch {record.epoch}: train loss {record.train_loss:.4f} acc {record.train_accuracy:.4f}{scored}"
            f" ({record.seconds:.0f}s)",
            flush=True,
        )

    with _chip_progress() as bar:
        out = tune_second_opinion_network(
            data=args.data,
            out=args.out,
            chip_size=args.chip_size,
            network=args.network,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            seed=args.seed,
            cache_dir=args.cache_dir,
            progress=bar.update,
            log=log,
        )
    print(f"wrote {out}")
    return EXIT_OK


def _quantize(args: argparse.Namespace) -> int:
    with _extra("train", purpose="quantizing"):
        from facegender.quantize import quantize_classifier
    result = quantize_classifier(
        model=args.model,
        data=args.data,
        out=args.out,
        calibration_images=args.calibration_images,
        refine_margin=args.refine_margin,
        refine_with=args.refine_with,
        mirror=not args.no_mirror,
        report=args.report,
        cache_dir=args.cache_dir,
    )
    for name, scores in (
        ("float", result.float_scores),
        ("int8 alone", result.int8_scores),
        ("int8, the refining model redoing unsure chips", result.shipped_scores),
    ):
        print(f"{name}: validation accuracy {scores.accuracy:.4f}, ECE {scores.ece:.4f} ({scores.count} images)")
    verdict = "fit to ship" if result.fit_to_ship else "NOT fit to ship (loses accuracy or calibration)"
    print(f"{result.refined_share:.1%} of chips redone; {verdict}; wrote {result.model_path} and {result.report_path}")
    return EXIT_OK


def _train_orientation(args: argparse.Namespace) -> int:
    with _extra("train", purpose="training"):
        from facegender.training.orientation import train_orientation
    with _chip_progress() as bar:
        result = train_orientation(
            data=args.data,
            out=args.out,
            chip_size=args.chip_size,
            epochs=args.epochs,
            seed=args.seed,
            limit=args.limit,
            model_version=args.model_version,
            cache_dir=args.cache_dir,
            progress=bar.update,
            log=lambda line: print(line, flush=True),
        )
    print(f"wrote {result.model_path} (best epoch {result.best_epoch})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    handlers = {
        "predict": _predict,
        "batch": _batch,
        "serve": _serve,
        "train": _train,
        "evaluate": _evaluate,
        "second-opinion": _second_opinion,
        "tune-second-opinion": _tune_second_opinion,
        "quantize": _quantize,
        "train-orientation": _train_orientation,
    }
    debug = os.environ.get("FACEGENDER_DEBUG") == "1"
    try:
        code = handlers[args.command](args)
    except FaceGenderError as error:
        if debug:
            traceback.print_exc()
        print(f"facegender: {error.code}: {error.message}", file=sys.stderr)
        code = error.exit_code
    except ValidationError as error:
        if debug:
            traceback.print_exc()
        problems = "; ".join(f"FACEGENDER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        print(f"facegender: invalid setting: {problems}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        code = 130
    except Exception as error:
        if debug:
            traceback.print_exc()
        print(f"facegender: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        code = EXIT_INTERNAL
    sys.exit(code)
