"""The torch modules ONNX graphs are exported from: each detector that exports (its
``capabilities.exports_onnx``) builds its own in ``_onnx_graph`` from these. They score as the
detector does, with the same numerical pieces (:mod:`anomalib_lite.numeric`); imports nothing from
the detector or bundle layers, so the detectors can use them and :mod:`anomalib_lite.runtime.export`
(above both) writes them.
"""
from __future__ import annotations

import torch
from torch import nn

from .features import Featurizer
from ..numeric import combined, error_map, image_stats, mahalanobis, patch_maps, reweight_factor, surprise

__all__ = ["LatentGraph", "ReconstructionGraph"]


class _GraphFeaturizer(Featurizer):
    """The detector's featurizer, calling the extractor's forward directly (one traceable pass,
    no inference mode, no chunks): the same features, so the same code decides them."""

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.extractor(x).values())


def _featurizer(det, **kw) -> _GraphFeaturizer:
    feat = _GraphFeaturizer(extractor=det.extractor_, device="cpu", **kw)
    scale = getattr(det.featurizer_, "standardise", None) if hasattr(det, "featurizer_") else None
    if scale is not None:  # vectors standardised as the detector's (constants of the graph)
        feat.standardise = tuple(t.detach().cpu() for t in scale)
    return feat


def _nearest(q: torch.Tensor, bank: torch.Tensor, sq: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (M, k) and bank indices (M, k) of each query row's k nearest bank rows:
    candidates by ``|b|^2 - 2 q.b`` (one matrix product), exact distances to them (as KnnIndex)."""
    part = torch.addmm(sq, q, bank.T, alpha=-2.0)  # one Gemm, as KnnIndex
    idx = part.argmin(1, keepdim=True) if k == 1 else part.topk(k, 1, largest=False).indices
    dist = (q[:, None, :] - bank[idx]).norm(dim=-1)
    return dist, idx


class LatentGraph(nn.Module):
    """``LatentDistance`` as one module: features, then the search against constant banks (knn) or
    the Mahalanobis distance with constant precision matrices (gaussian, float64 as in torch), maps."""

    def __init__(self, det):
        super().__init__()
        from .memory import KnnIndex

        self.extractor = det.extractor_  # a submodule: its weights become the graph's initializers
        self.feat = _featurizer(det, patch_size=det.patch_size, normalize=det.normalize)
        shape = tuple(det.input_shape_)
        self.image = len(shape) == 3
        self.pooled = det._keeps_pooled(self.image)
        self.maps = self.image and det._learns_patches()
        self.combined = self.image and det.image_score == "combined"
        self.scale = det.evidence_scale_ if self.combined else None
        self.stats = self.combined and det.bank_.get("stats_mean") is not None
        if self.stats:  # the images' global statistics: their Gaussian (float64, as the detector's)
            self.register_buffer("stats_mean", det.bank_.get("stats_mean").detach().cpu())
            self.register_buffer("stats_precision", det.bank_.get("stats_precision").detach().cpu())
        self.k, self.reweight = int(det.k), int(det.reweight)
        self.gaussian = det.method == "gaussian"
        if self.gaussian:  # the precision matrices as the detector computes them (float64)
            b = det.bank_
            if self.pooled:
                self.register_buffer("mean", b.mean.detach().cpu())
                self.register_buffer("precision", det._method.precision_of(b.mean, b.scatter, det.moments_n_).cpu())
            if self.maps:
                self.register_buffer("patch_mean", b.patch_mean.detach().cpu()[:, None, :])
                self.register_buffer("patch_precision",
                                     det._method.precision_of(b.patch_mean, b.patch_scatter, det.patch_moments_n_).cpu())
                self.register_buffer("patch_channels", b.patch_channels.detach().cpu())
            return
        memory, patch = det.bank_.get("memory"), det.bank_.get("patch_memory")
        if self.pooled:
            self.register_buffer("memory", memory.detach().cpu())
            self.register_buffer("memory_sq", (memory.float() ** 2).sum(1).cpu())
        if self.maps:
            patch = patch.detach().cpu()
            self.register_buffer("patch_memory", patch)  # stored as fitted (float16): half the file
            self.register_buffer("patch_sq", (patch.float() ** 2).sum(1))
            if self.reweight:
                index = KnnIndex(patch)
                b = min(self.reweight, len(index))
                _, support = index.search(index.bank, b, return_index=True)  # each row's neighbours, itself first
                self.register_buffer("support", support)

    def _patch_maps(self, x: torch.Tensor) -> torch.Tensor:
        p = self.feat.patches(x)
        n, d, h, w = p.shape
        if self.gaussian:  # per-position Mahalanobis distance on the kept channels (PaDiM)
            sel = p[:, self.patch_channels].permute(2, 3, 0, 1).reshape(h * w, n, -1)
            dist = mahalanobis(sel, self.patch_mean, self.patch_precision).T
            return patch_maps(dist.reshape(n, h, w), tuple(x.shape[-2:]))
        rows = p.permute(0, 2, 3, 1).reshape(-1, d)
        bank = self.patch_memory.float()
        dist, idx = _nearest(rows, bank, self.patch_sq, 1)
        dist, idx = dist.reshape(n, h * w), idx.reshape(n, h * w)
        weight = None
        if self.reweight:
            top = dist.argmax(1, keepdim=True)  # each image's most anomalous patch
            worst = rows.reshape(n, h * w, d).gather(1, top[:, :, None].expand(-1, 1, d))[:, 0]
            support = self.support[idx.gather(1, top)[:, 0]]  # its match and the match's neighbours
            weight = reweight_factor(worst, bank[support])
        return patch_maps(dist.reshape(n, h, w), tuple(x.shape[-2:]), weight)

    def _pooled(self, images: torch.Tensor) -> torch.Tensor:
        emb = self.feat.embed(images)
        if self.gaussian:

            return mahalanobis(emb, self.mean, self.precision).float()
        return _nearest(emb, self.memory.float(), self.memory_sq, self.k)[0].mean(1)

    def forward(self, images: torch.Tensor):
        maps = self._patch_maps(images) if self.maps else None
        if self.combined:  # every kind of evidence, each a surprise on its measured scale
            patch = maps.flatten(1).amax(1)
            if self.scale is None:
                return patch, maps
            evidence = [patch, self._pooled(images)]
            if self.stats:
                evidence.append(mahalanobis(image_stats(images), self.stats_mean, self.stats_precision))
            return combined(*(surprise(v, s) for v, s in zip(evidence, self.scale))).float(), maps
        score = self._pooled(images) if self.pooled else maps.flatten(1).amax(1)  # the map's maximum, as torch
        return (score,) if maps is None else (score, maps)


class ReconstructionGraph(nn.Module):
    """``Reconstruction`` as one module: (backbone features, standardised,) autoencoder, error."""

    def __init__(self, det):
        super().__init__()
        self.extractor = det.extractor_
        self.feat = None if det.extractor_ is None else _featurizer(det)
        self.model = det.model_
        self.metric = det.metric
        if self.feat is not None:
            self.register_buffer("mean", det.norm_.mean.detach().cpu())
            self.register_buffer("std", det.norm_.std.detach().cpu())

    def forward(self, images: torch.Tensor):
        inp = images if self.feat is None else (self.feat.patches(images) - self.mean) / self.std
        err = error_map(inp, self.model(inp), self.metric)
        score = err.flatten(1).mean(1)
        if err.shape[-2:] != images.shape[-2:]:
            err = nn.functional.interpolate(err[:, None], size=images.shape[-2:], mode="bilinear",
                                            align_corners=False)[:, 0]
        return score, err
