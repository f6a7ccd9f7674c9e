"""GoogLeNet (Inception v1): torchvision's builder and ImageNet weights, without aux heads.

Stages: `stem` (conv1, maxpool1, conv2, conv3, maxpool2; stride 8), `inception3` (3a, 3b;
stride 8), `inception4` (maxpool3, 4a..4e; 16), `inception5` (maxpool4, 5a, 5b; 32). Default
layers: `inception3`, `inception4` (strides 8 and 16, as ResNet's layer2/layer3).

torchvision's ImageNet GoogLeNet weights were ported from TensorFlow and expect inputs scaled to
[-1, 1]; its `transform_input` maps ImageNet-normalised inputs to that range. The model is built
with `transform_input=True` exactly when ImageNet weights will be loaded, and the stem applies it.
"""

from __future__ import annotations

import torch
import torchvision.models as tvm
from torch import nn

from ..registry import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, Stages, register


class GoogLeNetStem(nn.Module):
    """GoogLeNet's first convs and pools, preceded by its `transform_input` when set."""

    def __init__(self, model: tvm.GoogLeNet) -> None:
        super().__init__()
        self.transform_input = bool(model.transform_input)
        self.conv1, self.maxpool1 = model.conv1, model.maxpool1
        self.conv2, self.conv3, self.maxpool2 = model.conv2, model.conv3, model.maxpool2
        # Same arithmetic as torchvision's GoogLeNet._transform_input: x * std/0.5 + (mean-0.5)/0.5.
        std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
        self.register_buffer("scale", (std / 0.5).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((mean - 0.5) / 0.5).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            x = torch.addcmul(self.shift, x, self.scale)
        x = self.maxpool1(self.conv1(x))
        return self.maxpool2(self.conv3(self.conv2(x)))


def _stages(m: tvm.GoogLeNet) -> Stages:
    return [
        ("stem", GoogLeNetStem(m)),
        ("inception3", nn.Sequential(m.inception3a, m.inception3b)),
        (
            "inception4",
            nn.Sequential(
                m.maxpool3,
                m.inception4a,
                m.inception4b,
                m.inception4c,
                m.inception4d,
                m.inception4e,
            ),
        ),
        ("inception5", nn.Sequential(m.maxpool4, m.inception5a, m.inception5b)),
    ]


def _build(imagenet: bool) -> tvm.GoogLeNet:
    return tvm.GoogLeNet(aux_logits=False, transform_input=imagenet, init_weights=True)


register(
    BackboneSpec(
        name="googlenet",
        builder=_build,
        stages=_stages,
        layers=("stem", "inception3", "inception4", "inception5"),
        channels=(192, 480, 832, 1024),
        strides=(8, 8, 16, 32),
        default_layers=("inception3", "inception4"),
        imagenet="IMAGENET1K_V1",
    )
)
