"""A ``gender.pt`` from an exported ``gender.onnx``, to fine-tune a model whose training checkpoint is gone.

    python tools/checkpoint_from_onnx.py --data ../shared/data/utkface --out runs/shipped.pt \
        src/facegender/models/gender.onnx
    facegender train --data ../shared/data/utkface --out runs/tuned --initial-weights runs/shipped.pt ...

The export folds each batch normalisation into the convolution before it, so the graph keeps one weight and one
bias per convolution. Each goes back into its convolution, and each batch normalisation passes the convolution's
output through, adding its bias: the network gives the graph's answers. It has no statistics of its own, which
is why a fine-tune (``--initial-weights``) keeps every batch normalisation's statistics as they start. Prints the
largest difference between the graph's probabilities and the network's, on 512 train chips.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from facegender.chips import DEFAULT_CACHE_DIR, make_chips
from facegender.classify import GenderClassifier
from facegender.data import load_dataset
from facegender.training.network import GenderNet
from facegender.training.train import _Exportable

_CHIPS = 512


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="float ONNX gender model written by facegender train")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder or labels CSV (its train split)")
    parser.add_argument("--out", type=Path, required=True, help=".pt file to write")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")
    args = parser.parse_args(argv)

    graph = onnx.load(str(args.model))
    temperature = float({p.key: p.value for p in graph.metadata_props}["temperature"])
    exported = GenderClassifier(model_path=args.model, refine=False)
    paths = [item.path for item in load_dataset(args.data) if item.split == "train"][:_CHIPS]
    chip_set = make_chips(paths, size=exported.input_size, cache_dir=args.cache_dir)
    chips = torch.from_numpy(chip_set.chips[chip_set.found])

    net = GenderNet().eval()
    _load_folded(net, graph)
    torch.save(net.state_dict(), args.out)

    with torch.no_grad():
        ours = _Exportable(net, temperature).eval()(chips).numpy()
    theirs = exported.predict(chips.numpy())
    print(f"wrote {args.out}: largest probability difference {np.abs(ours - theirs).max():.2e} on {len(chips)} chips")


def _load_folded(net: GenderNet, graph: onnx.ModelProto) -> None:
    """Each convolution's folded weight and bias, in the graph's order, into the network's convolutions in order;
    each batch normalisation then adds its convolution's bias and nothing else."""
    arrays = {
        init.name: torch.from_numpy(numpy_helper.to_array(init).astype(np.float32)) for init in graph.graph.initializer
    }
    # Weights stored as float16 reach their convolution through a Cast; shared ones through an Identity.
    alias = {node.output[0]: node.input[0] for node in graph.graph.node if node.op_type in ("Identity", "Cast")}

    def resolve(name: str) -> torch.Tensor:
        while name in alias:
            name = alias[name]
        return arrays[name]

    folded: list[tuple[torch.Tensor, torch.Tensor]] = []
    seen: set[int] = set()
    for node in graph.graph.node:
        if node.op_type == "Conv":
            weight, bias = resolve(node.input[1]), resolve(node.input[2])
            if id(weight) not in seen:  # the graph runs the network twice (the chip and its mirror image)
                seen.add(id(weight))
                folded.append((weight, bias))
    convolutions = [module for module in net.modules() if isinstance(module, nn.Conv2d)]
    norms = [module for module in net.modules() if isinstance(module, nn.BatchNorm2d)]
    if len(folded) != len(convolutions) or len(norms) != len(convolutions):
        raise ValueError(f"{len(folded)} convolutions in the graph, {len(convolutions)} in the network")
    with torch.no_grad():
        for (weight, bias), convolution, norm in zip(folded, convolutions, norms, strict=True):
            convolution.weight.copy_(weight)
            assert norm.running_mean is not None and norm.running_var is not None  # tracked, as in every GenderNet
            norm.running_mean.zero_()
            norm.running_var.fill_(1 - norm.eps)
            norm.weight.fill_(1)
            norm.bias.copy_(bias)
        head = net.classifier[1]
        assert isinstance(head, nn.Linear)
        gemm = next(node for node in graph.graph.node if node.op_type == "Gemm")
        head.weight.copy_(resolve(gemm.input[1]))
        head.bias.copy_(resolve(gemm.input[2]))


if __name__ == "__main__":
    main()
