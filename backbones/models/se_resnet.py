"""SE-ResNet-18/50: ResNets whose residual branches end in a squeeze-and-excitation block
(Hu et al. 2018), built with torchvision's `ResNet` class. No ImageNet weights exist for them
here: use weights="random" or a file (e.g. from self-supervised pretraining).

Stages and default layers as for ResNet (`stem`, `layer1`..`layer4`; default `layer2`, `layer3`).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ..registry import BackboneSpec, register
from .resnet import RESNET_DEFAULT, RESNET_LAYERS, RESNET_STRIDES, resnet_channels, resnet_stages


class SqueezeExcitation(nn.Module):
    """Re-weight channels by a gate computed from the whole image: squeeze (global average
    pool), excite (FC-ReLU-FC-sigmoid, `reduction` fold bottleneck), multiply each channel by its
    gate in (0, 1). Lets one position's features depend on global context at little cost."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.gate(self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * weights[:, :, None, None]


class SEBasicBlock(BasicBlock):
    """torchvision's BasicBlock with SE re-weighting of the residual branch before the add."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.se = SqueezeExcitation(self.bn2.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class SEBottleneck(Bottleneck):
    """torchvision's Bottleneck with SE re-weighting of the residual branch before the add."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.se = SqueezeExcitation(self.bn3.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


def se_resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet(SEBasicBlock, [2, 2, 2, 2], num_classes=num_classes)


def se_resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet(SEBottleneck, [3, 4, 6, 3], num_classes=num_classes)


for _name, _fn, _expansion in [("se_resnet18", se_resnet18, 1), ("se_resnet50", se_resnet50, 4)]:
    register(
        BackboneSpec(
            name=_name,
            builder=lambda imagenet, fn=_fn: fn(),
            stages=resnet_stages,
            layers=RESNET_LAYERS,
            channels=resnet_channels(_expansion),
            strides=RESNET_STRIDES,
            default_layers=RESNET_DEFAULT,
        )
    )
