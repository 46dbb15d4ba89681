"""An int8 first stage for the gender model: a leaner float graph, quantised, that defers to the float
model on the chips it is unsure of.

    facegender quantize --model src/facegender/models/gender.onnx --data ../shared/data/utkface \\
        --out src/facegender/models/gender-int8.onnx --report reports/model/quantization.json

Every step is deterministic, so the same command gives the same file:

1. Weights stored as float16 become float32 initialisers again (the quantiser only quantises initialisers).
2. Two rewrites that leave the outputs as they were, to float rounding: the input normalisation
   ``(x - mean) / std`` becomes a 1x1 depthwise convolution, which quantises and runs in the network's own
   layout; and the chip and its mirror image go through one copy of the backbone as one batch, instead of
   through two copies one after the other.
3. onnxruntime's static quantisation: QDQ format, int8 weights per output channel, uint8 activations whose
   ranges (minimum to maximum) are measured on face chips of the TRAIN split. The head after the last
   convolution (pooling, classifier, mirror mean, temperature, softmax) stays float: it costs next to nothing, and
   quantised probabilities would come in steps of 1/255 and not sum to one.
4. The int8 model's metadata names the refining model (``refine_with``, relative to the int8 file's folder:
   the float model, or the model given as ``refine_with``, such as the float model with a second opinion) and
   ``refine_margin``: :class:`~facegender.classify.GenderClassifier` has the refining model classify again
   the chips whose top int8 probability is below 0.5 + margin. Quantisation moves most probabilities a
   little but a few by much more, and near 0.5 is where that changes the answer.
5. The float model, the int8 stage alone and the int8 stage with its refinement (what ships) are compared
   on the VALIDATION split (accuracy with a missed face counted wrong, expected calibration error,
   agreement with the float model), written as JSON (by default next to the model). The test split is never
   read. The result is fit to ship when it loses less than ``MAX_ACCURACY_DROP`` of validation accuracy
   and its ECE stays at most ``MAX_ECE``.

Needs the ``[train]`` extra (``onnx``; the quantiser lives in onnxruntime).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from facegender.chips import make_chips
from facegender.classify import CLASSIFIER_INPUT_NAME, GenderClassifier
from facegender.data import load_dataset
from facegender.errors import DatasetError, ModelError
from facegender.evaluate import expected_calibration_error
from facegender.results import LABELS

__all__ = [
    "MAX_ACCURACY_DROP",
    "MAX_ECE",
    "QuantizationResult",
    "Scores",
    "prepare_float_graph",
    "quantize_classifier",
    "quantize_static_int8",
    "validation_scores",
]

MAX_ACCURACY_DROP: Final = 0.003
MAX_ECE: Final = 0.03
_CALIBRATION_BATCH: Final = 16

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Scores:
    """One model on the validation split."""

    accuracy: float
    ece: float
    count: int


@dataclass(frozen=True)
class QuantizationResult:
    model_path: Path
    report_path: Path
    float_scores: Scores
    int8_scores: Scores
    """The int8 model alone."""
    shipped_scores: Scores
    """The int8 model with the refining model redoing its unsure chips."""
    int8_agreement: float
    """The share of validation chips where the int8 model alone gives the float model's class."""
    shipped_agreement: float
    refined_share: float
    """The share of validation chips that the refining model classified again."""

    @property
    def accuracy_drop(self) -> float:
        return self.float_scores.accuracy - self.shipped_scores.accuracy

    @property
    def fit_to_ship(self) -> bool:
        return self.accuracy_drop < MAX_ACCURACY_DROP and self.shipped_scores.ece <= MAX_ECE


def quantize_classifier(
    *,
    model: Path,
    data: Path,
    out: Path,
    calibration_images: int = 512,
    refine_margin: float = 0.15,
    refine_with: Path | None = None,
    mirror: bool = True,
    report: Path | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> QuantizationResult:
    """Write the int8 model to ``out`` and its comparison with ``model`` to ``report`` (default: ``out`` + .json).

    ``mirror=False`` makes an int8 stage that sees each chip alone, without its mirror image: half the work,
    while the float model it refers unsure chips to still averages both.

    ``refine_with`` is the model that answers the unsure chips (default: ``model`` itself), such as ``model``
    with a second opinion (:mod:`facegender.training.second_opinion`); the int8 model takes its version.

    Raises:
        ModelError: ``model`` cannot be loaded or lacks facegender metadata.
        DatasetError: ``data`` has no train or no validation images.
    """
    source = GenderClassifier(model_path=model)  # checks the metadata before any work
    refine_with = refine_with or model
    refiner = source if refine_with == model else GenderClassifier(model_path=refine_with, refine=False)
    if refiner.input_size != source.input_size:
        raise ModelError(f"{refine_with.name} takes {refiner.input_size} px chips, not {source.input_size}")
    items = load_dataset(data)
    train = [item for item in items if item.split == "train"]
    val = [item for item in items if item.split == "val"]
    if not train or not val:
        raise DatasetError(f"{data} needs images in both the train and the validation split")
    step = max(1, len(train) // calibration_images)
    calibration = make_chips(
        [item.path for item in train[::step][:calibration_images]],
        size=source.input_size,
        cache_dir=cache_dir,
        progress=progress,
    )
    validation = make_chips([item.path for item in val], size=source.input_size, cache_dir=cache_dir, progress=progress)

    exported = onnx.load(str(model))
    float_model = prepare_float_graph(exported, mirror=mirror)
    quantized = quantize_static_int8(float_model, calibration=calibration.chips, exclude=_head)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {prop.key: prop.value for prop in exported.metadata_props}
    metadata |= {
        "version": f"{refiner.version}+int8",
        "quantization": f"int8 QDQ, weights per channel, activations min-max on {len(calibration.chips)} train chips"
        + ("" if mirror else ", chip alone (no mirror averaging)"),
        "float_model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
    }
    if refine_margin > 0:
        metadata |= {
            "refine_with": os.path.relpath(refine_with, out.parent),
            "refine_with_sha256": hashlib.sha256(refine_with.read_bytes()).hexdigest(),
            "refine_margin": f"{refine_margin:g}",
        }
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, metadata)
    onnx.save(quantized, str(out))

    targets = np.array([item.target for item in val], dtype=np.int64)
    float_probabilities = source.predict(validation.chips)
    int8_probabilities = GenderClassifier(model_path=out, refine=False).predict(validation.chips)
    shipped = GenderClassifier(model_path=out)
    shipped_probabilities = shipped.predict(validation.chips)
    float_classes = float_probabilities.argmax(axis=1)
    result = QuantizationResult(
        model_path=out,
        report_path=report or out.with_name(out.name + ".json"),
        float_scores=validation_scores(float_probabilities, targets, validation.found),
        int8_scores=validation_scores(int8_probabilities, targets, validation.found),
        shipped_scores=validation_scores(shipped_probabilities, targets, validation.found),
        int8_agreement=float((int8_probabilities.argmax(axis=1) == float_classes).mean()),
        shipped_agreement=float((shipped_probabilities.argmax(axis=1) == float_classes).mean()),
        refined_share=float(shipped.unsure(int8_probabilities).mean()) if shipped.refiner else 0.0,
    )
    summary = {
        "float_model": str(model),
        "int8_model": str(out),
        "refine_with": str(refine_with),
        "data": str(data),
        "calibration_images": len(calibration.chips),
        "validation_images": len(val),
        "refine_margin": refine_margin,
        "float": asdict(result.float_scores),
        "int8_alone": asdict(result.int8_scores) | {"agreement_with_float": result.int8_agreement},
        "shipped": asdict(result.shipped_scores)
        | {"agreement_with_float": result.shipped_agreement, "refined_share": result.refined_share},
        "accuracy_drop": result.accuracy_drop,
        "fit_to_ship": result.fit_to_ship,
        "criteria": {"max_accuracy_drop": MAX_ACCURACY_DROP, "max_ece": MAX_ECE},
        "onnxruntime": ort.__version__,
    }
    result.report_path.parent.mkdir(parents=True, exist_ok=True)
    result.report_path.write_text(json.dumps(summary, indent=2) + "\n")
    return result


def quantize_static_int8(
    model: onnx.ModelProto,
    *,
    calibration: NDArray[np.uint8],
    exclude: Callable[[onnx.GraphProto], list[str]] = lambda graph: [],
) -> onnx.ModelProto:
    """``model`` (input: chips) quantised by onnxruntime: QDQ, int8 weights per output channel, uint8
    activations whose ranges (minimum to maximum) are measured on ``calibration`` chips. ``exclude`` names the
    nodes to keep float, given the graph as the quantiser sees it (after its shape inference)."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared, inferred, quantized = (Path(tmp) / name for name in ("float.onnx", "inferred.onnx", "int8.onnx"))
        onnx.save(model, str(prepared))
        quant_pre_process(str(prepared), str(inferred), skip_symbolic_shape=True)
        quantize_static(
            str(inferred),
            str(quantized),
            _Chips(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=exclude(onnx.load(str(inferred)).graph),
        )
        result = onnx.load(str(quantized))
    _prune(result.graph)  # the quantiser leaves the constants of the activations it folded away
    return result


def prepare_float_graph(model: onnx.ModelProto, *, mirror: bool = True) -> onnx.ModelProto:
    """A copy of the exported float model with float32 weights and the two output-preserving rewrites.

    With ``mirror=False`` the mirror averaging is dropped instead: the chip alone, at half the cost.

    Raises:
        ModelError: the graph is not the shape :mod:`facegender.training.train` exports.
    """
    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    _float32_weights(prepared.graph)
    _normalisation_as_convolution(prepared.graph)
    if mirror:
        _mirror_as_one_batch(prepared.graph)
    else:
        _chip_alone(prepared.graph)
    _prune(prepared.graph)
    onnx.checker.check_model(prepared)
    return prepared


class _Chips(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime has no type hints
    def __init__(self, chips: NDArray[np.uint8]) -> None:
        self._batches: Iterator[NDArray[np.uint8]] = iter(
            chips[start : start + _CALIBRATION_BATCH] for start in range(0, len(chips), _CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, NDArray[np.uint8]] | None:
        batch = next(self._batches, None)
        return None if batch is None else {CLASSIFIER_INPUT_NAME: batch}


def validation_scores(
    probabilities: NDArray[np.float32], targets: NDArray[np.int64], found: NDArray[np.bool_]
) -> Scores:
    """Accuracy (a face the detector missed counts as wrong) and ECE of a model's probabilities."""
    predicted = probabilities.argmax(axis=1)
    # A face the detector misses counts as wrong, as in facegender.evaluate.
    correct = (predicted == targets) & found
    ece, _ = expected_calibration_error(probabilities.max(axis=1).astype(np.float64), predicted == targets)
    return Scores(accuracy=float(correct.mean()), ece=ece, count=len(targets))


def _float32_weights(graph: onnx.GraphProto) -> None:
    """Replace ``Cast(float16 initialiser)`` nodes by float32 initialisers of the same name."""
    initialisers = {init.name: init for init in graph.initializer}
    kept = []
    for node in graph.node:
        source = initialisers.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if source is not None and source.data_type == onnx.TensorProto.FLOAT16:
            weights = numpy_helper.to_array(source).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(weights, node.output[0]))
        else:
            kept.append(node)
    _replace_nodes(graph, kept)


def _normalisation_as_convolution(graph: onnx.GraphProto) -> None:
    """``Div(Sub(x, mean), std)`` with per-channel constants becomes one 1x1 depthwise ``Conv`` on ``x``."""
    constants = _constants(graph)
    nodes = list(graph.node)
    sub = next((n for n in nodes if n.op_type == "Sub" and n.input[1] in constants), None)
    div = next((n for n in nodes if sub and n.op_type == "Div" and n.input[0] == sub.output[0]), None)
    if sub is None or div is None or div.input[1] not in constants:
        raise ModelError("the model has no (x - mean) / std input normalisation to rewrite")
    mean, std = constants[sub.input[1]].reshape(-1), constants[div.input[1]].reshape(-1)
    graph.initializer.extend(
        [
            numpy_helper.from_array((1 / std).astype(np.float32).reshape(-1, 1, 1, 1), "normalise.weight"),
            numpy_helper.from_array((-mean / std).astype(np.float32), "normalise.bias"),
        ]
    )
    conv = helper.make_node(
        "Conv",
        [sub.input[0], "normalise.weight", "normalise.bias"],
        [div.output[0]],
        name="normalise",
        group=len(mean),
        kernel_shape=[1, 1],
    )
    _replace_nodes(graph, [conv if n is sub else n for n in nodes if n is not div])


@dataclass(frozen=True)
class _Mirror:
    """The export's mirror averaging, ``(net(x) + net(flip(x))) / 2`` with two copies of ``net``."""

    nodes: list[onnx.NodeProto]
    flip: onnx.NodeProto
    add: onnx.NodeProto
    halve: onnx.NodeProto

    @classmethod
    def find(cls, graph: onnx.GraphProto) -> _Mirror:
        nodes = list(graph.node)
        producer = {output: node for node in nodes for output in node.output}
        flip = next((n for n in nodes if n.op_type == "Slice"), None)
        add = next(
            (
                n
                for n in nodes
                if n.op_type == "Add" and all(i in producer and producer[i].op_type == "Gemm" for i in n.input)
            ),
            None,
        )
        halve = next((n for n in nodes if add and n.op_type == "Div" and n.input[0] == add.output[0]), None)
        if flip is None or add is None or halve is None:
            raise ModelError("the model has no mirror averaging to rewrite")
        return cls(nodes=nodes, flip=flip, add=add, halve=halve)

    def backbone(self, logits: str) -> set[int]:
        """The nodes (by id) of the copy of ``net`` behind ``logits``, back to the image or its mirror."""
        producer = {output: node for node in self.nodes for output in node.output}
        image = self.flip.input[0]
        found: set[int] = set()
        pending = [logits]
        while pending:
            node = producer.get(pending.pop())
            if node is None or node is self.flip or id(node) in found or image in node.output:
                continue
            found.add(id(node))
            pending.extend(node.input)
        return found


def _mirror_as_one_batch(graph: onnx.GraphProto) -> None:
    """Run the chip and its mirror image as one batch through one copy of the backbone:
    ``mean(net(concat(x, flip(x))).reshape(2, N, classes), axis 0)``."""
    mirror = _Mirror.find(graph)
    image, mirrored, logits = mirror.flip.input[0], mirror.flip.output[0], mirror.add.input[0]
    backbone = mirror.backbone(logits)
    for node in mirror.nodes:
        if id(node) in backbone:
            for index, name in enumerate(node.input):
                if name in (image, mirrored):
                    node.input[index] = "mirror.both"
    pairs_shape = np.array([2, -1, len(LABELS)], dtype=np.int64)
    graph.initializer.append(numpy_helper.from_array(pairs_shape, "mirror.pairs_shape"))
    rewritten = []
    for node in mirror.nodes:
        if node is mirror.add or node is mirror.halve:
            continue
        rewritten.append(node)
        if node is mirror.flip:
            rewritten.append(
                helper.make_node("Concat", [image, mirrored], ["mirror.both"], name="mirror.batch", axis=0)
            )
        if logits in node.output:
            rewritten += [
                helper.make_node("Reshape", [logits, "mirror.pairs_shape"], ["mirror.pairs"], name="mirror.pairs"),
                helper.make_node(
                    "ReduceMean", ["mirror.pairs"], [mirror.halve.output[0]], name="mirror.mean", axes=[0], keepdims=0
                ),
            ]
    _replace_nodes(graph, rewritten)


def _chip_alone(graph: onnx.GraphProto) -> None:
    """``net(x)`` in place of ``(net(x) + net(flip(x))) / 2``; the mirrored copy is pruned away."""
    mirror = _Mirror.find(graph)
    readers_of_mirror = {id(node) for node in mirror.nodes if mirror.flip.output[0] in node.input}
    direct = next(logits for logits in mirror.add.input if not readers_of_mirror & mirror.backbone(logits))
    alone = helper.make_node("Identity", [direct], [mirror.halve.output[0]], name="mirror.none")
    _replace_nodes(graph, [alone if n is mirror.halve else n for n in mirror.nodes if n is not mirror.add])


def _head(graph: onnx.GraphProto) -> list[str]:
    """The names of the nodes after the backbone: those fed, at any remove, by the last convolution's
    output, except the activation applied to it directly."""
    nodes = list(graph.node)
    last = max(index for index, node in enumerate(nodes) if node.op_type == "Conv")
    fed = set(nodes[last].output)
    head = []
    for node in nodes[last + 1 :]:
        if any(name in fed for name in node.input):
            if not (node.op_type in ("Clip", "Relu") and node.input[0] in nodes[last].output):
                head.append(node.name)
            fed.update(node.output)
    return head


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initialisers that no output depends on any more."""
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(output in needed for output in node.output):
            kept.append(node)
            needed.update(node.input)
    _replace_nodes(graph, kept[::-1])
    alive = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(alive)


def _constants(graph: onnx.GraphProto) -> dict[str, NDArray[np.float32]]:
    return {init.name: numpy_helper.to_array(init).astype(np.float32) for init in graph.initializer}


def _replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Make ``nodes`` the graph's nodes, in an order where each comes after the nodes it reads from."""
    available = {value.name for value in graph.input} | {init.name for init in graph.initializer} | {""}
    ordered: list[onnx.NodeProto] = []
    pending = list(nodes)
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise ModelError("the rewritten graph has a cycle or reads a value that nothing produces")
        for node in ready:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            ordered.append(copy)
            available.update(node.output)
        pending = [node for node in pending if not any(node is r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)
