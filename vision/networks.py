"""Torch wrappers whose forward returns ``(logits, embedding)`` in one pass.

The embedding is the penultimate feature vector (after global average pooling, before the
classifier); it is L2-normalised later, outside the network, so both runtimes share that code.
"""

from __future__ import annotations

import torch
from torch import nn


class TimmClassifier(nn.Module):
    """Any timm classification model (EfficientNet, ResNeSt...)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.embedding_dim = int(model.num_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return self.model.get_classifier()(embedding), embedding


class TorchvisionResNetClassifier(nn.Module):
    """A torchvision ResNet (the article's model shape: ResNet-50 with its ``fc`` replaced)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.embedding_dim = int(model.fc.in_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        embedding = torch.flatten(m.avgpool(x), 1)
        return m.fc(embedding), embedding


class FixedPadConv2d(nn.Conv2d):
    """A TF-"SAME" convolution with its padding fixed for one input size (exports as constant Pad + Conv)."""

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int]):
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
            conv.dilation, conv.groups, conv.bias is not None,
        )
        self.weight = conv.weight
        self.bias = conv.bias
        self.fixed_pad = tuple(int(p) for p in pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(
            torch.nn.functional.pad(x, self.fixed_pad), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    return max((-(size // -stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def freeze_same_padding(network: nn.Module, image_size: int) -> nn.Module:
    """Replace timm's dynamic TF-"SAME" convolutions by fixed-padding ones for ``image_size`` inputs.

    timm computes TF "SAME" padding from the input shape at every call; traced into ONNX that becomes
    Shape/Gather/Ceil arithmetic before every strided convolution, which blocks graph fusions and INT8
    quantization of the padding. The network's input size is fixed by its preprocessing, so the pads
    are constants: found with one dummy forward pass, then baked in. Outputs are unchanged.
    """
    from timm.layers.conv2d_same import Conv2dSame

    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        module.register_forward_pre_hook(lambda mod, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:])))
        for name, module in network.named_modules()
        if isinstance(module, Conv2dSame)
    ]
    try:
        with torch.inference_mode():
            network(torch.zeros(1, 3, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
    for name, (height, width) in sizes.items():
        parent_name, _, child = name.rpartition(".")
        parent = network.get_submodule(parent_name) if parent_name else network
        conv = getattr(parent, child)
        pad_h = _same_pad(height, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        pad_w = _same_pad(width, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        setattr(parent, child, FixedPadConv2d(conv, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)))
    return network
