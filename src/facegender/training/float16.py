"""Half-size ONNX files whose weights still run in float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

__all__ = ["export_chip_model", "store_weights_as_float16"]


def export_chip_model(
    module: torch.nn.Module,
    path: Path,
    *,
    chip_size: int,
    input_name: str,
    output_name: str,
    metadata: dict[str, str],
) -> None:
    """Export ``module`` (put in eval mode), which takes uint8 NHWC chips of ``chip_size`` in any number, to ``path``
    as ONNX with ``metadata`` and its weights stored as float16."""
    sample = torch.zeros((1, chip_size, chip_size, 3), dtype=torch.uint8)
    torch.onnx.export(
        module.eval(),
        (sample,),
        str(path),
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, metadata)
    store_weights_as_float16(model)
    onnx.save(model, str(path))


def store_weights_as_float16(model: onnx.ModelProto) -> None:
    """Halve the file: large weights are stored as float16 and cast back to float32 when loaded.

    onnxruntime folds the casts at session start, so inference still runs in float32; rounding the
    weights to float16 changes the probabilities by well under 1e-3.
    """
    graph = model.graph
    casts = []
    for initializer in graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT or np.prod(initializer.dims) < 1024:
            continue
        weights = onnx.numpy_helper.to_array(initializer)
        name = initializer.name
        initializer.CopyFrom(onnx.numpy_helper.from_array(weights.astype(np.float16), f"{name}.float16"))
        casts.append(onnx.helper.make_node("Cast", [f"{name}.float16"], [name], to=onnx.TensorProto.FLOAT))
    original = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + original)
