"""Featurizer: one place that turns image batches into feature vectors and patch-feature maps.

With ``backbone=None`` the features are raw pixels: an image is its flattened pixel vector and a
patch feature is the ``patch_size`` x ``patch_size`` neighbourhood of a grid point (the grid has
about 16 points a side, denser where patches would leave gaps, at most 64). With a backbone (see :mod:`backbones`), an
image is the concatenation of its globally averaged layer maps (each L2-normalised with
``normalize=True``), and a patch feature is the
PatchCore aggregate: each layer smoothed by a 3x3 average, upsampled to the finest requested
layer, concatenated along channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import backbones

from .errors import AnomalyError

__all__ = ["Featurizer", "aggregate_patches"]


def aggregate_patches(maps: list[torch.Tensor]) -> torch.Tensor:
    """PatchCore's patch features: each layer's map averaged over 3x3 neighbourhoods, upsampled
    (bilinear) to the finest map, concatenated along channels: (N, sum of channels, h, w)."""
    size = max((m.shape[-2:] for m in maps), key=lambda hw: hw[0] * hw[1])
    out = [
        F.interpolate(F.avg_pool2d(m, 3, stride=1, padding=1), size=size, mode="bilinear", align_corners=False)
        for m in maps
    ]
    return torch.cat(out, dim=1)


class Featurizer:
    """Maps (N,C,H,W) float batches in [0,1] to features on ``device``."""

    def __init__(
        self,
        backbone: str | None = None,
        weights="imagenet",
        layers=None,
        image_size=None,
        patch_size: int = 7,
        device: torch.device | str = "cpu",
        seed: int = 0,
        extractor: backbones.FeatureExtractor | None = None,
        normalize: bool = False,
    ):
        self.patch_size = int(patch_size)
        self.normalize = bool(normalize)
        self.device = torch.device(device)
        if isinstance(backbone, backbones.FeatureExtractor):  # an extractor object: used as is
            extractor, backbone = backbone, None
        self.extractor = extractor
        if extractor is None and backbone is not None:
            try:
                self.extractor = backbones.create(
                    backbone, weights=weights, layers=layers, image_size=image_size,
                    device=self.device, seed=seed,
                )
            except backbones.BackboneError as e:
                raise AnomalyError(str(e)) from None

    # ------------------------------------------------------------------ features
    #: images per backbone forward pass: bounds activation memory whatever the data batch size
    chunk = 128

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        parts = [list(self.extractor.extract(x[i : i + self.chunk]).values()) for i in range(0, len(x), self.chunk)]
        return [torch.cat(layer) for layer in zip(*parts)]

    def _grid_stride(self, h: int, w: int) -> int:
        """Raw-pixel patch grid: about 16 points a side, but never a stride above half a patch
        (no pixel falls between patches) unless the grid would pass 64 points a side."""
        side = min(h, w)
        return max(1, math.ceil(side / 64), min(math.ceil(side / 16), math.ceil(self.patch_size / 2)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """One feature vector per image: (N, D)."""
        if self.extractor is None:
            return x.to(self.device).reshape(x.shape[0], -1)
        pooled = [m.mean(dim=(2, 3)) for m in self._maps(x)]
        if self.normalize:  # each layer on the unit sphere: layers weigh the same whatever their scale
            pooled = [F.normalize(p, dim=1) for p in pooled]
        return torch.cat(pooled, dim=1)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Patch features on a grid: (N, D, h, w)."""
        if self.extractor is None:
            x = x.to(self.device)
            n, _, h, w = x.shape
            p, s = self.patch_size, self._grid_stride(h, w)
            cols = F.unfold(x, kernel_size=p, padding=p // 2, stride=s)
            gh, gw = (h + 2 * (p // 2) - p) // s + 1, (w + 2 * (p // 2) - p) // s + 1
            return cols.reshape(n, -1, gh, gw)
        return aggregate_patches(self._maps(x))

    # ------------------------------------------------------------------ bundles
    def config(self) -> dict | None:
        """What a bundle records: backbone name, weights source and hash, preprocessing."""
        if self.extractor is None:
            return None
        return self.extractor.config()

    def preprocessing(self) -> dict:
        if self.extractor is None:
            return {"features": "raw_pixels", "scale": "uint8/255", "patch_size": self.patch_size}
        cfg = self.extractor.config()
        return {
            "features": "backbone",
            "scale": "uint8/255",
            "image_size": cfg.get("image_size"),
            "mean": cfg.get("mean"),
            "std": cfg.get("std"),
            "patch_aggregation": "avgpool3x3+upsample+concat",
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Backbone tensors to embed: all, unless they are ImageNet weights (restored by hash)."""
        if self.extractor is None or str(self.extractor.weights_source).startswith("imagenet"):
            return {}
        return {f"backbone.{k}": v for k, v in self.extractor.trunk_state_dict().items()}

    @classmethod
    def from_state(
        cls, config: dict | None, tensors: dict[str, torch.Tensor], patch_size: int, device,
        normalize: bool = False,
    ) -> Featurizer:
        if config is None:
            return cls(None, patch_size=patch_size, device=device)
        state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        try:
            ext = backbones.FeatureExtractor.from_config(config, state_dict=state or None, device=device)
        except backbones.BackboneError as e:
            raise AnomalyError(str(e)) from None
        return cls(extractor=ext, patch_size=patch_size, device=device, normalize=normalize)
