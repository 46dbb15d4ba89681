"""A second opinion for the chips the gender model is unsure of: dlib's face-recognition network.

    pip install -e ".[train,descriptors]"
    facegender second-opinion --model src/facegender/models/gender.onnx --data ../shared/data/utkface \\
        --out src/facegender/models/gender-second-opinion.onnx --model-version 1.4.0

dlib's ResNet (trained to tell people apart on about three million faces; its weights are public domain, in the
``face-recognition-models`` package) describes a face with 128 numbers. Gender read from them errs on other
faces than our network does, so the two together err less than either. The file written is one ONNX graph
that takes the gender model's chips and gives its output, so :class:`~facegender.classify.GenderClassifier`
runs it as it runs any gender model (``facegender quantize --refine-with`` makes it the one that answers the
chips the int8 stage is unsure of):

1. the gender model, unchanged, gives its calibrated probabilities, taken as log-odds;
2. the part of the chip that the detector's box covers (``1 / CHIP_MARGIN`` of its side, at its centre),
   resized to dlib's 150 px, goes through dlib's network. The network is converted here from dlib's own file:
   :func:`read_dlib_network` reads dlib's serialisation, and the graph gives dlib's descriptors to float
   rounding (``tests/training/test_second_opinion.py`` compares them);
3. a probe, a logistic regression of gender on the descriptors, fitted on the TRAIN split's chips;
4. a stack, a logistic regression of the label on the two log-odds, fitted on the VALIDATION split: three
   numbers, which also calibrate the sum, as the temperature calibrates the gender model.

The descriptors and log-odds that the probe and the stack are fitted on come from the very graph that is
written (extra outputs, dropped afterwards), on chips made by :mod:`facegender.chips`, the serving pipeline's
code. The test split is never read. Needs the ``[train]`` (onnx) and ``[descriptors]`` extras.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnx
import onnx.compose
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from facegender.align import CHIP_MARGIN
from facegender.chips import make_chips
from facegender.classify import CLASSIFIER_INPUT_NAME, CLASSIFIER_OUTPUT_NAME, GenderClassifier
from facegender.data import load_dataset
from facegender.errors import DatasetError, MissingExtraError, ModelError
from facegender.quantize import quantize_static_int8, validation_scores
from facegender.training.float16 import store_weights_as_float16
from facegender.training.logistic import fit_logistic, logistic_log_odds

__all__ = [
    "DLIB_INPUT_SIZE",
    "DLIB_NETWORK_FILE",
    "DlibAffine",
    "DlibConvolution",
    "DlibNetwork",
    "DlibPool",
    "DlibStructure",
    "SecondOpinionResult",
    "build_second_opinion",
    "chip_descriptor_model",
    "descriptor_crop_side",
    "dlib_models_folder",
    "dlib_network_model",
    "dlib_structure",
    "load_dlib_network",
    "read_dlib_network",
    "save_dlib_network",
]

DLIB_INPUT_SIZE: Final = 150
DLIB_NETWORK_FILE: Final = "dlib_face_recognition_resnet_model_v1.dat"
"""dlib's face-recognition network, in :func:`dlib_models_folder`."""
_DESCRIPTORS: Final = "descriptors"
_GENDER_LOG_ODDS: Final = "gender_log_odds"
_OPSET: Final = 17
_IR_VERSION: Final = 8  # onnx 1.17+ writes newer versions than onnxruntime 1.2x reads
_CALIBRATION_IMAGES: Final = 512
_BATCH: Final = 64

Floats = NDArray[np.float64]
Progress = Callable[[int], None]


def dlib_models_folder() -> Path:
    """The folder of dlib's model files that the ``face-recognition-models`` package holds.

    Raises:
        MissingExtraError: the package is not installed.
    """
    # Found, not imported: the package's __init__ needs pkg_resources, which new setuptools no longer has.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MissingExtraError('dlib\'s models need the descriptors extra: pip install "facegender[descriptors]"')
    return Path(spec.origin).parent / "models"


@dataclass(frozen=True)
class DlibConvolution:
    """A convolution layer of dlib's network."""

    weights: NDArray[np.float32]  # (out, in, height, width)
    bias: NDArray[np.float32]
    stride: int
    padding: int


@dataclass(frozen=True)
class DlibAffine:
    """A per-channel scale and shift: dlib's batch normalisation, frozen."""

    gamma: NDArray[np.float32]
    beta: NDArray[np.float32]


@dataclass(frozen=True)
class DlibPool:
    """A max or average pool."""

    kind: str  # "max" or "avg"; a size of 0 pools everything
    size: int
    stride: int
    padding: int


@dataclass(frozen=True)
class DlibNetwork:
    """dlib's face-recognition ResNet as read from its file: the input's channel means (RGB, on 0-255) and its
    layers from the input on. Its inputs are divided by 256 after the means are taken off."""

    channel_means: tuple[float, float, float]
    input_size: int
    layers: tuple[DlibConvolution | DlibAffine | DlibPool, ...]
    projection: NDArray[np.float32]  # (256, 128): descriptor = pooled features @ projection


class _DlibStream:
    """dlib's serialisation: an integer is a byte giving the count of little-endian bytes that follow (0x80 set
    for a negative number); a string is its length, then its bytes; a float is a mantissa and a binary exponent,
    two integers; a tensor is version 2, four dimensions, then raw float32."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def integer(self) -> int:
        header = self.data[self.position]
        count = header & 0x0F
        value = int.from_bytes(self.data[self.position + 1 : self.position + 1 + count], "little")
        self.position += 1 + count
        return -value if header & 0x80 else value

    def string(self) -> str:
        length = self.integer()
        text = self.data[self.position : self.position + length].decode("ascii")
        self.position += length
        return text

    def real(self) -> float:
        mantissa = self.integer()
        return float(mantissa * 2.0 ** self.integer())

    def tensor(self) -> NDArray[np.float32]:
        if (version := self.integer()) != 2:
            raise ModelError(f"dlib tensor of version {version}, expected 2")
        count = int(np.prod([self.integer() for _ in range(4)]))
        values = np.frombuffer(self.data, "<f4", count, self.position).copy()
        self.position += 4 * count
        return values

    def seek(self, *markers: bytes) -> bool:
        """Move to the next of ``markers`` (the serialised names of layers); False at the end."""
        found = [index for marker in markers if (index := self.data.find(marker, self.position)) >= 0]
        if found:
            self.position = min(found)
        return bool(found)


def _marker(name: str) -> bytes:
    return bytes([1, len(name)]) + name.encode("ascii")


def read_dlib_network(path: Path) -> DlibNetwork:
    """Read dlib's ``dlib_face_recognition_resnet_model_v1.dat``.

    dlib writes a network from its loss layer down, then each layer's details from the input up; the layers
    that carry numbers (convolutions, per-channel affine transforms, pools, the last fully connected layer) are
    found by their serialised names, in order. The ReLUs and the residual additions carry none: their places
    follow from the architecture, which :func:`dlib_structure` describes.

    Raises:
        ModelError: the file is not that network.
    """
    stream = _DlibStream(path.read_bytes())
    if not stream.seek(_marker("input_rgb_image_sized")):
        raise ModelError(f"{path.name} is not a dlib network on RGB images")
    stream.string()
    means = (stream.real(), stream.real(), stream.real())
    height, width = stream.integer(), stream.integer()
    names = {_marker(name): name for name in ("con_4", "affine_", "max_pool_2", "avg_pool_2", "fc_2")}
    layers: list[DlibConvolution | DlibAffine | DlibPool] = []
    projection = None
    while stream.seek(*names):
        name = stream.string()
        if name == "con_4":
            parameters = stream.tensor()
            filters, rows, columns, stride, _, padding, _ = (stream.integer() for _ in range(7))
            weights = parameters[: parameters.size - filters].reshape(filters, -1, rows, columns)
            layers.append(DlibConvolution(weights, parameters[-filters:], stride, padding))
        elif name == "affine_":
            parameters = stream.tensor()
            half = parameters.size // 2
            layers.append(DlibAffine(parameters[:half], parameters[half:]))
        elif name == "fc_2":
            outputs, inputs = stream.integer(), stream.integer()
            projection = stream.tensor().reshape(inputs, outputs)
        else:
            size, _, stride, _, padding, _ = (stream.integer() for _ in range(6))
            layers.append(DlibPool(name[:3], size, stride, padding))
    if projection is None or height != width or not layers:
        raise ModelError(f"{path.name} is not dlib's face-recognition network")
    return DlibNetwork(means, height, tuple(layers), projection)


def save_dlib_network(network: DlibNetwork, path: Path) -> None:
    """Write ``network`` (dlib's own or one tuned by :mod:`facegender.training.second_opinion_tuning`) as an
    ``.npz``, its weights in float16: half the size, and the second opinion quantizes them to int8 anyway."""
    arrays: dict[str, Any] = {
        "channel_means": np.array(network.channel_means),
        "input_size": np.array(network.input_size),
        "layers": np.array(len(network.layers)),
        "projection": network.projection.astype(np.float16),
    }
    for index, layer in enumerate(network.layers):
        if isinstance(layer, DlibConvolution):
            arrays[f"{index}.convolution.weights"] = layer.weights.astype(np.float16)
            arrays[f"{index}.convolution.bias"] = layer.bias.astype(np.float16)
            arrays[f"{index}.convolution.geometry"] = np.array([layer.stride, layer.padding])
        elif isinstance(layer, DlibAffine):
            arrays[f"{index}.affine.gamma"] = layer.gamma.astype(np.float16)
            arrays[f"{index}.affine.beta"] = layer.beta.astype(np.float16)
        else:
            arrays[f"{index}.{layer.kind}_pool.geometry"] = np.array([layer.size, layer.stride, layer.padding])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_dlib_network(path: Path) -> DlibNetwork:
    """Read a network that :func:`save_dlib_network` wrote, or dlib's own ``.dat`` (:func:`read_dlib_network`).

    Raises:
        ModelError: the file is neither.
    """
    if path.suffix != ".npz":
        return read_dlib_network(path)
    try:
        with np.load(path) as stored:
            arrays = {key: stored[key] for key in stored.files}
        layers: list[DlibConvolution | DlibAffine | DlibPool] = []
        for index in range(int(arrays["layers"])):
            if f"{index}.convolution.weights" in arrays:
                stride, padding = (int(value) for value in arrays[f"{index}.convolution.geometry"])
                weights = arrays[f"{index}.convolution.weights"].astype(np.float32)
                layers.append(
                    DlibConvolution(weights, arrays[f"{index}.convolution.bias"].astype(np.float32), stride, padding)
                )
            elif f"{index}.affine.gamma" in arrays:
                gamma, beta = (arrays[f"{index}.affine.{name}"].astype(np.float32) for name in ("gamma", "beta"))
                layers.append(DlibAffine(gamma, beta))
            else:
                kind = "max" if f"{index}.max_pool.geometry" in arrays else "avg"
                size, stride, padding = (int(value) for value in arrays[f"{index}.{kind}_pool.geometry"])
                layers.append(DlibPool(kind, size, stride, padding))
        means = tuple(float(value) for value in arrays["channel_means"])
        network = DlibNetwork(
            (means[0], means[1], means[2]),
            int(arrays["input_size"]),
            tuple(layers),
            arrays["projection"].astype(np.float32),
        )
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path} is not a saved dlib network: {exc}") from None
    dlib_structure(network)
    return network


class _GraphBuilder:
    """Nodes and initialisers of an ONNX graph under construction, with unique names."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, kind: str) -> str:
        self._count += 1
        return f"{self.prefix}{kind}{self._count}"

    def constant(self, values: NDArray[np.generic], kind: str = "const") -> str:
        name = self.name(kind)
        self.initializers.append(numpy_helper.from_array(values, name))
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attributes: Any) -> str:
        output = output or self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def slice(self, x: str, *, starts: list[int], ends: list[int], axes: list[int] | None = None) -> str:
        """``x`` from ``starts`` to ``ends`` (excluded) along ``axes`` (default: the first ones)."""
        bounds = [self.constant(np.array(values, np.int64)) for values in (starts, ends, axes) if values is not None]
        return self.node("Slice", [x, *bounds])


@dataclass(frozen=True)
class _DlibBlock:
    """A residual block of dlib's network by the indices of its layers in :attr:`DlibNetwork.layers`: two
    (convolution, affine) pairs, and the average pool of the shortcut where the block downsamples."""

    first: tuple[int, int]
    second: tuple[int, int]
    shortcut_pool: int | None


@dataclass(frozen=True)
class DlibStructure:
    """Where each layer of a :class:`DlibNetwork` sits: a stem (convolution, affine, ReLU, max pool), residual
    blocks, and a last pool of everything. The ONNX graph and the trainable PyTorch copy both follow it."""

    stem: tuple[int, int]
    stem_pool: int
    blocks: tuple[_DlibBlock, ...]


def dlib_structure(network: DlibNetwork) -> DlibStructure:
    """The architecture of dlib's ResNet for face recognition, checked against ``network``'s layers.

    A 7x7 convolution and a max pool, then residual blocks (3x3 convolution, affine, ReLU, 3x3 convolution,
    affine, added to the block's input, ReLU). A block whose first convolution has stride 2 adds the 2x2 average
    pool of its input instead; where the two differ in channels or size, dlib adds them where they overlap and
    keeps the rest of the larger, which zero padding at the end of each axis reproduces. Average pooling of
    everything and the projection to 128 numbers end it.

    Raises:
        ModelError: the layers are not in that order.
    """
    layers = network.layers
    position = 0

    def take(kind: type[DlibConvolution | DlibAffine | DlibPool], what: str) -> int:
        nonlocal position
        if position >= len(layers) or not isinstance(layers[position], kind):
            raise ModelError(f"dlib's network: expected {what} at layer {position}")
        position += 1
        return position - 1

    def pair() -> tuple[int, int]:
        return take(DlibConvolution, "a convolution"), take(DlibAffine, "an affine transform")

    def pool(kind: str) -> int:
        index = take(DlibPool, f"a {kind} pool")
        if getattr(layers[index], "kind", None) != kind:
            raise ModelError(f"dlib's network: expected a {kind} pool at layer {index}")
        return index

    stem, stem_pool = pair(), pool("max")
    blocks = []
    while position < len(layers) and isinstance(layers[position], DlibConvolution):
        downsampling = getattr(layers[position], "stride", 1) != 1
        first, second = pair(), pair()
        blocks.append(_DlibBlock(first, second, pool("avg") if downsampling else None))
    final = pool("avg")
    if getattr(layers[final], "size", None) != 0 or position != len(layers):
        raise ModelError("dlib's network: expected it to end by pooling everything")
    return DlibStructure(stem, stem_pool, tuple(blocks))


def _dlib_descriptor_graph(network: DlibNetwork, builder: _GraphBuilder, images: str) -> None:
    """Add dlib's network (:func:`dlib_structure`) to ``builder``: float RGB ``images`` (N, 3, size, size, on
    0-255) in, descriptors (N, 128) out, named ``descriptors``. Each affine transform is folded into the convolution
    before it."""
    structure = dlib_structure(network)
    means = np.array(network.channel_means, np.float32).reshape(1, 3, 1, 1)
    x = builder.node("Sub", [images, builder.constant(means, "mean")])
    x = builder.node("Mul", [x, builder.constant(np.array(1 / 256, np.float32), "scale")])
    shape = (3, network.input_size, network.input_size)  # channels, rows, columns

    def convolve(
        x: str, shape: tuple[int, int, int], pair: tuple[int, int], relu: bool
    ) -> tuple[str, tuple[int, int, int]]:
        convolution, affine = (network.layers[index] for index in pair)
        assert isinstance(convolution, DlibConvolution) and isinstance(affine, DlibAffine)  # by dlib_structure
        weights = convolution.weights * affine.gamma[:, None, None, None]
        bias = convolution.bias * affine.gamma + affine.beta
        x = builder.node(
            "Conv",
            [
                x,
                builder.constant(weights.astype(np.float32), "weight"),
                builder.constant(bias.astype(np.float32), "bias"),
            ],
            kernel_shape=list(weights.shape[2:]),
            strides=[convolution.stride] * 2,
            pads=[convolution.padding] * 4,
        )
        side = 1 + (shape[1] + 2 * convolution.padding - weights.shape[2]) // convolution.stride
        return (builder.node("Relu", [x]) if relu else x), (weights.shape[0], side, side)

    def pool(x: str, shape: tuple[int, int, int], index: int) -> tuple[str, tuple[int, int, int]]:
        layer = network.layers[index]
        assert isinstance(layer, DlibPool)  # by dlib_structure
        op = "MaxPool" if layer.kind == "max" else "AveragePool"
        x = builder.node(op, [x], kernel_shape=[layer.size] * 2, strides=[layer.stride] * 2, pads=[layer.padding] * 4)
        side = 1 + (shape[1] + 2 * layer.padding - layer.size) // layer.stride
        return x, (shape[0], side, side)

    def widen(x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
        if shape == target:
            return x
        pads = np.array([0, 0, 0, 0, 0, *(t - s for t, s in zip(target, shape, strict=True))], np.int64)
        return builder.node("Pad", [x, builder.constant(pads, "pads")])

    x, shape = convolve(x, shape, structure.stem, relu=True)
    x, shape = pool(x, shape, structure.stem_pool)
    for block in structure.blocks:
        branch, branch_shape = convolve(x, shape, block.first, relu=True)
        branch, branch_shape = convolve(branch, branch_shape, block.second, relu=False)
        if block.shortcut_pool is not None:
            x, shape = pool(x, shape, block.shortcut_pool)
        target = (max(shape[0], branch_shape[0]), max(shape[1], branch_shape[1]), max(shape[2], branch_shape[2]))
        x = builder.node("Add", [widen(x, shape, target), widen(branch, branch_shape, target)])
        x, shape = builder.node("Relu", [x]), target
    x = builder.node("Flatten", [builder.node("GlobalAveragePool", [x])])
    builder.node("MatMul", [x, builder.constant(network.projection, "projection")], _DESCRIPTORS)


@dataclass(frozen=True)
class SecondOpinionResult:
    """What ``facegender second-opinion`` fitted, and how each part scores on the validation split (the stack's
    three numbers are fitted there, so its score is not held out)."""

    model_path: Path
    report_path: Path
    probe_train_accuracy: float
    gender_accuracy: float
    probe_accuracy: float
    second_opinion_accuracy: float
    second_opinion_ece: float
    stack: tuple[float, float, float]
    """The weights of the gender model's log-odds and the probe's, and the bias."""


def build_second_opinion(
    *,
    model: Path,
    data: Path,
    out: Path,
    network: Path | None = None,
    model_version: str | None = None,
    report: Path | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> SecondOpinionResult:
    """Write ``model`` with dlib's second opinion to ``out``, and what was fitted to ``report`` (default:
    ``out`` + .json). ``network`` is dlib's own (the default) or one that ``facegender tune-second-opinion``
    tuned (:func:`load_dlib_network` reads either). ``model_version`` defaults to the gender model's with
    ``+dlib``.

    Raises:
        ModelError: ``model`` cannot be loaded, lacks facegender metadata or is not a float gender model; or
            ``network`` is not a dlib network.
        DatasetError: ``data`` has no train or no validation images.
        MissingExtraError: dlib's models are not installed.
    """
    gender = GenderClassifier(model_path=model, refine=False)  # checks the metadata before any work
    descriptor_network = load_dlib_network(network or dlib_models_folder() / DLIB_NETWORK_FILE)
    items = load_dataset(data)
    train = [item for item in items if item.split == "train"]
    val = [item for item in items if item.split == "val"]
    if not train or not val:
        raise DatasetError(f"{data} needs images in both the train and the validation split")
    chips = make_chips(
        [item.path for item in train + val], size=gender.input_size, cache_dir=cache_dir, progress=progress
    )
    targets = np.array([item.target for item in train + val], dtype=np.float64)

    train_chips = chips.chips[: len(train)]
    descriptor = quantize_static_int8(
        chip_descriptor_model(descriptor_network, chip_size=gender.input_size),
        calibration=train_chips[:: max(1, len(train) // _CALIBRATION_IMAGES)][:_CALIBRATION_IMAGES],
    )
    combined = _combined_model(onnx.load(str(model)), descriptor, chip_size=gender.input_size)
    descriptors, gender_log_odds = _fitting_outputs(combined, chips.chips)
    is_train = np.arange(len(targets)) < len(train)
    probe = fit_logistic(descriptors[is_train], targets[is_train])
    probe_log_odds = logistic_log_odds(probe, descriptors)
    pair = np.stack([gender_log_odds, probe_log_odds], axis=1)
    stack = fit_logistic(pair[~is_train], targets[~is_train], l2=0.0)
    _set_fitted(combined, probe=probe, stack=stack)

    metadata = {prop.key: prop.value for prop in combined.metadata_props}
    metadata |= {
        "version": model_version or f"{metadata['version']}+dlib",
        "second_opinion": (
            f"dlib face-recognition ResNet (public domain){'' if network is None else ', tuned to tell gender,'} on"
            f" the centre {descriptor_crop_side(gender.input_size)} px of the chip at"
            f" {descriptor_network.input_size} px; probe fitted on {int(is_train.sum())} train chips, stack on"
            f" {int((~is_train).sum())} validation chips"
        ),
        "stack": ",".join(f"{weight:.6f}" for weight in stack),
        "gender_model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
    }
    if network is not None:
        metadata["descriptor_network_sha256"] = hashlib.sha256(network.read_bytes()).hexdigest()
    del combined.metadata_props[:]
    helper.set_model_props(combined, metadata)
    store_weights_as_float16(combined)
    onnx.checker.check_model(combined)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(combined, str(out))

    validation_chips, validation_targets = chips.chips[~is_train], targets[~is_train]
    found = chips.found[~is_train]
    probabilities = GenderClassifier(model_path=out, refine=False).predict(validation_chips)
    scores = validation_scores(probabilities, validation_targets.astype(np.int64), found)
    result = SecondOpinionResult(
        model_path=out,
        report_path=report or out.with_name(out.name + ".json"),
        probe_train_accuracy=float(((probe_log_odds[is_train] > 0) == targets[is_train]).mean()),
        gender_accuracy=float((((gender_log_odds[~is_train] > 0) == validation_targets) & found).mean()),
        probe_accuracy=float((((probe_log_odds[~is_train] > 0) == validation_targets) & found).mean()),
        second_opinion_accuracy=scores.accuracy,
        second_opinion_ece=scores.ece,
        stack=(float(stack[0]), float(stack[1]), float(stack[2])),
    )
    summary = {"gender_model": str(model), "data": str(data), "version": metadata["version"]} | {
        key: value for key, value in asdict(result).items() if key not in ("model_path", "report_path")
    }
    result.report_path.parent.mkdir(parents=True, exist_ok=True)
    result.report_path.write_text(json.dumps(summary, indent=2) + "\n")
    return result


def descriptor_crop_side(chip_size: int) -> int:
    """The side of the part of a chip that dlib's network sees: the detector's box, at the chip's centre."""
    return round(chip_size / CHIP_MARGIN)


def dlib_network_model(network: DlibNetwork) -> onnx.ModelProto:
    """dlib's network alone: uint8 RGB images of its input size (N, size, size, 3) in, descriptors out."""
    builder = _GraphBuilder("")
    pixels = builder.node("Transpose", [builder.node("Cast", ["images"], to=TensorProto.FLOAT)], perm=[0, 3, 1, 2])
    _dlib_descriptor_graph(network, builder, pixels)
    return _model(builder, "images", network.input_size)


def chip_descriptor_model(network: DlibNetwork, *, chip_size: int, crop_side: int | None = None) -> onnx.ModelProto:
    """Chips in, dlib's descriptors out: the centre ``crop_side`` pixels of each chip (default: the part inside
    the detector's box, as the second opinion uses), resized to dlib's input size, through dlib's network."""
    builder = _GraphBuilder("")
    crop = crop_side or descriptor_crop_side(chip_size)
    start = (chip_size - crop) // 2
    pixels = builder.node("Cast", [CLASSIFIER_INPUT_NAME], to=TensorProto.FLOAT)
    pixels = builder.slice(pixels, starts=[start, start], ends=[start + crop, start + crop], axes=[1, 2])
    pixels = builder.node("Transpose", [pixels], perm=[0, 3, 1, 2])
    batch_and_channels = builder.slice(builder.node("Shape", [pixels]), starts=[0], ends=[2])
    sizes = builder.node(
        "Concat",
        [batch_and_channels, builder.constant(np.array([network.input_size] * 2, np.int64))],
        axis=0,
    )
    pixels = builder.node("Resize", [pixels, "", "", sizes], mode="linear", coordinate_transformation_mode="half_pixel")
    _dlib_descriptor_graph(network, builder, pixels)
    return _model(builder, CLASSIFIER_INPUT_NAME, chip_size)


def _model(builder: _GraphBuilder, images: str, size: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        builder.nodes,
        "dlib_face_descriptor",
        [helper.make_tensor_value_info(images, TensorProto.UINT8, ["batch", size, size, 3])],
        [helper.make_tensor_value_info(_DESCRIPTORS, TensorProto.FLOAT, ["batch", 128])],
        builder.initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], ir_version=_IR_VERSION)


def _combined_model(gender: onnx.ModelProto, descriptor: onnx.ModelProto, *, chip_size: int) -> onnx.ModelProto:
    """The gender model and the descriptor model side by side on the same chips, joined by a probe and a stack
    whose weights are zero until :func:`_set_fitted`; with the descriptors and the gender model's log-odds as
    extra outputs, for fitting."""
    parts = [onnx.compose.add_prefix(gender, "gender/"), onnx.compose.add_prefix(descriptor, "dlib/")]
    builder = _GraphBuilder("stack/")
    # The gender model's log-odds, from its calibrated probabilities.
    floor = builder.constant(np.array(1e-7, np.float32), "floor")
    logs = builder.node("Log", [builder.node("Max", [f"gender/{CLASSIFIER_OUTPUT_NAME}", floor])])
    female, male = (builder.slice(logs, starts=[column], ends=[column + 1], axes=[1]) for column in (0, 1))
    gender_log_odds = builder.node("Sub", [male, female], _GENDER_LOG_ODDS)
    probe = builder.node(
        "Add",
        [
            builder.node(
                "MatMul", [f"dlib/{_DESCRIPTORS}", builder.constant(np.zeros((128, 1), np.float32), "probe_weights")]
            ),
            builder.constant(np.zeros(1, np.float32), "probe_bias"),
        ],
    )
    pair = builder.node("Concat", [gender_log_odds, probe], axis=1)
    log_odds = builder.node(
        "Add",
        [
            builder.node("MatMul", [pair, builder.constant(np.zeros((2, 1), np.float32), "stack_weights")]),
            builder.constant(np.zeros(1, np.float32), "stack_bias"),
        ],
    )
    # Female's logit is 0, male's the log-odds.
    logits = builder.node("Concat", [builder.node("Sub", [log_odds, log_odds]), log_odds], axis=1)
    builder.node("Softmax", [logits], CLASSIFIER_OUTPUT_NAME, axis=1)

    nodes, initializers = [], []
    for part, prefix in zip(parts, ("gender/", "dlib/"), strict=True):
        for node in part.graph.node:
            node.input[:] = [
                CLASSIFIER_INPUT_NAME if name == f"{prefix}{CLASSIFIER_INPUT_NAME}" else name for name in node.input
            ]
        nodes.extend(part.graph.node)
        initializers.extend(part.graph.initializer)
    graph = helper.make_graph(
        nodes + builder.nodes,
        "gender_with_second_opinion",
        [helper.make_tensor_value_info(CLASSIFIER_INPUT_NAME, TensorProto.UINT8, ["batch", chip_size, chip_size, 3])],
        [
            helper.make_tensor_value_info(CLASSIFIER_OUTPUT_NAME, TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info(f"dlib/{_DESCRIPTORS}", TensorProto.FLOAT, ["batch", 128]),
            helper.make_tensor_value_info(_GENDER_LOG_ODDS, TensorProto.FLOAT, ["batch", 1]),
        ],
        initializers + builder.initializers,
    )
    imports = {opset.domain: opset.version for part in parts for opset in part.opset_import}
    combined = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in imports.items()],
        ir_version=_IR_VERSION,
    )
    helper.set_model_props(combined, {prop.key: prop.value for prop in gender.metadata_props})
    return combined


def _fitting_outputs(model: onnx.ModelProto, chips: NDArray[np.uint8]) -> tuple[Floats, Floats]:
    """The descriptors and the gender model's log-odds of ``chips``, by ``model`` itself."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    descriptors, log_odds = [], []
    for start in range(0, len(chips), _BATCH):
        described, gender = session.run(
            [f"dlib/{_DESCRIPTORS}", _GENDER_LOG_ODDS], {CLASSIFIER_INPUT_NAME: chips[start : start + _BATCH]}
        )
        descriptors.append(described)
        log_odds.append(gender[:, 0])
    return np.concatenate(descriptors).astype(np.float64), np.concatenate(log_odds).astype(np.float64)


def _set_fitted(model: onnx.ModelProto, *, probe: Floats, stack: Floats) -> None:
    """Give the probe and the stack their fitted weights; keep the probabilities as the one output."""
    fitted = {
        "probe_weights": probe[:-1].reshape(-1, 1),
        "probe_bias": probe[-1:],
        "stack_weights": stack[:-1].reshape(-1, 1),
        "stack_bias": stack[-1:],
    }
    for initializer in model.graph.initializer:
        kind = initializer.name.removeprefix("stack/").rstrip("0123456789")
        if kind in fitted:
            initializer.CopyFrom(numpy_helper.from_array(fitted.pop(kind).astype(np.float32), initializer.name))
    if fitted:
        raise ModelError(f"the combined graph lacks {sorted(fitted)}")
    outputs = [output for output in model.graph.output if output.name == CLASSIFIER_OUTPUT_NAME]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
