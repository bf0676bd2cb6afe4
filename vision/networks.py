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
