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

from ..errors import AnomalyError

__all__ = ["BACKBONE_CHECKS", "Featurizer", "aggregate_patches", "check_backbone_config", "extractor_from_config",
           "make_extractor"]


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
    #: images per backbone forward pass, at most: bounds activation memory whatever the batch size
    chunk = 128
    #: input pixels (after resizing) per forward pass, at most: bounds it whatever the image size
    chunk_pixels = 1 << 22

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = self.extractor.image_size or x.shape[-2:]
        step = max(1, min(self.chunk, self.chunk_pixels // (h * w)))
        parts = [list(self.extractor.extract(x[i : i + step]).values()) for i in range(0, len(x), step)]
        return [torch.cat(layer) for layer in zip(*parts)]

    def _grid_stride(self, h: int, w: int) -> int:
        """Raw-pixel patch grid: about 16 points a side, but never a stride above half a patch
        (no pixel falls between patches) unless the grid would pass 64 points a side."""
        side = min(h, w)
        return max(1, math.ceil(side / 64), min(math.ceil(side / 16), math.ceil(self.patch_size / 2)))

    #: vectors: (mean, std) each feature is standardised by (``LatentDistance(scaling="feature")``)
    standardise: tuple[torch.Tensor, torch.Tensor] | None = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """One feature vector per image: (N, D); vectors as they are (standardised when
        ``standardise`` is set)."""
        if self.extractor is None:
            flat = x.to(self.device).reshape(x.shape[0], -1)
            if self.standardise is not None and x.ndim == 2:
                mean, std = self.standardise
                flat = (flat - mean.to(flat)) / std.to(flat)
            return flat
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

    # ------------------------------------------------------------------ shapes
    def embed_dim(self, input_shape) -> int:
        """Width of ``embed`` for samples of ``input_shape`` (C, H, W) or (D,)."""
        if self.extractor is None:
            return math.prod(input_shape)
        return sum(self.extractor.layer_channels.values())

    def patch_dim(self, input_shape) -> int:
        """Width of ``patches`` for images of ``input_shape`` (C, H, W)."""
        if self.extractor is None:
            return int(input_shape[0]) * self.patch_size**2
        return sum(self.extractor.layer_channels.values())

    def preprocessing(self) -> dict:
        """What is done to images before features: shown by ``anomaly info``."""
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


# ---------------------------------------------------------------- parameters shared by detectors

#: the largest side a backbone resizes images to: one 2048 x 2048 image already takes about a GB
#: of activations in a ResNet's first stages (larger images: tile them, ``?tile=``)
MAX_IMAGE_SIZE = 2048

def _is_extractor(value, name):
    if not isinstance(value, backbones.FeatureExtractor):
        raise AnomalyError(f"{name}: not a FeatureExtractor")
    return value


def _checks() -> dict:
    from .. import validate as v

    return {
        "backbone": v.none_or(v.either(v.text(64), _is_extractor,
                                       what="must be a backbone name (anomaly backbones) or a FeatureExtractor")),
        "weights": v.path_like(),
        "layers": v.none_or(v.either(v.list_of(v.text(64), 16, 1), v.text(1024),
                                     what="must be a list of layer names or a comma-separated string")),
        "image_size": v.none_or(v.either(v.integer(8, MAX_IMAGE_SIZE), v.list_of(v.integer(8, MAX_IMAGE_SIZE), 2, 2),
                                         what=f"must be a side of 8 to {MAX_IMAGE_SIZE} px, or [height, width]")),
    }


#: checks of the backbone parameters image detectors share (backbone, weights, layers, image_size)
BACKBONE_CHECKS = _checks()


def make_extractor(backbone, weights, layers, image_size, device, seed) -> backbones.FeatureExtractor | None:
    """The frozen extractor of a detector's parameters (an extractor object is used as it is)."""
    if backbone is None:
        return None
    if isinstance(backbone, backbones.FeatureExtractor):
        return backbone
    try:
        return backbones.create(backbone, weights=weights, layers=layers, image_size=image_size,
                                device=device, seed=seed)
    except backbones.BackboneError as e:
        raise AnomalyError(str(e)) from None


# ---------------------------------------------------------------- extractors in bundles

_SHA = set("0123456789abcdef")


def check_backbone_config(cfg, where: str = "backbone_") -> dict:
    """A saved extractor config (``FeatureExtractor.config()``), every field checked."""
    from .. import validate as v

    if not isinstance(cfg, dict):
        raise AnomalyError(f"{where}: expected an object describing the backbone")
    names = [b.name for b in backbones.list_backbones()]
    v.record({
        "name": v.one_of(*names),
        "weights_source": v.text(4096),
        "weights_sha256": v.none_or(v.text(64)),
        "layers": v.list_of(v.text(64), 16, 1),
        "image_size": v.none_or(v.list_of(v.integer(8, MAX_IMAGE_SIZE), 2, 2)),
        "mean": v.list_of(v.number(-1e3, 1e3), 3, 1),
        "std": v.list_of(v.number(1e-6, 1e3), 3, 1),
        "seed": v.seed(),
    })(cfg, where)
    sha = cfg.get("weights_sha256")
    if sha is not None and (len(sha) != 64 or set(sha) - _SHA):
        raise AnomalyError(f"{where}.weights_sha256: not a sha256 hex digest")
    if sha is None and cfg["weights_source"].startswith("imagenet"):
        raise AnomalyError(f"{where}.weights_sha256: missing; ImageNet weights are only used with their hash checked")
    return cfg


def extractor_from_config(cfg: dict, device, weights: bool = True) -> backbones.FeatureExtractor:
    """The frozen extractor a bundle describes. ImageNet weights (``weights=True``) come from
    torchvision's cache, their hash checked; any other weights are the bundle's own tensors, to be
    loaded into the skeleton returned here (seeded random init): no other file is ever opened."""
    check_backbone_config(cfg)
    try:
        imagenet = cfg["weights_source"].startswith("imagenet")
        if imagenet and weights:
            member = cfg["weights_source"].partition(":")[2] or None
            spec = backbones.registry.get_spec(cfg["name"])
            resolved = backbones.weights.resolve_weights(spec, f"imagenet:{member}" if member else "imagenet", True)
            sha = cfg.get("weights_sha256")
            if sha and resolved.sha256 != sha:
                raise AnomalyError(
                    f"{cfg['name']}: the cached ImageNet weights have sha256 {resolved.sha256[:12]}..., the bundle "
                    f"recorded {sha[:12]}...; they are not the same weights"
                )
            state = resolved.state
        else:
            state = None
        return backbones.FeatureExtractor(
            cfg["name"], cfg["layers"], state_dict=state, weights_source=cfg["weights_source"],
            weights_sha256=cfg.get("weights_sha256"), image_size=cfg.get("image_size"), mean=cfg["mean"],
            std=cfg["std"], seed=cfg["seed"], device=device,
        )
    except backbones.BackboneError as e:
        raise AnomalyError(str(e)) from None
