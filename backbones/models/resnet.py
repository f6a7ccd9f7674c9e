"""ResNet-18/34/50 and Wide ResNet-50-2: torchvision's builders and ImageNet weights.

Stages: `stem` (conv1, bn1, relu, maxpool; stride 4), `layer1` (4), `layer2` (8), `layer3` (16),
`layer4` (32). Default layers: `layer2`, `layer3`, PatchCore's choice: mid-level features, local
enough to place a defect, generic enough not to encode ImageNet classes.
"""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from ..registry import BackboneSpec, Stages, register

RESNET_LAYERS = ("stem", "layer1", "layer2", "layer3", "layer4")
RESNET_STRIDES = (4, 4, 8, 16, 32)
RESNET_DEFAULT = ("layer2", "layer3")


def resnet_channels(expansion: int) -> tuple[int, ...]:
    """Output channels of the five stages for a block `expansion` (1 basic, 4 bottleneck)."""
    return (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)


def resnet_stages(model: tvm.ResNet) -> Stages:
    """Cut any torchvision `ResNet` (SE variants included) into its five stages."""
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    return [("stem", stem)] + [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]


for _name, _fn, _expansion in [
    ("resnet18", tvm.resnet18, 1),
    ("resnet34", tvm.resnet34, 1),
    ("resnet50", tvm.resnet50, 4),
    ("wide_resnet50_2", tvm.wide_resnet50_2, 4),
]:
    register(
        BackboneSpec(
            name=_name,
            builder=lambda imagenet, fn=_fn: fn(weights=None),
            stages=resnet_stages,
            layers=RESNET_LAYERS,
            channels=resnet_channels(_expansion),
            strides=RESNET_STRIDES,
            default_layers=RESNET_DEFAULT,
            # V1 for every net: the weights PatchCore/PaDiM used (torchvision's only ones in 2021).
            imagenet="IMAGENET1K_V1",
        )
    )
