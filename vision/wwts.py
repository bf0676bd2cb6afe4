"""Alibaba 万物识别-中文-通用领域 (ModelScope ``damo/cv_resnest101_general_recognition``) from a local folder.

What to put in the folder (default ``models/wwts`` in the project, or ``weights=DIR``):

* the checkpoint: ``pytorch_model.pt`` (ModelScope's file name; ``*.pth``/``*.pt`` also accepted) —
  a state_dict, optionally wrapped as ``{"state_dict": ...}``, keys optionally prefixed ``module.``
  (DataParallel); loaded with ``map_location='cpu'``;
* the labels: ``meta_info.txt`` (ModelScope: ``index<TAB>label`` rows) or ``labels_zh.txt``
  (one label per line, line i = class i).

Two architectures are recognised from the checkpoint's tensors, with depth, stem width and class
count read from it (so smaller checkpoints of the same family load too):

* ResNeSt (ModelScope's: deep stem 64, radix 2, avg-down, avd) — built as timm's ResNeSt, whose
  module names match the original ResNeSt code ModelScope uses; ResNeSt-101 has 54,092 classes;
* the article's torchvision ResNet (ResNet-50 whose ``fc`` is replaced to match the label file).

Preprocessing is ModelScope's: ``Resize(256)`` bilinear, ``CenterCrop(224)``, ImageNet mean/std.
ModelScope's pipeline returns only the top-1 raw logit at batch 1; here it is softmax top-k, batched.
"""

from __future__ import annotations

import re
from pathlib import Path

from .backbones import BackboneSource, file_sha256
from .errors import CheckpointFormatError, ModelFilesMissingError
from .labels import PROJECT_MODELS_DIR, read_label_file
from .preprocess import PreprocessSpec

DEFAULT_DIR = PROJECT_MODELS_DIR / "wwts"
CHECKPOINT_NAMES = ("pytorch_model.pt", "pytorch_model.pth", "pytorch_model.bin", "model.pth", "model.pt")
LABEL_NAMES = ("meta_info.txt", "labels_zh.txt")
MODELSCOPE_ID = "damo/cv_resnest101_general_recognition"


def find_checkpoint(folder: Path) -> Path:
    for name in CHECKPOINT_NAMES:
        if (folder / name).is_file():
            return folder / name
    others = sorted(p for p in folder.glob("*.pt*") if p.is_file()) if folder.is_dir() else []
    if len(others) == 1:
        return others[0]
    raise ModelFilesMissingError(
        f"wwts: no checkpoint in {folder}. Put the 万物识别-中文-通用领域 weights there as "
        f"{folder / CHECKPOINT_NAMES[0]} (ModelScope {MODELSCOPE_ID}: pytorch_model.pt), or the article's "
        f"ResNet-50 state_dict as a .pth, together with its label file ({' or '.join(LABEL_NAMES)}); "
        "or point --weights/SKUTAG_VISION__WEIGHTS at the folder that holds them"
        + (f" (found several candidates: {', '.join(p.name for p in others)})" if others else "")
    )


def find_labels(folder: Path) -> Path:
    for name in LABEL_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise ModelFilesMissingError(
        f"wwts: no label file in {folder}. Put the Chinese labels there as {folder / LABEL_NAMES[0]} "
        f"(ModelScope {MODELSCOPE_ID}: 'index<TAB>label' rows) or {folder / LABEL_NAMES[1]} (one label per line)"
    )


def clean_state_dict(checkpoint) -> dict:
    """Unwrap ``{"state_dict": ...}``/``{"model": ...}`` and drop DataParallel ``module.`` wrappers
    (a leading ``module.`` and nested ``.module.``, as ModelScope's own loader does)."""
    state_dict = checkpoint
    for wrapper in ("state_dict", "model"):
        if isinstance(state_dict, dict) and isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    if not isinstance(state_dict, dict) or not state_dict:
        raise CheckpointFormatError("the checkpoint holds no state_dict")
    return {_unwrapped_key(key): tensor for key, tensor in state_dict.items()}


def _unwrapped_key(key: str) -> str:
    """``module.module.layer1.0.conv1.weight`` / ``layer1.module.0...`` -> ``layer1.0.conv1.weight``."""
    return ".".join(part for part in key.split(".") if part != "module")


def _layer_depths(state_dict: dict) -> list[int]:
    depths = []
    for layer in range(1, 5):
        indices = {int(m.group(1)) for key in state_dict if (m := re.match(rf"layer{layer}\.(\d+)\.", key))}
        if not indices:
            raise CheckpointFormatError(f"no layer{layer} tensors: not a ResNet/ResNeSt checkpoint")
        depths.append(max(indices) + 1)
    return depths


def describe_architecture(state_dict: dict) -> dict:
    """Which network the tensors belong to: family, block depths, stem width, classes, embedding size."""
    if "fc.weight" not in state_dict:
        raise CheckpointFormatError("no fc.weight: not a ResNet/ResNeSt classifier checkpoint")
    num_classes, embedding_dim = (int(n) for n in state_dict["fc.weight"].shape)
    depths = _layer_depths(state_dict)
    if "layer1.0.conv2.fc1.weight" in state_dict:
        stem_width = int(state_dict["conv1.0.weight"].shape[0])
        radix = int(state_dict["layer1.0.conv2.conv.weight"].shape[0]) // int(state_dict["layer1.0.conv1.weight"].shape[0])
        return {"family": "resnest", "layers": depths, "stem_width": stem_width, "radix": radix,
                "num_classes": num_classes, "embedding_dim": embedding_dim}
    if "conv1.weight" in state_dict:
        bottleneck = "layer1.0.conv3.weight" in state_dict
        return {"family": "resnet", "layers": depths, "bottleneck": bottleneck,
                "num_classes": num_classes, "embedding_dim": embedding_dim}
    raise CheckpointFormatError("unrecognised stem: neither a torchvision ResNet nor a ResNeSt checkpoint")


def _resnet_name(arch: dict) -> str:
    depth = (3 if arch.get("bottleneck", True) else 2) * sum(arch["layers"]) + 2
    return f"{'resnest' if arch['family'] == 'resnest' else 'resnet'}{depth}"


def build_from_state_dict(state_dict: dict, arch: dict):
    """The torch network for ``arch`` with ``state_dict`` loaded strictly, in eval mode."""
    if arch["family"] == "resnest":
        from timm.models.resnest import ResNestBottleneck
        from timm.models.resnet import ResNet

        from .networks import TimmClassifier

        model = ResNet(
            block=ResNestBottleneck, layers=arch["layers"], num_classes=arch["num_classes"],
            stem_type="deep", stem_width=arch["stem_width"], avg_down=True, base_width=64, cardinality=1,
            block_args=dict(radix=arch["radix"], avd=True, avd_first=False),
        )
        wrap = TimmClassifier
    else:
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        from .networks import TorchvisionResNetClassifier

        model = ResNet(Bottleneck if arch["bottleneck"] else BasicBlock, arch["layers"], num_classes=arch["num_classes"])
        wrap = TorchvisionResNetClassifier
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointFormatError(f"checkpoint does not fit {_resnet_name(arch)}: {exc}") from None
    return wrap(model).eval()


def _read_checkpoint(path: Path) -> dict:
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointFormatError(f"{path}: not a readable torch checkpoint ({reason})") from None
    return clean_state_dict(checkpoint)


def _build(path: Path, num_labels: int):
    state_dict = _read_checkpoint(path)
    arch = describe_architecture(state_dict)
    if arch["num_classes"] != num_labels:
        raise CheckpointFormatError(
            f"{path}: the classifier has {arch['num_classes']} classes but the label file has {num_labels} labels"
        )
    return build_from_state_dict(state_dict, arch)


def load_from_dir(weights: str | Path | None = None) -> BackboneSource:
    folder = Path(weights) if weights else DEFAULT_DIR
    if folder.is_file():  # a checkpoint file given directly: labels sit next to it
        checkpoint, folder = folder, folder.parent
    else:
        if not folder.is_dir():
            raise ModelFilesMissingError(
                f"wwts: model folder {folder} does not exist. Create it and put the 万物识别-中文-通用领域 files "
                f"there: {CHECKPOINT_NAMES[0]} (ModelScope {MODELSCOPE_ID}) and {LABEL_NAMES[0]} or {LABEL_NAMES[1]}"
            )
        checkpoint = find_checkpoint(folder)
    labels = read_label_file(find_labels(folder))
    sha = file_sha256(checkpoint)
    return BackboneSource(
        name="wwts",
        model_id="wwts",
        version=f"local+{sha[:8]}",
        labels=tuple(labels),
        preprocess=PreprocessSpec.imagenet(224, 256),
        embedding_dim=None,  # known once the network is built (2048 for ResNet-50/ResNeSt-101)
        weights_path=checkpoint,
        weights_sha256=sha,
        build_network=lambda: _build(checkpoint, len(labels)),
    )
