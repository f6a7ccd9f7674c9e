"""Small trainable networks shared by the detectors and pretraining (no training logic here).

``BackboneClassifier``: a trainable ``backbones`` extractor plus a linear head on its pooled
features (self-supervised pretraining, the synthetic-OOD classifier). ``geometric_transform``:
the transformation set of transformation-prediction pretraining (GEOM: flips x shifts x
rotations), applied per sample on tensors.
"""
from __future__ import annotations

import torch
from torch import nn

import backbones

from ..errors import AnomalyError

__all__ = ["TRANSFORM_SETS", "BackboneClassifier", "PatchSegmenter", "geometric_transform", "trainable_extractor"]


def trainable_extractor(name: str, weights="random", layers=None, image_size=None, seed=0, device="cpu"):
    """A fine-tunable ``backbones`` extractor (BatchNorm learns); errors become AnomalyError."""
    try:
        return backbones.create(
            name, weights=weights, layers=layers, image_size=image_size, seed=seed, device=device,
            frozen=False,
        )
    except backbones.BackboneError as e:
        raise AnomalyError(str(e)) from None


class BackboneClassifier(nn.Module):
    """Extractor -> global average pool of every requested layer, concatenated -> linear head."""

    def __init__(self, extractor: backbones.FeatureExtractor, n_out: int):
        super().__init__()
        self.extractor = extractor
        self.dim = sum(extractor.layer_channels.values())
        self.head = nn.Linear(self.dim, n_out)
        self.head.to(extractor.device)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.extractor(x)
        return torch.cat([m.float().mean(dim=(2, 3)) for m in maps.values()], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PatchSegmenter(nn.Module):
    """Extractor -> PatchCore's patch features -> a 1x1 convolution: one logit per patch, that
    the patch shows an anomaly (dense pretraining on synthesised defects)."""

    def __init__(self, extractor: backbones.FeatureExtractor):
        super().__init__()
        self.extractor = extractor
        self.head = nn.Conv2d(sum(extractor.layer_channels.values()), 1, 1)
        self.head.to(extractor.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .features import aggregate_patches

        maps = [m.float() for m in self.extractor(x).values()]
        return self.head(aggregate_patches(maps))[:, 0]


#: name -> (flips, shifts per axis as fractions of the size, quarter turns)
TRANSFORM_SETS = {
    "rot4": ((False,), (0.0,), (0, 1, 2, 3)),
    "rot4_flip": ((False, True), (0.0,), (0, 1, 2, 3)),
    "geom": ((False, True), (0.0, -0.25, 0.25), (0, 1, 2, 3)),  # 72 as in GEOM
}


def _transform_table(name: str) -> list[tuple[bool, float, float, int]]:
    if name not in TRANSFORM_SETS:
        raise AnomalyError(f"transforms='{name}': unknown; use one of {', '.join(TRANSFORM_SETS)}")
    flips, shifts, turns = TRANSFORM_SETS[name]
    return [(f, sx, sy, r) for f in flips for sx in shifts for sy in shifts for r in turns]


def n_transforms(name: str) -> int:
    return len(_transform_table(name))


def geometric_transform(x: torch.Tensor, ids: torch.Tensor, name: str) -> torch.Tensor:
    """Apply transformation ``ids[i]`` of set ``name`` to sample ``i`` of (N, C, H, W)."""
    table = _transform_table(name)
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for t in ids.unique().tolist():
        sel = (ids == t).nonzero().flatten()
        flip, sx, sy, turns = table[t]
        xb = x[sel]
        if flip:
            xb = xb.flip(-1)
        if sx or sy:
            dy, dx = round(sy * h), round(sx * w)
            xb = torch.roll(xb, shifts=(dy, dx), dims=(-2, -1))
            if dy > 0:
                xb[..., :dy, :] = 0
            elif dy < 0:
                xb[..., dy:, :] = 0
            if dx > 0:
                xb[..., :dx] = 0
            elif dx < 0:
                xb[..., dx:] = 0
        if turns:
            xb = torch.rot90(xb, turns, dims=(-2, -1))
        out[sel] = xb
    return out


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder for (C, H, W) inputs with a dense bottleneck.

    ``levels`` stride-2 stages (widths ``width * 2**i``) shrink the image; a linear layer maps the
    smallest grid to ``latent_dim`` numbers and back. Inputs whose sides are not multiples of
    ``2**levels`` are padded and the output cropped. ``dropout`` (also at inference when asked,
    for MC-dropout) sits before and after the bottleneck. ``sigmoid`` bounds pixel outputs to
    [0, 1]; feature-map inputs use a linear output.
    """

    def __init__(self, shape, latent_dim=32, width=32, levels=2, dropout=0.0, sigmoid=True):
        super().__init__()
        c, h, w = shape
        f = 2**levels
        self.shape, self.f = (c, h, w), f
        self.ph, self.pw = (-h) % f, (-w) % f
        enc, ch = [], c
        for i in range(levels):
            out = width * 2**i
            enc += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.LeakyReLU(0.1)]
            enc += [nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.LeakyReLU(0.1)]
            ch = out
        self.encoder = nn.Sequential(*enc)
        self.grid = (ch, (h + self.ph) // f, (w + self.pw) // f)
        flat = ch * self.grid[1] * self.grid[2]
        self.drop = nn.Dropout(dropout)
        self.to_latent = nn.Linear(flat, latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        dec = []
        for i in reversed(range(levels)):
            out = width * 2 ** (i - 1) if i > 0 else width
            dec += [nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1), nn.BatchNorm2d(out), nn.LeakyReLU(0.1)]
            dec += [nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.LeakyReLU(0.1)]
            ch = out
        dec += [nn.Conv2d(ch, c, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.ph or self.pw:
            x = nn.functional.pad(x, (0, self.pw, 0, self.ph), mode="replicate")
        z = self.to_latent(self.drop(self.encoder(x).flatten(1)))
        y = self.decoder(self.drop(self.from_latent(z)).view(-1, *self.grid))[..., :h, :w]
        return torch.sigmoid(y) if self.sigmoid else y
