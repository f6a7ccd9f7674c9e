"""The loop every synthesis op shares: convert, draw, bound, redraw, compose, measure.

An op's ``make(ctx)`` returns a candidate image, the region it may change and its drawn
parameters. The driver scales the change so that no pixel moves by more than ``severity``,
writes it in the caller's dtype, and takes as mask the pixels whose stored value changed, so the
mask is exact after rounding. Draws changing fewer than ``min_pixels`` or more than the area
bound are redrawn from the same per-sample stream (``min_pixels=0``: a fifth of the drawn region,
e.g. a patch pasted onto an identical background); after ``max_tries`` the draw that changed the
most pixels within the bound is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .._random import sample_seed
from ..errors import AugmentError
from ..schema import check_indices, check_int

MAX_AREA = 0.2  # fraction of the image that may change at severity 1
MIN_SIDE = 8  # smallest image side the ops work on
AUTO_MIN = 0.2  # by default a draw must change this fraction of the region it drew


@dataclass
class Context:
    """What an op sees for one sample."""

    image: np.ndarray  # float32 (H, W, C) in [0, 1]
    rng: np.random.Generator
    severity: float
    cap: int  # most pixels that may change
    params: dict
    other: Callable[[], np.ndarray]  # another normal image (H, W, C) float32, from the pool

    @property
    def size_scale(self) -> float:
        """Factor for linear sizes, so that areas scale with severity."""
        return float(np.sqrt(self.severity))


class Batch:
    """Images of any accepted kind as float32 (N, H, W, C), and back."""

    def __init__(self, images, where: str):
        self.torch = isinstance(images, torch.Tensor)
        if self.torch:
            if images.dim() != 4:
                raise AugmentError(
                    f"{where}: images: expected a 4-d tensor (N, C, H, W), got shape "
                    f"{tuple(images.shape)}"
                )
            if images.dtype not in (torch.uint8, torch.float32, torch.float64):
                raise AugmentError(
                    f"{where}: images: dtype {images.dtype} is not supported; use uint8 or "
                    "float in [0, 1]"
                )
            self.device = images.device
            arr = images.detach().permute(0, 2, 3, 1).cpu().numpy()
            self.gray = False
        else:
            arr = images
            if not isinstance(arr, np.ndarray):
                raise AugmentError(
                    f"{where}: images: expected a numpy array or torch tensor, got "
                    f"{type(images).__name__}"
                )
            if arr.ndim not in (3, 4):
                raise AugmentError(
                    f"{where}: images: expected (N, H, W) or (N, H, W, C), got shape {arr.shape}"
                )
            self.gray = arr.ndim == 3
            arr = arr[..., None] if self.gray else arr
        if arr.dtype != np.uint8 and arr.dtype not in (np.float32, np.float64):
            raise AugmentError(
                f"{where}: images: dtype {arr.dtype} is not supported; use uint8 or float in [0, 1]"
            )
        if arr.dtype != np.uint8 and arr.size and not (arr.min() >= 0 and arr.max() <= 1):
            raise AugmentError(
                f"{where}: images: float values must lie in [0, 1], got "
                f"[{arr.min():.4g}, {arr.max():.4g}]"
            )
        if min(arr.shape[1:3]) < MIN_SIDE:
            raise AugmentError(
                f"{where}: images: {arr.shape[1]}x{arr.shape[2]} is too small to synthesise on "
                f"(at least {MIN_SIDE}x{MIN_SIDE})"
            )
        self.stored = np.ascontiguousarray(arr)  # caller's dtype, (N, H, W, C)
        self.work = (
            arr.astype(np.float32) / 255 if arr.dtype == np.uint8 else arr.astype(np.float32)
        )

    def restore(self, stored: np.ndarray, masks: np.ndarray):
        """(images, masks) in the caller's kind: numpy arrays, or tensors on the caller's device."""
        if self.torch:
            imgs = torch.from_numpy(stored).permute(0, 3, 1, 2).contiguous().to(self.device)
            return imgs, torch.from_numpy(masks).to(self.device)
        return (stored[..., 0] if self.gray else stored), masks


def compose(
    orig: np.ndarray, work: np.ndarray, candidate: np.ndarray, region: np.ndarray, severity: float
):
    """Apply the bounded change; return (stored image, mask of changed pixels)."""
    delta = (candidate - work) * region[..., None]
    peak = float(np.abs(delta).max(initial=0.0))
    if peak > severity:
        delta *= severity / peak
    if orig.dtype == np.uint8:
        limit = np.floor(severity * 255 + 1e-6)
        step = np.clip(np.round(delta * 255), -limit, limit)
        out = np.clip(orig + step, 0, 255).astype(np.uint8)
    else:
        out = np.clip(orig + delta.astype(orig.dtype), 0, 1).astype(orig.dtype)
    return out, (out != orig).any(-1)


def run(
    batch: Batch,
    choose,
    *,
    severity: float,
    seed: int,
    indices,
    epoch: int,
    pool,
    min_pixels: int,
    max_tries: int,
    where: str,
):
    """Synthesise on every sample; ``choose(index)`` gives (op name, make, params) for a sample."""
    n, h, w, _ = batch.work.shape
    idx = check_indices(indices, n, f"{where}: indices")
    seed, epoch = check_int(seed, f"{where}: seed"), check_int(epoch, f"{where}: epoch")
    cap = max(1, int(np.floor(severity * MAX_AREA * h * w)))
    pool_work = _pool(pool, batch, where)
    out, masks, drawn = np.empty_like(batch.stored), np.zeros((n, h, w), bool), []
    for i in range(n):
        name, make, params = choose(int(idx[i]))
        rng = np.random.default_rng(sample_seed(seed, epoch, int(idx[i]), name))
        ctx = Context(
            batch.work[i], rng, severity, cap, params, _other(pool_work, i, rng, pool is None)
        )
        best = (batch.stored[i], np.zeros((h, w), bool), {})
        for attempt in range(1, max_tries + 1):
            candidate, region, info = make(ctx)
            img, mask = compose(batch.stored[i], batch.work[i], candidate, region, severity)
            count = int(mask.sum())
            if count > cap:
                continue
            enough = count >= (min_pixels or max(1, np.ceil(AUTO_MIN * region.sum())))
            if enough or count > best[1].sum():
                best = (img, mask, info)
            if enough:
                break
        out[i], masks[i] = best[0], best[1]
        drawn.append(
            {"op": name, **_plain(best[2]), "attempts": attempt, "changed": int(best[1].sum())}
        )
    images, masks = batch.restore(out, masks)
    return images, masks, drawn


def _pool(pool, batch: Batch, where: str) -> np.ndarray:
    if pool is None:
        return batch.work
    p = Batch(pool, f"{where}: pool").work
    if p.shape[1:] != batch.work.shape[1:] or not len(p):
        raise AugmentError(
            f"{where}: pool: expected images of shape {batch.work.shape[1:]} like the "
            f"batch, got {len(p)} of shape {p.shape[1:]}"
        )
    return p


def _other(pool: np.ndarray, i: int, rng: np.random.Generator, from_batch: bool):
    def draw() -> np.ndarray:
        if from_batch and len(pool) > 1:  # another image of the batch, never the sample itself
            return pool[(i + 1 + rng.integers(len(pool) - 1)) % len(pool)]
        return pool[rng.integers(len(pool))]

    return draw


def _plain(d: dict) -> dict:
    """numpy scalars and arrays -> Python numbers and lists (JSON-friendly)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, (list, tuple)):
            v = [x.item() if isinstance(x, np.generic) else x for x in v]
        out[k] = v
    return out
