"""The torch side of a tail: the backbone loaded, run up to and after the cut, the trainable tail built,
and the ONNX graphs exported from them (the cut graph training learns from, the one graph serving runs).
Training and export only; serving never imports it.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..backbones import get_backbone
from .graphs import GRAPH_INPUTS, GRAPH_OUTPUTS
from .views import Cut

GRAPH_INPUT = "input"
"""The input of the cut graph (training activations)."""


def load_network(backbone: str, weights: str | None):
    network = get_backbone(backbone).resolve(weights).build_network().eval()
    if not hasattr(network, "model") or not hasattr(network.model, "blocks"):
        raise ValueError(f"backbone {backbone!r} is not a timm EfficientNet: tail tuning needs blocks/conv_head")
    return network


def run_to_cut(model, cut: Cut, x):
    """The frozen part of a timm EfficientNet: stem, then every block up to and including the cut."""
    x = model.bn1(model.conv_stem(x))
    for stage in range(cut.stage):
        x = model.blocks[stage](x)
    for block in range(cut.block + 1):
        x = model.blocks[cut.stage][block](x)
    return x


def run_after_cut(model, cut: Cut, x):
    """The rest of the frozen network from the cut's activation: the later blocks, conv_head and bn2
    (what ``forward_features`` ends with); ``run_after_cut(m, c, run_to_cut(m, c, x))`` is the whole."""
    for block in model.blocks[cut.stage][cut.block + 1:]:
        x = block(x)
    for stage in model.blocks[cut.stage + 1:]:
        x = stage(x)
    return model.bn2(model.conv_head(x))


def build_tail(model, cut: Cut, n_classes: int, dropout: float = 0.2):
    """A torch module: the blocks after ``cut`` + conv_head + bn2 (shared with ``model``) + a new head."""
    cut.check(model)
    blocks = list(model.blocks[cut.stage][cut.block + 1:]) + [b for stage in model.blocks[cut.stage + 1:] for b in stage]

    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(*blocks)
            self.conv_head, self.bn2 = model.conv_head, model.bn2
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(model.num_features, n_classes)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """The pooled, not yet normalised embedding (what the frozen network's embedding was)."""
            return self.bn2(self.conv_head(self.blocks(x))).mean((2, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.drop(self.features(x)))

    return Tail()


# ---------------------------------------------------------------- ONNX export

def export_graph(forward: Callable, size: int, outputs: tuple[str, ...], *parts,
                 inputs: tuple[str, ...] = (GRAPH_INPUT,)) -> bytes:
    """``forward(*parts, *xs)`` (``parts``: torch modules; one x per name in ``inputs``, each
    rows x 3 x size x size, the rows free per input) as a serialised ONNX graph with the named ``inputs`` and
    ``outputs`` (the rows of each free too)."""

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = nn.ModuleList(parts)

        def forward(self, *xs):
            return forward(*self.parts, *xs)

    buffer = io.BytesIO()
    dummies = tuple(torch.zeros(1 + k, 3, size, size) for k in range(len(inputs)))  # unequal rows: none tied
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic
        torch.onnx.export(Graph().eval(), dummies, buffer, dynamo=False, opset_version=17,
                          input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={name: {0: f"{name}_rows"} for name in (*inputs, *outputs)})
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> Path:
    """``data`` written to ``path`` under a private name, then renamed into place."""
    from ..export import temporary_path

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def frozen_model(network, size: int):
    """The timm model of a loaded backbone with its TF-"SAME" pads fixed for ``size`` inputs (the network
    itself, changed in place: no output changes)."""
    from ..networks import freeze_same_padding

    return freeze_same_padding(network, size).model


def cut_graph(network, cut: Cut, size: int) -> bytes:
    """Photo -> activation at the cut (output ``act``): what tail training learns from."""
    return export_graph(lambda frozen, x: run_to_cut(frozen, cut, x), size, ("act",), frozen_model(network, size))


def _serving_forward(frozen, tail, cut: Cut, x, views):
    """The serving graph (``skutag.vision.tail.graphs``): the centre crops and the other views through the
    frozen part together, the plain network's rest on the centre crops' activations only, the tuned tail
    on all of them."""
    act = run_to_cut(frozen, cut, torch.cat([x, views], 0))
    embedding = frozen.forward_head(run_after_cut(frozen, cut, act[:x.shape[0]]), pre_logits=True)
    return frozen.get_classifier()(embedding), embedding, tail.features(act)


def serving_graph(backbone: str, weights: str | None, cut: Cut, tail, size: int) -> bytes:
    """The one graph serving runs, fp32 (``skutag.vision.tail.graphs``), from the backbone loaded afresh (its
    pads fixed for ``size``) and the fitted ``tail`` module."""
    frozen = frozen_model(load_network(backbone, weights), size)
    return export_graph(lambda model, tuned, x, views: _serving_forward(model, tuned, cut, x, views), size,
                        GRAPH_OUTPUTS, frozen, tail.eval(), inputs=GRAPH_INPUTS)
