"""DenseNet-121: torchvision's builder and ImageNet weights.

Stages: `stem` (conv0, norm0, relu0, pool0; stride 4), `denseblock1` (4), `denseblock2` (8),
`denseblock3` (16), `denseblock4` (32). Each transition (BN-ReLU-conv1x1-avgpool) opens the
stage after it, so a dense block's output is its full concatenated feature map before the
transition compresses and pools it; `denseblock4` ends with the final norm5 + ReLU, as in the
classifier path. Default layers: `denseblock2`, `denseblock3` (strides 8 and 16, as ResNet's
layer2/layer3).
"""

from __future__ import annotations

import re

import torch
import torchvision.models as tvm
from torch import nn

from ..registry import BackboneSpec, Stages, register

# torchvision's published checkpoint uses old key names ('norm.1' for 'norm1'); see its
# densenet._load_state_dict.
_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _fix_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename old-style dense-layer keys to the current module names."""
    out = {}
    for key, value in state.items():
        match = _OLD_KEY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def _stages(model: tvm.DenseNet) -> Stages:
    f = model.features
    return [
        ("stem", nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0)),
        ("denseblock1", f.denseblock1),
        ("denseblock2", nn.Sequential(f.transition1, f.denseblock2)),
        ("denseblock3", nn.Sequential(f.transition2, f.denseblock3)),
        ("denseblock4", nn.Sequential(f.transition3, f.denseblock4, f.norm5, nn.ReLU())),
    ]


register(
    BackboneSpec(
        name="densenet121",
        builder=lambda imagenet: tvm.densenet121(weights=None),
        stages=_stages,
        layers=("stem", "denseblock1", "denseblock2", "denseblock3", "denseblock4"),
        channels=(64, 256, 512, 1024, 1024),
        strides=(4, 4, 8, 16, 32),
        default_layers=("denseblock2", "denseblock3"),
        imagenet="IMAGENET1K_V1",
        fix_keys=_fix_keys,
    )
)
