"""AlexNet: torchvision's builder and ImageNet weights.

Stages, one per conv layer (conv + ReLU; the max-pool that follows conv1 and conv2 opens the
next stage): `conv1` (stride 4), `conv2` (8), `conv3` (16), `conv4` (16), `conv5` (16). The last
max-pool belongs to the classifier head, so `conv5` keeps its 13x13 map at 224 px. The convs are
unpadded at stride 4, so maps are a pixel or so smaller than input/stride. Default layers:
`conv2`, `conv4` (strides 8 and 16, as ResNet's layer2/layer3).
"""

from __future__ import annotations

import torchvision.models as tvm

from ..registry import BackboneSpec, Stages, register


def _stages(model: tvm.AlexNet) -> Stages:
    f = model.features
    return [
        ("conv1", f[0:2]),
        ("conv2", f[2:5]),
        ("conv3", f[5:8]),
        ("conv4", f[8:10]),
        ("conv5", f[10:12]),
    ]


register(
    BackboneSpec(
        name="alexnet",
        builder=lambda imagenet: tvm.alexnet(weights=None),
        stages=_stages,
        layers=("conv1", "conv2", "conv3", "conv4", "conv5"),
        channels=(64, 192, 384, 256, 256),
        strides=(4, 8, 16, 16, 16),
        default_layers=("conv2", "conv4"),
        imagenet="IMAGENET1K_V1",
    )
)
