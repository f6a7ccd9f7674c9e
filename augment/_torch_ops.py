"""The torchvision backend's ops: batched over samples, parameters drawn per sample.

Geometric ops become 3x3 matrices in centred pixel coordinates (origin at the image centre, x to
the right, y down), composed per sample and applied with one ``grid_sample``. The matrices follow
imgaug's conventions (skimage ``AffineTransform``, ``PerspectiveTransform`` corners), so the two
backends agree. Per pixel there is only elementwise arithmetic and per-sample generators, never
a reduction across samples, so a sample's output is bit-identical whatever batch it is in.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import _random

_PADDING = {"constant": "zeros", "edge": "border", "reflect": "reflection"}


def _span(rng: tuple[float, float], u: np.ndarray) -> np.ndarray:
    return rng[0] + u * (rng[1] - rng[0])


def _rotation(deg: np.ndarray) -> np.ndarray:
    r = np.deg2rad(deg)
    m = np.zeros((len(r), 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = np.cos(r), -np.sin(r), np.sin(r), np.cos(r)
    m[:, 2, 2] = 1
    return m


def _diag(sx, sy) -> np.ndarray:
    m = np.zeros((len(sx), 3, 3))
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = sx, sy, 1
    return m


def _normals(u: np.ndarray) -> np.ndarray:
    """Box-Muller on pairs of columns of u: (N, 2k) uniforms -> (N, k) standard normals."""
    a, b = u[:, 0::2], u[:, 1::2]
    return np.sqrt(-2 * np.log1p(-a)) * np.cos(2 * np.pi * b)


# ---- inverse matrices (output pixel -> input pixel) for each geometric op -----------------


def inverse_matrix(op: str, params: dict, u: np.ndarray, h: int, w: int) -> np.ndarray:
    n = len(u)
    if op == "hflip":
        return _diag(-np.ones(n), np.ones(n))
    if op == "vflip":
        return _diag(np.ones(n), -np.ones(n))
    if op == "rotate":
        return _rotation(-_span(params["degrees"], u[:, 0]))
    if op == "scale":
        f = _span(params["factor"], u[:, 0])
        return _diag(1 / f, 1 / f)
    if op == "affine":
        return np.linalg.inv(_affine_forward(params, u, h, w))
    if op == "perspective":
        return _perspective_inverse(params, u, h, w)
    if op == "crop_and_pad":  # the padded/cropped canvas, in input pixels, spans the output
        top, right, bottom, left = (
            _span(params["fraction"], u[:, i]) * (h, w, h, w)[i] for i in range(4)
        )
        sx, sy = (w + left + right) / w, (h + top + bottom) / h
        m = _diag(sx, sy)
        m[:, 0, 2] = w / 2 * (sx - 1) - left
        m[:, 1, 2] = h / 2 * (sy - 1) - top
        return m
    raise KeyError(op)


def _affine_forward(params: dict, u: np.ndarray, h: int, w: int) -> np.ndarray:
    """imgaug Affine: x' = R(rotate) Shear_x(shear) S(scale) x + t, about the centre."""
    tx = _span(params["translate"], u[:, 0]) * w
    ty = _span(params["translate"], u[:, 1]) * h
    s = _span(params["scale"], u[:, 2])
    shear = np.tan(np.deg2rad(_span(params["shear"], u[:, 3])))
    m = _rotation(_span(params["rotate"], u[:, 4]))
    m[:, :2, 1] = m[:, :2, 1] - shear[:, None] * m[:, :2, 0]  # R @ [[1, -tan], [0, 1]]
    m[:, :2, :2] *= s[:, None, None]
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _perspective_inverse(params: dict, u: np.ndarray, h: int, w: int) -> np.ndarray:
    """Map the output rectangle onto a quadrilateral whose corners move inward by |N(0, s)|."""
    s = _span(params["distortion"], u[:, 0])
    j = np.mod(np.abs(_normals(u[:, 1:17]) * s[:, None]), 1).reshape(-1, 4, 2)
    quad = np.stack(
        [j[:, 0], [1, 0] + [-1, 1] * j[:, 1], 1 - j[:, 2], [0, 1] + [1, -1] * j[:, 3]], 1
    )
    quad = quad * [w, h] - [w / 2, h / 2]  # centred coordinates
    rect = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    return _homographies(rect, quad)


def _homographies(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(N, 3, 3) matrices mapping the 4 points src (4, 2) to dst (N, 4, 2)."""
    n = len(dst)
    a = np.zeros((n, 8, 8))
    for i, (x, y) in enumerate(src):
        X, Y = dst[:, i, 0], dst[:, i, 1]
        a[:, 2 * i, :3] = [x, y, 1]
        a[:, 2 * i, 6], a[:, 2 * i, 7] = -X * x, -X * y
        a[:, 2 * i + 1, 3:6] = [x, y, 1]
        a[:, 2 * i + 1, 6], a[:, 2 * i + 1, 7] = -Y * x, -Y * y
    b = dst.reshape(n, 8)
    sol = np.linalg.solve(a, b[..., None])[..., 0]
    return np.concatenate([sol, np.ones((n, 1))], 1).reshape(n, 3, 3)


# ---- sampling --------------------------------------------------------------------------------


def _centred(n: int, x: torch.Tensor) -> torch.Tensor:
    return torch.arange(n, dtype=x.dtype, device=x.device) - (n - 1) / 2


def _sample(x: torch.Tensor, grid: torch.Tensor, fill: float, mode: str):
    """Bilinear sampling at normalised coordinates grid (n, H, W, 2)."""
    shift = fill if mode == "constant" and fill else 0.0
    out = F.grid_sample(
        x - shift if shift else x,
        grid,
        mode="bilinear",
        padding_mode=_PADDING[mode],
        align_corners=False,
    )
    return out.add_(shift) if shift else out


def warp(x: torch.Tensor, inv: np.ndarray, fill: float, mode: str) -> torch.Tensor:
    """Resample each image through its own inverse matrix (n, 3, 3) in centred pixels."""
    n, _, h, w = x.shape
    inv = np.diag([2 / w, 2 / h, 1.0]) @ inv  # output in grid_sample's normalised units
    c = torch.from_numpy(inv).to(x.device, x.dtype)
    xs, ys = _centred(w, x), _centred(h, x)
    grid = torch.empty((n, h, w, 2), dtype=x.dtype, device=x.device)
    for row in (0, 1):  # each coordinate is a row part plus a column part: one full-size add
        torch.add(
            (c[:, row, 0, None] * xs)[:, None, :],
            (c[:, row, 1, None] * ys + c[:, row, 2, None])[:, :, None],
            out=grid[..., row],
        )
    if not np.all(inv[:, 2] == [0, 0, 1]):  # projective: divide by the third coordinate
        gw = (c[:, 2, 0, None] * xs)[:, None, :] + (c[:, 2, 1, None] * ys + c[:, 2, 2, None])[
            :, :, None
        ]
        grid /= gw[..., None]
    return _sample(x, grid, fill, mode)


def elastic(x, keys, params: dict, u: np.ndarray) -> torch.Tensor:
    alpha = _span(params["alpha"], u[:, 0])
    sigma = _span(params["sigma"], u[:, 1])
    h, w = x.shape[-2:]
    # noise on a margin as wide as the largest kernel, so that borders are smoothed like the
    # middle (as imgaug does); the margin depends on the config only, not on the batch
    m = int(_radius(np.array([params["sigma"][1]]))[0])
    d = _random.field(keys, (2, h + 2 * m, w + 2 * m), 1, "uniform", x).mul_(2).sub_(1)
    d = gaussian_blur(d, sigma)[..., m : m + h, m : m + w].mul_(_per_sample(alpha, x))  # pixels
    grid = torch.stack(
        [(d[:, 0] + _centred(w, x)) * (2 / w), (d[:, 1] + _centred(h, x)[:, None]) * (2 / h)], -1
    )
    return _sample(x, grid, params["fill"], params["mode"])


# ---- intensity ops (they may change x in place: the caller owns it) -------------------------


def _per_sample(values: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(values).to(x.device, x.dtype)[:, None, None, None]


LINEAR = ("brightness", "contrast")


def linear_coefficients(op: str, params: dict, u: np.ndarray, active: np.ndarray):
    """Per-sample (gain, offset) of x * gain + offset, exactly the identity where not active;
    gain None means 1. Contrast scales distances from grey 0.5 (as imgaug's LinearContrast)."""
    if op == "brightness":
        return None, np.where(active, _span(params["delta"], u[:, 0]), 0.0)
    gain = np.where(active, _span(params["factor"], u[:, 0]), 1.0)
    return gain, 0.5 * (1 - gain)


def gamma(x, keys, params, u):
    # in float64 so that pow rounds the same in vectorised and scalar code paths (MPS has none)
    wide = torch.float32 if x.device.type == "mps" else torch.float64
    g = torch.from_numpy(_span(params["gamma"], u[:, 0])).to(x.device, wide)[:, None, None, None]
    return x.copy_(x.to(wide).pow_(g))


def _channels(x, per_channel: bool) -> tuple[int, int, int]:
    return (x.shape[1] if per_channel else 1, *x.shape[-2:])


def gaussian_noise(x, keys, params, u):
    z = _random.field(keys, _channels(x, params["per_channel"]), 2, "normal", x)
    return x.add_(z.mul_(_per_sample(_span(params["sigma"], u[:, 0]), x))).clamp_(0, 1)


def salt_pepper(x, keys, params, u):
    v = _random.field(keys, _channels(x, params["per_channel"]), 3, "uniform", x)
    amount = _per_sample(_span(params["amount"], u[:, 0]), x)
    x = torch.where(v < amount * 0.5, 1.0, x)  # salt, then pepper, half of `amount` each
    return torch.where((v >= amount * 0.5) & (v < amount), 0.0, x)


def erasing(x, keys, params, u):
    h, w = x.shape[-2:]
    cx, cy = u[:, 0], u[:, 1]  # centre, uniform in the image (imgaug Cutout position="uniform")
    sh, sw = _span(params["size"], u[:, 2]), _span(params["size"], u[:, 3])

    def inside(n, centre, size):
        lo = np.clip(np.trunc(centre * n - size * n / 2), 0, n)[:, None]
        hi = np.clip(np.trunc(centre * n + size * n / 2), 0, n)[:, None]
        i = np.arange(n)[None, :]
        return torch.from_numpy((i >= lo) & (i < hi)).to(x.device)

    box = inside(h, cy, sh)[:, None, :, None] & inside(w, cx, sw)[:, None, None, :]
    return x.masked_fill_(box, params["value"])


def blur(x, keys, params, u):
    return gaussian_blur(x, _span(params["sigma"], u[:, 0]))


def _reflect_index(n: int, r: int) -> torch.Tensor:
    """Indices of a 'reflect 101' padding by r on both sides, for any r."""
    if n == 1:
        return torch.zeros(n + 2 * r, dtype=torch.long)
    i = np.abs(np.arange(-r, n + r)) % (2 * (n - 1))
    return torch.from_numpy(np.where(i >= n, 2 * (n - 1) - i, i))


def _radius(sigma: np.ndarray) -> np.ndarray:
    """Kernel radius as imgaug sizes cv2's kernel (3.3 sigma wide, at least 5); 0: no blur."""
    size = np.where(sigma < 3, 3.3 * sigma, np.where(sigma < 5, 2.9 * sigma, 2.6 * sigma))
    size = np.maximum(size, 5).astype(np.int64)
    return np.where(sigma > 1e-3, (size + (size % 2 == 0)) // 2, 0)


def gaussian_blur(x: torch.Tensor, sigma: np.ndarray) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (pixels) per sample, kernel sized like imgaug's.

    Taps are summed in a fixed order with zero weights beyond a sample's own radius, so a
    sample's result does not depend on the other samples' sigmas.
    """
    radius = _radius(sigma)
    r = int(radius.max(initial=0))
    if r == 0:
        return x
    k = np.arange(-r, r + 1)
    wts = np.exp(-(k[None, :] ** 2) / (2 * np.maximum(sigma, 1e-3)[:, None] ** 2))
    wts[np.abs(k)[None, :] > radius[:, None]] = 0
    wts /= wts.sum(1, keepdims=True)
    wts = torch.from_numpy(wts).to(x.device, x.dtype)[:, :, None, None, None]
    for dim in (3, 2):
        n = x.shape[dim]
        padded = x.index_select(dim, _reflect_index(n, r).to(x.device))
        out = wts[:, 0] * padded.narrow(dim, 0, n)
        for t in range(1, 2 * r + 1):
            out += wts[:, t] * padded.narrow(dim, t, n)
        x = out
    return x


PIXEL_OPS = {
    "gamma": gamma,
    "gaussian_noise": gaussian_noise,
    "salt_pepper": salt_pepper,
    "blur": blur,
    "erasing": erasing,
    "elastic": elastic,
}
