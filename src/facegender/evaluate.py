"""Evaluate a gender model: accuracy, loss, fairness by group, calibration, and end-to-end on photos.

Writes ``metrics.json``, ``report.md``, ``confusion_matrix.png`` and ``reliability.png``. Plotting needs
the ``[eval]`` extra (matplotlib); everything else runs on the serving dependencies.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegender.chips import make_chips
from facegender.classify import GenderClassifier
from facegender.data import AGE_BANDS, LabeledImage, Split, age_band, load_dataset
from facegender.decode import load_image
from facegender.pipeline import FaceGender
from facegender.results import LABELS
from facegender.settings import Settings

__all__ = [
    "HEAD_TURN_BANDS",
    "EvaluationResult",
    "evaluate",
    "expected_calibration_error",
    "head_turn_band",
    "portrait_collages",
]

ECE_BINS = 10
HEAD_TURN_BANDS: tuple[tuple[float, float, str], ...] = (
    (0, 15, "0-15"),
    (15, 30, "15-30"),
    (30, 45, "30-45"),
    (45, 60, "45-60"),
    (60, math.inf, "60-90"),
)
"""Bands of :func:`facegender.align.head_turn`, either way, in degrees: lower bound included, upper excluded."""
Progress = Callable[[int], None]
SPLIT_NAMES: dict[Split, str] = {"train": "train", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, Any]
    report_path: Path
    metrics_path: Path


def expected_calibration_error(
    confidence: NDArray[np.float64], correct: NDArray[np.bool_], *, bins: int = ECE_BINS
) -> tuple[float, list[dict[str, float]]]:
    """ECE over equal-width confidence bins, and the bins themselves for a reliability diagram."""
    edges = np.linspace(0.5 if confidence.min(initial=1.0) >= 0.5 else 0.0, 1.0, bins + 1)
    table = []
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (
            (confidence > low) & (confidence <= high) if low > edges[0] else (confidence >= low) & (confidence <= high)
        )
        if not inside.any():
            continue
        accuracy, mean_confidence = float(correct[inside].mean()), float(confidence[inside].mean())
        ece += inside.mean() * abs(accuracy - mean_confidence)
        table.append(
            {
                "low": float(low),
                "high": float(high),
                "count": int(inside.sum()),
                "accuracy": accuracy,
                "confidence": mean_confidence,
            }
        )
    return float(ece), table


def head_turn_band(turn: float | None) -> str | None:
    """The name of the band of ``HEAD_TURN_BANDS`` that holds ``turn`` either way; ``None`` for no turn (NaN)."""
    if turn is None or math.isnan(turn):
        return None
    return next(name for low, high, name in HEAD_TURN_BANDS if low <= abs(turn) < high)


def _accuracy(mask: NDArray[np.bool_], correct: NDArray[np.bool_]) -> dict[str, float | int]:
    count = int(mask.sum())
    return {"accuracy": float(correct[mask].mean()) if count else math.nan, "count": count}


def _classification_report(targets: NDArray[np.int64], predicted: NDArray[np.int64]) -> dict[str, dict[str, float]]:
    report: dict[str, dict[str, float]] = {}
    for index, label in enumerate(LABELS):
        true_positive = int(((predicted == index) & (targets == index)).sum())
        precision = true_positive / max(1, int((predicted == index).sum()))
        recall = true_positive / max(1, int((targets == index).sum()))
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[label] = {"precision": precision, "recall": recall, "f1": f1, "support": int((targets == index).sum())}
    report["macro avg"] = {
        key: float(np.mean([report[label][key] for label in LABELS])) for key in ("precision", "recall", "f1")
    } | {"support": len(targets)}
    return report


def _confusion(targets: NDArray[np.int64], predicted: NDArray[np.int64]) -> list[list[int]]:
    return [[int(((targets == t) & (predicted == p)).sum()) for p in range(len(LABELS))] for t in range(len(LABELS))]


def portrait_collages(
    items: Sequence[LabeledImage], *, cell: tuple[int, int] = (400, 500)
) -> list[tuple[NDArray[np.uint8], list[LabeledImage]]]:
    """Deterministic 2x2 collages of consecutive photos, each resized to one ``cell`` (width, height)."""
    import cv2

    collages = []
    for start in range(0, len(items) - 3, 4):
        group = list(items[start : start + 4])
        tiles = [cv2.resize(load_image(item.path), cell, interpolation=cv2.INTER_AREA) for item in group]
        top, bottom = np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)
        collages.append((np.concatenate([top, bottom], axis=0), group))
    return collages


def _portrait_metrics(fg: FaceGender, portraits: Path) -> dict[str, Any]:
    items = load_dataset(portraits)
    found = 0
    mistakes = []
    turn_bands, rights = [], []
    for item, faces in zip(items, fg.predict_batch([item.path for item in items]), strict=True):
        found += bool(faces)
        right = bool(faces) and faces[0].label == item.label
        if not right:
            mistakes.append(str(item.path.relative_to(portraits)))
        turn_bands.append((head_turn_band(faces[0].head_turn) if faces else None) or "")
        rights.append(right)
    turn_band_of, portrait_correct = np.array(turn_bands), np.array(rights)
    collage_right, collage_faces = 0, 0
    width, height = 400, 500
    for collage, group in portrait_collages(items, cell=(width, height)):
        faces = fg.predict(collage)
        for quadrant, item in enumerate(group):
            x0, y0 = (quadrant % 2) * width, (quadrant // 2) * height
            inside = [
                f
                for f in faces
                if x0 <= f.box.left + f.box.width / 2 < x0 + width and y0 <= f.box.top + f.box.height / 2 < y0 + height
            ]
            collage_faces += 1
            collage_right += bool(inside) and max(inside, key=lambda f: f.box.area).label == item.label
    return {
        "photos": len(items),
        "face_recall": found / len(items),
        "accuracy_end_to_end": int(portrait_correct.sum()) / len(items),
        "mistakes": mistakes,
        "by_head_turn": {name: _accuracy(turn_band_of == name, portrait_correct) for _, _, name in HEAD_TURN_BANDS},
        "collage_faces": collage_faces,
        "collage_accuracy": collage_right / max(1, collage_faces),
    }


def evaluate(
    *,
    data: Path,
    model: Path,
    out: Path,
    portraits: Path | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    split: Split = "test",
) -> EvaluationResult:
    """Evaluate ``model`` on the splits of ``data`` (and end to end on ``portraits``); write the report.

    Accuracy and loss are given for every split evaluated; the rest (groups, calibration, classification
    report, confusion matrix) for ``split`` alone, under ``metrics[split]``. ``split="val"`` compares candidate
    models without looking at the test split, which is kept for the final report: its chips are not read, and
    no figure of it is written.
    """
    classifier = GenderClassifier(model_path=model)
    evaluated = [name for name in SPLIT_NAMES if split == "test" or name != "test"]
    items = [item for item in load_dataset(data) if item.split in evaluated]
    chip_set = make_chips(
        [item.path for item in items], size=classifier.input_size, cache_dir=cache_dir, progress=progress
    )
    probabilities = classifier.predict(chip_set.chips).astype(np.float64)
    targets = np.array([item.target for item in items], dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    # A face the detector misses counts as a wrong answer, as it would for a user.
    correct = (predicted == targets) & chip_set.found
    nll = -np.log(np.clip(probabilities[np.arange(len(targets)), targets], 1e-12, 1.0))
    splits = np.array([item.split for item in items])

    metrics: dict[str, Any] = {
        "model": {"path": str(model), "name": classifier.name, "version": classifier.version},
        "data": str(data),
        "splits": {},
    }
    for name in evaluated:
        mask = splits == name
        metrics["splits"][name] = {
            "count": int(mask.sum()),
            "accuracy": float(correct[mask].mean()) if mask.any() else math.nan,
            "loss": float(nll[mask].mean()) if mask.any() else math.nan,
            "face_found": float(chip_set.found[mask].mean()) if mask.any() else math.nan,
        }
    chosen = splits == split
    chosen_items = [item for item, is_chosen in zip(items, chosen, strict=True) if is_chosen]
    split_targets, split_predicted, split_correct = targets[chosen], predicted[chosen], correct[chosen]
    adult = np.array([item.is_adult is True for item in chosen_items])
    child = np.array([item.is_adult is False for item in chosen_items])
    races = sorted({item.race for item in chosen_items if item.race})
    race_of = np.array([item.race or "" for item in chosen_items])
    band_of = np.array([age_band(item.age) or "" for item in chosen_items])
    turn_band_of = np.array([head_turn_band(float(turn)) or "" for turn in chip_set.head_turns[chosen]])
    confidence = probabilities[chosen].max(axis=1)
    ece, bins = expected_calibration_error(confidence, split_predicted == split_targets)
    by_race = {race: _accuracy(race_of == race, split_correct) for race in races}
    by_race_adults = {race: _accuracy((race_of == race) & adult, split_correct) for race in races}
    metrics["detailed_split"] = split
    metrics[split] = {
        "accuracy": float(split_correct.mean()) if len(split_correct) else math.nan,
        "adults": _accuracy(adult, split_correct),
        "children": _accuracy(child, split_correct),
        "by_race": by_race,
        "by_race_adults": by_race_adults,
        "worst_race_adults": min(by_race_adults.items(), key=lambda kv: kv[1]["accuracy"])[0] if races else None,
        "by_age_band": {name: _accuracy(band_of == name, split_correct) for _, _, name in AGE_BANDS},
        "by_head_turn": {name: _accuracy(turn_band_of == name, split_correct) for _, _, name in HEAD_TURN_BANDS},
        "by_head_turn_adults": {
            name: _accuracy((turn_band_of == name) & adult, split_correct) for _, _, name in HEAD_TURN_BANDS
        },
        "classification_report": _classification_report(split_targets, split_predicted),
        "confusion_matrix": {
            "labels": list(LABELS),
            "rows_true_cols_predicted": _confusion(split_targets, split_predicted),
        },
        "ece": ece,
        "reliability_bins": bins,
    }
    if portraits is not None:
        settings = Settings(classifier_path=model)
        metrics["portraits"] = _portrait_metrics(FaceGender(settings=settings), portraits)
    out.mkdir(parents=True, exist_ok=True)
    matrix = metrics[split]["confusion_matrix"]["rows_true_cols_predicted"]
    _plot_confusion(matrix, SPLIT_NAMES[split], out / "confusion_matrix.png")
    _plot_reliability(bins, ece, SPLIT_NAMES[split], out / "reliability.png")
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    report_path = out / "report.md"
    report_path.write_text(render_report(metrics))
    return EvaluationResult(metrics, report_path, metrics_path)


def _pct(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def render_report(metrics: dict[str, Any]) -> str:
    """The Markdown report; also what the README's Model section shows."""
    split = metrics["detailed_split"]
    detail, name = metrics[split], SPLIT_NAMES[split]
    lines = [
        f"# Evaluation of {metrics['model']['name']} {metrics['model']['version']}",
        "",
        f"Data: `{metrics['data']}`, split by content hash (80/10/10). A chip whose face the detector misses "
        "counts as wrong.",
        "",
        "| split | images | accuracy | loss | face found |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for each, row in metrics["splits"].items():
        lines.append(
            f"| {SPLIT_NAMES[each]} | {row['count']} | {_pct(row['accuracy'])} | {_pct(row['loss'])} | "
            f"{_pct(row['face_found'])} |"
        )
    lines += [
        "",
        f"## {name.capitalize()} split",
        "",
        "| measure | accuracy | images |",
        "| --- | ---: | ---: |",
        f"| all ages | {_pct(detail['accuracy'])} | {metrics['splits'][split]['count']} |",
        f"| adults (18+) | {_pct(detail['adults']['accuracy'])} | {detail['adults']['count']} |",
        f"| children (<18) | {_pct(detail['children']['accuracy'])} | {detail['children']['count']} |",
    ]
    worst = detail["worst_race_adults"]
    if worst:
        lines.append(
            f"| worst race group among adults ({worst}) | {_pct(detail['by_race_adults'][worst]['accuracy'])} | "
            f"{detail['by_race_adults'][worst]['count']} |"
        )
    lines.append(f"| expected calibration error (10 bins) | {detail['ece']:.4f} | |")
    if "portraits" in metrics:
        portraits = metrics["portraits"]
        lines += [
            f"| portraits end to end (no face = wrong) | {_pct(portraits['accuracy_end_to_end'])} | "
            f"{portraits['photos']} |",
            f"| portraits face recall | {_pct(portraits['face_recall'])} | {portraits['photos']} |",
            f"| 2x2 portrait collages, each face found and right | {_pct(portraits['collage_accuracy'])} | "
            f"{portraits['collage_faces']} |",
        ]
    lines += [
        "",
        f"### By race ({name})",
        "",
        "| race | all ages | images | adults | images |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [_group_row(race, row, detail["by_race_adults"][race]) for race, row in detail["by_race"].items()]
    lines += ["", f"### By age band ({name})", "", "| age | accuracy | images |", "| --- | ---: | ---: |"]
    lines += [f"| {band} | {_pct(row['accuracy'])} | {row['count']} |" for band, row in detail["by_age_band"].items()]
    lines += _head_turn_lines(metrics)
    lines += [
        "",
        f"### Classification report ({name})",
        "",
        "| class | precision | recall | f1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |"
        for label, row in detail["classification_report"].items()
    ]
    matrix = detail["confusion_matrix"]["rows_true_cols_predicted"]
    lines += [
        "",
        f"### Confusion matrix ({name}; rows true, columns predicted)",
        "",
        "| | female | male |",
        "| --- | ---: | ---: |",
        f"| female | {matrix[0][0]} | {matrix[0][1]} |",
        f"| male | {matrix[1][0]} | {matrix[1][1]} |",
        "",
        "![confusion matrix](confusion_matrix.png) ![reliability diagram](reliability.png)",
        "",
    ]
    return "\n".join(lines)


def _head_turn_lines(metrics: dict[str, Any]) -> list[str]:
    """The "By head turn" table: the split's chips, and the portraits where they were evaluated."""
    split = metrics["detailed_split"]
    detail, name = metrics[split], SPLIT_NAMES[split]
    portraits = metrics.get("portraits", {}).get("by_head_turn")
    header = f"| head turn, degrees either way | {name}: all ages | images | adults | images |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    lines = [
        "",
        f"### By head turn ({name}{' and portraits' if portraits else ''})",
        "",
        "Estimated from the detector's keypoints (`facegender.align.head_turn`); a face not found has no turn "
        "and is left out here.",
        "",
        header + (" portraits end to end | photos |" if portraits else ""),
        rule + (" ---: | ---: |" if portraits else ""),
    ]
    for band, row in detail["by_head_turn"].items():
        line = _group_row(band, row, detail["by_head_turn_adults"][band])
        if portraits:
            line += f" {_pct(portraits[band]['accuracy'])} | {portraits[band]['count']} |"
        lines.append(line)
    return lines


def _group_row(group: str, row: dict[str, Any], adult_row: dict[str, Any]) -> str:
    """``| group | all ages | images | adults | images |``"""
    adults = f"{_pct(adult_row['accuracy'])} | {adult_row['count']}"
    return f"| {group} | {_pct(row['accuracy'])} | {row['count']} | {adults} |"


def _plot_confusion(matrix: list[list[int]], split_name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3.5), dpi=100)
    axes.imshow(matrix, cmap="Blues")
    for row in range(2):
        for col in range(2):
            axes.text(col, row, str(matrix[row][col]), ha="center", va="center")
    axes.set_xticks([0, 1], LABELS)
    axes.set_yticks([0, 1], LABELS)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"Confusion matrix ({split_name})")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _plot_reliability(bins: list[dict[str, float]], ece: float, split_name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3.5), dpi=100)
    axes.plot([0.5, 1], [0.5, 1], linestyle="--", color="grey", label="perfect")
    axes.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label="model")
    axes.set_xlabel("confidence")
    axes.set_ylabel("accuracy")
    axes.set_title(f"Reliability ({split_name}), ECE {ece:.3f}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
