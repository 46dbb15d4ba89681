"""The ``facegender`` command: predict, serve, train, evaluate.

Exit codes: 0 success, 1 no face found, 2 bad input or usage, 3 model unavailable. Errors are one line
on stderr; ``FACEGENDER_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from facegender.errors import FaceGenderError, NoFaceError

__all__ = ["main"]

EXIT_OK = 0
EXIT_NO_FACE = NoFaceError.exit_code
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegender", description="Find faces and tell man or woman.")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="classify the faces in photos")
    predict.add_argument("photos", nargs="+", type=Path)
    predict.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    predict.add_argument("--no-detect", action="store_true", help="treat each photo as one cropped face")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 3001)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")

    train = commands.add_parser("train", help="train the gender model and export it to ONNX")
    train.add_argument("--data", type=Path, required=True, help="dataset folder or labels CSV")
    train.add_argument("--out", type=Path, required=True, help="folder for gender.onnx and training.json")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--image-size", type=int, default=128, help="chip side in pixels")
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--limit", type=int, help="use only this many images (smoke tests)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-pretrained", action="store_true", help="start from random weights, not ImageNet")
    train.add_argument("--cache-dir", type=Path, default=Path(".cache/chips"), help="face chip cache")
    train.add_argument("--model-version", default="1.0.0")

    evaluate = commands.add_parser("evaluate", help="write metrics.json and a Markdown report for a model")
    evaluate.add_argument("--data", type=Path, required=True, help="dataset folder or labels CSV")
    evaluate.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    evaluate.add_argument("--out", type=Path, required=True)
    evaluate.add_argument("--portraits", type=Path, help="labelled uncropped photos for the end-to-end check")
    evaluate.add_argument("--cache-dir", type=Path, default=Path(".cache/chips"), help="face chip cache")
    return parser


def _predict(args: argparse.Namespace) -> int:
    from facegender.pipeline import FaceGender

    fg = FaceGender()
    results = fg.predict_batch(args.photos, detect=not args.no_detect, return_exceptions=True)
    status = EXIT_OK
    rows: list[tuple[str, str, str, str, str]] = []
    record: dict[str, Any]
    for photo, result in zip(args.photos, results, strict=True):
        if isinstance(result, FaceGenderError):
            status = max(status, result.exit_code)
            record = {"file": str(photo), "faces": [], "error": {"code": result.code, "message": result.message}}
            rows.append((str(photo), "-", "error", result.code, result.message))
        elif not result:
            status = max(status, EXIT_NO_FACE)
            record = {"file": str(photo), "faces": [], "error": {"code": NoFaceError.code, "message": "no face found"}}
            rows.append((str(photo), "-", "no face", "", ""))
        else:
            record = {"file": str(photo), "faces": [asdict(face) for face in result], "error": None}
            for number, face in enumerate(result, start=1):
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
            print(json.dumps(record))
    if not args.json:
        _print_table(("file", "face", "class", "probability", "box"), rows)
    return status


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _serve(args: argparse.Namespace) -> int:
    for name in ("host", "port", "workers"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"FACEGENDER_{name.upper()}"] = str(value)
    from facegender.server.app import serve
    from facegender.settings import Settings

    serve(Settings())
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    try:
        from facegender.training.train import TrainConfig, train
    except ImportError as exc:
        raise SystemExit(f"facegender: training needs the [train] extra ({exc.name} is missing)") from None
    config = TrainConfig(
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        limit=args.limit,
        pretrained=not args.no_pretrained,
        cache_dir=args.cache_dir,
        model_version=args.model_version,
    )
    result = train(config, log=lambda line: print(line, flush=True))
    print(f"wrote {result.model_path} (best epoch {result.best_epoch}, temperature {result.temperature:.3f})")
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facegender.classify import DEFAULT_CLASSIFIER_PATH
    from facegender.evaluate import evaluate

    with tqdm(desc="face chips", unit="img", disable=None) as bar:
        result = evaluate(
            data=args.data,
            model=args.model or DEFAULT_CLASSIFIER_PATH,
            out=args.out,
            portraits=args.portraits,
            cache_dir=args.cache_dir,
            progress=bar.update,
        )
    print(result.report_path.read_text())
    print(f"wrote {result.metrics_path} and {result.report_path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    handlers = {"predict": _predict, "serve": _serve, "train": _train, "evaluate": _evaluate}
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
