"""The numerical pieces that scoring and the ONNX graphs share: one copy each.

Robust surprises of log-distances (the combined image score), an image's global statistics (its
third kind of evidence), Mahalanobis distances (Gaussian scores of LatentDistance and
SyntheticOOD), PatchCore's map making (upsampling, Gaussian blur,
re-weighting) and reconstruction error maps (MSE, L1, 1 - SSIM). Plain torch functions of tensors,
no state: what a detector scores with is what its exported graph computes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["STATS_OFFSET", "combined", "error_map", "gaussian_blur", "image_stats", "log_scale", "mahalanobis", "patch_maps",
           "reweight_factor", "ssim_map", "standardised_precision", "surprise"]


def surprise(values: torch.Tensor, scale) -> torch.Tensor:
    """Robust z of log-distances against ``[median, scale]`` measured on held-out normals."""
    return (values.double().clamp_min(1e-12).log() - scale[0]) / scale[1]


#: where the image statistics' surprise starts to count in the combined score (robust sds): a
#: five-number summary of a whole image varies with the hand or the light more than its patches
#: do; counted from 0, it diluted small local defects on the dev digits (-2.4 image ROC-AUC;
#: from 1, -0.8; ``benchmarks/stats_combination.py`` and BENCHMARKS.md)
STATS_OFFSET = 1.0


def combined(z_patch: torch.Tensor, z_pooled: torch.Tensor, z_stats: torch.Tensor | None = None) -> torch.Tensor:
    """The combined image score: the length of the vector of surprises (patch, pooled and, when
    measured, the image's statistics less :data:`STATS_OFFSET`), each made positive by a softplus
    (which keeps their order); a square root of squares, as ``hypot`` has no ONNX op."""
    total = 0
    for z in (z_patch, z_pooled) if z_stats is None else (z_patch, z_pooled, z_stats - STATS_OFFSET):
        p = F.softplus(z)
        total = total + p * p
    return torch.sqrt(total)


#: the smallest side :func:`image_stats` reads (its Laplacian needs a pixel on each side)
STATS_MIN_SIDE = 3


def image_stats(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 2C + 2): each channel's mean and standard deviation, and of the
    channels' mean its mean absolute step between neighbouring pixels and its mean absolute
    Laplacian (averages all: no statistic of a single pixel, which one hot pixel would move). An
    image's exposure, contrast and sharpness: what a blur, a thinner stroke, a rescaled part or a
    dimmer light changes while every patch can still look like a normal one (H, W >=
    :data:`STATS_MIN_SIDE`)."""
    x = x.float()
    g = x.mean(1)
    step = (g[:, :, 1:] - g[:, :, :-1]).abs().mean((1, 2)) + (g[:, 1:, :] - g[:, :-1, :]).abs().mean((1, 2))
    lap = (4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]).abs().mean((1, 2))
    return torch.cat([x.mean((2, 3)), x.std((2, 3)), step[:, None], lap[:, None]], 1)


def standardised_precision(mean: torch.Tensor, cov: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """The precision matrix of a covariance whose correlation is shrunk towards the identity by
    ``shrinkage`` (statistics in different units: each is standardised first, so none dominates
    the shrinkage). Each standard deviation is at least one 8-bit grey level (1/255 of an image
    in [0, 1]; 1e-3 of the mean's size when that is larger): a statistic that hardly varies in
    training (the contrast of a part always lit the same) does not make a difference of one
    level large."""
    sd = torch.maximum(torch.diagonal(cov).clamp_min(0).sqrt(), (1e-3 * mean.abs()).clamp_min(1 / 255))
    corr = cov / (sd[:, None] * sd[None, :])
    eye = torch.eye(len(sd), dtype=cov.dtype, device=cov.device)
    corr = corr * (1 - eye) + eye  # a floored deviation: its variance is the floor's
    inv = torch.linalg.inv((1 - shrinkage) * corr + shrinkage * eye)
    # row-major, as a bundle stores it: LAPACK's column-major result would take another BLAS path
    # in the distance than the reloaded copy, and on some CPUs give other last bits
    return (inv / (sd[:, None] * sd[None, :])).contiguous()


def log_scale(values: torch.Tensor) -> list[float]:
    """[median, 1.4826 MAD] of the log of ``values`` (a floor keeps a handful from dividing by ~0)."""
    v = values.double().clamp_min(1e-12).log()
    med = float(v.median())
    return [med, max(1.4826 * float((v - med).abs().median()), 0.05)]


def mahalanobis(x: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """sqrt((x-m)^T P (x-m)) over the last dim; leading dims broadcast (positions, samples)."""
    d = x.to(mean.dtype) - mean
    return ((d @ precision) * d).sum(-1).clamp_min(0).sqrt()


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (N,H,W) maps; PatchCore smooths its upsampled maps the same way."""
    if sigma < 0.5:
        return maps
    r = int(2 * round(2 * sigma) + 1)
    t = torch.arange(r, dtype=maps.dtype, device=maps.device) - r // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    x = maps[:, None]
    x = F.conv2d(F.pad(x, (r // 2, r // 2, 0, 0), mode="replicate"), g.view(1, 1, 1, r))
    x = F.conv2d(F.pad(x, (0, 0, r // 2, r // 2), mode="replicate"), g.view(1, 1, r, 1))
    return x[:, 0]


def patch_maps(dist: torch.Tensor, size: tuple[int, int], weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel maps (n, H, W) from patch distances (n, h, w): upsampled bilinearly to ``size``,
    Gaussian-blurred (sigma 4 px at 224 px), scaled by ``weight`` (n,) when given (re-weighting).
    Shared by scoring and the ONNX graph (:mod:`anomalib_lite.runtime.export`)."""
    maps = dist[:, None].float()
    H, W = size
    if tuple(dist.shape[-2:]) != (H, W):
        maps = F.interpolate(maps, size=(H, W), mode="bilinear", align_corners=False)
    maps = gaussian_blur(maps[:, 0], sigma=4.0 * max(H, W) / 224)
    return maps if weight is None else maps * weight[:, None, None]


def reweight_factor(worst: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """PatchCore's ``1 - softmax(d)[0]``, d = distances from each image's most anomalous patch
    (n, d) to its matched bank patch and that patch's bank neighbours (n, b, d), match first."""
    d = (worst[:, None, :].float() - support.float()).norm(dim=-1)
    return 1 - torch.softmax(d, dim=1)[:, 0]


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel SSIM (N, H, W) of images in [0, 1], averaged over channels (Wang et al. 2004)."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2
    pool = lambda t: F.avg_pool2d(F.pad(t, (pad,) * 4, mode="reflect"), window, stride=1)
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx**2, pool(y * y) - my**2, pool(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(1)


def error_map(inp: torch.Tensor, rec: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-pixel reconstruction error (N, h, w) of ``metric``: 1 - SSIM, mean absolute or mean
    squared error over channels (shared by scoring and the ONNX graph)."""
    if metric == "ssim":
        return 1 - ssim_map(inp, rec)
    if metric == "l1":
        return (inp - rec).abs().mean(1)
    return ((inp - rec) ** 2).mean(1)
