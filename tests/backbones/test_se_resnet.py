"""The squeeze-and-excitation block written in backbones.models.se_resnet."""

from __future__ import annotations

import torch
from torch import nn

from backbones.models.se_resnet import SEBasicBlock, SEBottleneck, SqueezeExcitation


def test_se_scales_each_channel_by_a_gate_in_0_1():
    torch.manual_seed(0)
    se = SqueezeExcitation(256)  # 16 hidden units
    x = torch.rand(2, 256, 5, 7) + 0.1
    x[1] *= torch.rand(256, 1, 1) * 4  # a second image with other channel statistics
    y = se(x)
    ratio = y / x
    gate = ratio[:, :, :1, :1]
    assert torch.allclose(ratio, gate.expand_as(ratio), atol=1e-6)  # one factor per channel
    assert ((gate > 0) & (gate < 1)).all()
    assert not torch.allclose(gate[0], gate[1])  # the gate depends on the image
    assert gate.std() > 0  # and differs between channels


def test_se_reweights_the_residual_branch_before_the_add():
    class Zero(nn.Module):
        def forward(self, x):
            return x * 0

    torch.manual_seed(0)
    x = torch.rand(2, 64, 8, 8)  # non-negative: relu(x) == x
    for block in (SEBasicBlock(64, 64), SEBottleneck(64, 16)):
        block.eval()
        assert isinstance(block.se, SqueezeExcitation)
        block.se = Zero()
        # a zero gate silences the branch, leaving relu(identity)
        assert torch.equal(block(x), x)
