"""torchvision backend: float or uint8 tensors (N, C, H, W), on any device, and masks that
follow the geometry.

The ops are ``torchvision.transforms.v2`` kernels called per sample (see ``_torch_ops`` for what
is v2 and the little that is not). Consecutive matrix ops (flips, rotate, scale, affine,
perspective, crop_and_pad) with the same fill are composed per sample and sampled once. Each
step touches only the samples it applies to.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from . import _torch_ops as ops
from ._plan import PlannedStep, plan
from .config import Config
from .errors import AugmentError
from .schema import OPS

_FLOATS = (torch.float32, torch.float64)
_UPCAST = (torch.float16, torch.bfloat16)


def check_tensor(x, where: str = "images") -> None:
    if not isinstance(x, torch.Tensor):
        hint = (
            " (use torch.from_numpy, or backend='imgaug' for numpy arrays)"
            if isinstance(x, np.ndarray)
            else ""
        )
        raise AugmentError(
            f"{where}: the torchvision backend takes a torch tensor (N, C, H, W), "
            f"got {type(x).__name__}{hint}"
        )
    if x.dim() != 4:
        raise AugmentError(
            f"{where}: expected a 4-d tensor (N, C, H, W), got shape {tuple(x.shape)}"
        )
    if x.dtype != torch.uint8 and x.dtype not in _FLOATS + _UPCAST:
        raise AugmentError(
            f"{where}: dtype {x.dtype} is not supported; use uint8 or float in [0, 1]"
        )
    if x.is_floating_point() and x.numel():
        lo, hi = torch.aminmax(x)
        if not (lo >= 0 and hi <= 1):
            raise AugmentError(
                f"{where}: float values must lie in [0, 1], got [{float(lo):.4g}, "
                f"{float(hi):.4g}]; normalise after augmenting"
            )


_MASK_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def check_masks(masks, x: torch.Tensor) -> None:
    """Masks (N, H, W) or (N, K, H, W) of the images' N, H and W, on their device."""
    if not isinstance(masks, torch.Tensor):
        raise AugmentError(
            f"masks: the torchvision backend takes a torch tensor (N, H, W) or (N, K, H, W), "
            f"got {type(masks).__name__}"
        )
    n, _, h, w = x.shape
    if masks.dim() not in (3, 4) or masks.shape[0] != n or masks.shape[-2:] != (h, w):
        raise AugmentError(
            f"masks: expected shape ({n}, {h}, {w}) or ({n}, K, {h}, {w}) to match the images "
            f"{tuple(x.shape)}, got {tuple(masks.shape)}"
        )
    if masks.dtype not in _MASK_DTYPES and not masks.is_floating_point():
        raise AugmentError(f"masks: dtype {masks.dtype} is not supported; use bool, an integer or float")
    if masks.device != x.device:
        raise AugmentError(f"masks: on {masks.device}, the images on {x.device}; put them on one device")


def run(config: Config, x: torch.Tensor, indices: np.ndarray, epoch: int, masks=None):
    """The augmented batch, or (batch, masks) when masks are given."""
    check_tensor(x)
    if masks is not None:
        check_masks(masks, x)
    dtype = x.dtype
    if dtype == torch.uint8:
        work = _Work(x.float() / 255, owned=True)
    else:  # float32 / float64 are worked on as they are, float16 / bfloat16 in float32
        work = _Work(x.float() if dtype in _UPCAST else x, owned=dtype in _UPCAST)
    if masks is not None:  # (N, K, H, W), bool as uint8: a copy that the ops may change
        m = masks if masks.dim() == 4 else masks[:, None]
        work.masks = m.to(torch.uint8) if m.dtype == torch.bool else m.clone()
    _execute(work, plan(config.steps, config.seed, epoch, indices))
    if dtype == torch.uint8:
        out = (work.x * 255).round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = work.x.to(dtype) if work.owned else work.x.clone()
    if masks is None:
        return out
    moved = work.masks.to(masks.dtype)
    return out, moved if masks.dim() == 4 else moved[:, 0]


class _Work:
    """The batch being augmented, and its masks (N, K, H, W) or None. The caller's tensor is
    copied once, before the first change made in place; ops that allocate their output (warps,
    flips of the whole batch) make no copy."""

    def __init__(self, x: torch.Tensor, owned: bool):
        self.x, self.owned, self.masks = x, owned, None

    def writable(self) -> torch.Tensor:
        if not self.owned:
            self.x, self.owned = self.x.clone(), True
        return self.x

    def apply(self, active: np.ndarray, fn, allocates: bool = False) -> None:
        """``fn(sub, idx)`` on the active samples only; the others pass through untouched."""
        idx = np.flatnonzero(active)
        if len(idx) == len(self.x) and len(idx):
            self.x = fn(self.x if allocates else self.writable(), idx)
            self.owned = True
        elif len(idx):
            x = self.writable()
            t = torch.from_numpy(idx).to(x.device)
            x[t] = fn(x[t], idx)

    def move(self, active: np.ndarray, fn) -> None:
        """``fn(sub, sub_masks, idx) -> (sub, sub_masks)`` (a geometric op, which allocates its
        output) on the active samples and their masks."""
        idx = np.flatnonzero(active)
        if len(idx) == len(self.x) and len(idx):
            self.x, self.masks = fn(self.x, self.masks, idx)
            self.owned = True
        elif len(idx):
            x = self.writable()
            t = torch.from_numpy(idx).to(x.device)
            sub, sub_masks = fn(x[t], None if self.masks is None else self.masks[t], idx)
            x[t] = sub
            if self.masks is not None:
                self.masks[t] = sub_masks


def _is_matrix(s: PlannedStep) -> bool:
    return OPS[s.step.op].geometric and s.step.op != "elastic"


def _fill(s: PlannedStep) -> tuple:
    return s.step.params.get("fill", 0.0), s.step.params.get("mode", "constant")


def _execute(work: _Work, steps: list[PlannedStep]) -> None:
    i = 0
    while i < len(steps):
        s = steps[i]
        if _is_matrix(s):
            j, fill = _matrix_run(steps, i)
            _warp_run(work, steps[i:j], fill)
            i = j
            continue
        if s.step.op in ops.LINEAR:
            _linear(work, s)
        elif s.step.op == "elastic":
            work.move(
                s.active, lambda sub, m, idx: ops.elastic(sub, m, s.keys[idx], s.step.params, s.u[idx])
            )
        else:
            work.apply(s.active, _pixel_op(s))
        i += 1


def _pixel_op(s: PlannedStep):
    fn = ops.PIXEL_OPS[s.step.op]
    return lambda sub, idx: fn(sub, s.keys[idx], s.step.params, s.u[idx])


def _linear(work: _Work, s: PlannedStep) -> None:
    """Brightness / contrast on the whole batch in place (cheaper than gathering the samples it
    applies to), with coefficients that are exactly the identity elsewhere."""
    if not s.active.any():
        return
    gain, offset = ops.linear_coefficients(s.step.op, s.step.params, s.u, s.active)
    x = work.writable()
    if gain is not None:
        x.mul_(torch.from_numpy(gain).to(x)[:, None, None, None])
    x.add_(torch.from_numpy(offset).to(x)[:, None, None, None]).clamp_(0, 1)


def _matrix_run(steps: list[PlannedStep], i: int) -> tuple[int, tuple]:
    """End of the run of matrix ops starting at i that share one fill (flips have none)."""
    fill = None
    while i < len(steps) and _is_matrix(steps[i]):
        if steps[i].step.params:
            if fill is None:
                fill = _fill(steps[i])
            elif _fill(steps[i]) != fill:
                break
        i += 1
    return i, fill or (0.0, "constant")


_FLIPS = {  # (x sign, y sign) of a matrix made of flips only -> v2 flips of images and masks
    (-1, 1): (TF.horizontal_flip_image, TF.horizontal_flip_mask),
    (1, -1): (TF.vertical_flip_image, TF.vertical_flip_mask),
    (-1, -1): (
        lambda v: TF.vertical_flip_image(TF.horizontal_flip_image(v)),
        lambda v: TF.vertical_flip_mask(TF.horizontal_flip_mask(v)),
    ),
}


def _warp_run(work: _Work, run: list[PlannedStep], fill: tuple) -> None:
    h, w = work.x.shape[-2:]
    inv = np.broadcast_to(np.eye(3), (len(work.x), 3, 3)).copy()
    for t in run:
        if t.active.any():
            inv[t.active] = inv[t.active] @ ops.inverse_matrix(
                t.step.op, t.step.params, t.u[t.active], h, w
            )
    # samples whose matrix is only flips are flipped exactly; identity passes through
    flips = np.all(inv == inv * np.eye(3), axis=(1, 2)) & np.all(
        np.abs(inv) == np.eye(3), axis=(1, 2)
    )
    for (sx, sy), (image, mask) in _FLIPS.items():
        which = flips & (inv[:, 0, 0] == sx) & (inv[:, 1, 1] == sy)
        work.move(
            which,
            lambda sub, m, idx, image=image, mask=mask: (image(sub), None if m is None else mask(m)),
        )
    work.move(~flips, lambda sub, m, idx: ops.warp(sub, m, inv[idx], *fill))
