"""LeNet-5 (LeCun et al. 1998) for 32x32 grey images; written here, no ImageNet weights.

Classic layout: C1 conv 5x5 (6 maps) + tanh, S2 2x2 average pool, C3 conv 5x5 (16 maps) + tanh,
S4 2x2 average pool, then fully connected 400-120-84-10. The convs are unpadded: at 32 px the
maps are 28, 14, 10 and 5 px. An adaptive pool to 5x5 before the classifier lets the full model
take other sizes too.

Stages: `c1` (stride 1), `s2` (2), `c3` (2), `s4` (4). Default layers: `s2`, `s4`, one map after
each sub-sampling (two scales, as ResNet's layer2/layer3). Inputs are normalised with mean 0.5,
std 0.5.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import BackboneSpec, Stages, register


class LeNet5(nn.Module):
    """LeNet-5 with tanh activations and average-pool sub-sampling."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(in_channels, 6, 5), nn.Tanh())
        self.s2 = nn.AvgPool2d(2)
        self.c3 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.Tanh())
        self.s4 = nn.AvgPool2d(2)
        self.pool = nn.AdaptiveAvgPool2d(5)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.Tanh(),
            nn.Linear(120, 84),
            nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s4(self.c3(self.s2(self.c1(x))))
        return self.classifier(self.pool(x))


def _stages(model: LeNet5) -> Stages:
    return [("c1", model.c1), ("s2", model.s2), ("c3", model.c3), ("s4", model.s4)]


register(
    BackboneSpec(
        name="lenet5",
        builder=lambda imagenet: LeNet5(),
        stages=_stages,
        layers=("c1", "s2", "c3", "s4"),
        channels=(6, 6, 16, 16),
        strides=(1, 2, 2, 4),
        default_layers=("s2", "s4"),
        in_channels=1,
        default_size=32,
        mean=(0.5,),
        std=(0.5,),
    )
)
