"""VGG-11/16, with and without batch norm: torchvision's builders and ImageNet weights.

Stages: `block1`..`block5`, each a run of 3x3 convs ending at its max-pool (strides 2, 4, 8, 16,
32). Default layers: `block3`, `block4` (strides 8 and 16, as ResNet's layer2/layer3).
"""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from ..registry import BackboneSpec, Stages, register


def _stages(model: tvm.VGG) -> Stages:
    stages, start = [], 0
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.MaxPool2d):
            stages.append((f"block{len(stages) + 1}", model.features[start : i + 1]))
            start = i + 1
    return stages


def _builder(name: str):
    return lambda imagenet: getattr(tvm, name)(weights=None)


for _name in ("vgg11", "vgg11_bn", "vgg16", "vgg16_bn"):
    register(
        BackboneSpec(
            name=_name,
            builder=_builder(_name),
            stages=_stages,
            layers=("block1", "block2", "block3", "block4", "block5"),
            channels=(64, 128, 256, 512, 512),
            strides=(2, 4, 8, 16, 32),
            default_layers=("block3", "block4"),
            imagenet="IMAGENET1K_V1",
        )
    )
