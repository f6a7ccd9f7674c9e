"""torchvision backend: float or uint8 tensors (N, C, H, W), on any device, one pass per batch.

Consecutive matrix ops (flips, rotate, scale, affine, perspective, crop_and_pad) with the same
fill are composed per sample and sampled once. Each step touches only the samples it applies to.
"""

from __future__ import annotations

import numpy as np
import torch

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


def run(config: Config, x: torch.Tensor, indices: np.ndarray, epoch: int) -> torch.Tensor:
    check_tensor(x)
    dtype = x.dtype
    if dtype == torch.uint8:
        work = _Work(x.float() / 255, owned=True)
    else:  # float32 / float64 are worked on as they are, float16 / bfloat16 in float32
        work = _Work(x.float() if dtype in _UPCAST else x, owned=dtype in _UPCAST)
    _execute(work, plan(config.steps, config.seed, epoch, indices))
    if dtype == torch.uint8:
        return (work.x * 255).round_().clamp_(0, 255).to(torch.uint8)
    return work.x.to(dtype) if work.owned else work.x.clone()


class _Work:
    """The batch being augmented. The caller's tensor is copied once, before the first change
    made in place; ops that allocate their output (warps, flips) make no copy."""

    def __init__(self, x: torch.Tensor, owned: bool):
        self.x, self.owned = x, owned

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
    for sx, sy in ((-1, 1), (1, -1), (-1, -1)):
        which = flips & (inv[:, 0, 0] == sx) & (inv[:, 1, 1] == sy)
        dims = [d for d, s in ((3, sx), (2, sy)) if s < 0]
        work.apply(which, lambda sub, idx, dims=dims: sub.flip(dims), allocates=True)
    work.apply(~flips, lambda sub, idx: ops.warp(sub, inv[idx], *fill), allocates=True)
