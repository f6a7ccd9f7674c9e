"""The torchvision backend's ops: ``torchvision.transforms.v2`` kernels, called once per sample
with parameters drawn here from the keyed generators (v2's transform classes draw one set of
parameters per call, for the whole batch, from torch's global generator).

What each op runs:

- ``hflip``, ``vflip``: v2 ``horizontal_flip`` / ``vertical_flip``, on all the samples at once.
- ``rotate``, ``scale``, ``affine``, ``perspective``, ``crop_and_pad``: a 3x3 matrix per sample;
  the matrices of consecutive such steps are composed and applied with one v2 ``perspective``
  (its ``coefficients`` form) per sample, so a run of steps resamples once. One step alone
  gives what v2 ``affine(angle, translate, scale, shear)`` or ``perspective(startpoints,
  endpoints)`` gives (tests check it). The matrices follow imgaug's conventions (skimage
  ``AffineTransform``, ``PerspectiveTransform`` corners), so the two backends agree.
- ``elastic``: v2 ``elastic``, its displacement keyed uniform noise smoothed by v2
  ``gaussian_blur`` (as v2's ``ElasticTransform`` makes it, with imgaug's kernel size).
- ``blur``: v2 ``gaussian_blur``, kernel sized as imgaug sizes cv2's. ``gamma``: v2
  ``adjust_gamma``. ``erasing``: v2 ``erase``.
- Masks follow every geometric op through v2's mask kernels (nearest neighbour, 0 from outside).

Hand-written, because v2 lacks it:

- ``edge`` and ``reflect`` modes of the warps: v2 pads with zeros or a fill only; these run
  ``grid_sample`` with border / reflection padding on the same per-sample matrices and fields.
- An exact constant ``fill``: v2 blends its fill in as ``sampled * w + (1 - w) * fill`` (``w``
  the in-bounds weight, which ``sampled`` already carries), darkening the border; here v2 warps
  ``x - fill`` with zero padding and ``fill`` is added back, as cv2 and imgaug do.
- Blur kernels as wide as the image: v2's reflect padding needs a pad smaller than the image, so
  such images are reflect-padded here first.
- ``gaussian_noise`` and ``salt_pepper``: noise from a generator per sample (v2's
  ``gaussian_noise`` draws from the global generator and cannot share noise across channels;
  v2 has no salt and pepper).
- ``brightness`` (added) and ``contrast`` (about grey 0.5): v2's ``adjust_brightness``
  multiplies and its ``adjust_contrast`` blends with the image's mean; these stay batched.

A sample's output depends only on its own input and draws, never on the other samples.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from . import _random

_PADDING = {"constant": "zeros", "edge": "border", "reflect": "reflection"}
_BILINEAR = TF.InterpolationMode.BILINEAR


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


# ---- inverse matrices (output pixel -> input pixel, centred coordinates) for each geometric op --
# Centred coordinates: origin at the image centre, x to the right, y down, one unit per pixel.


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
        return _homographies(_RECT * [w, h], perspective_quads(params, u, h, w))
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


def affine_params(params: dict, u: np.ndarray, h: int, w: int) -> dict[str, np.ndarray]:
    """The drawn ``affine`` parameters in v2 ``affine``'s terms: degrees clockwise on screen,
    translation in pixels, scale, x shear in degrees."""
    return {
        "angle": _span(params["rotate"], u[:, 4]),
        "tx": _span(params["translate"], u[:, 0]) * w,
        "ty": _span(params["translate"], u[:, 1]) * h,
        "scale": _span(params["scale"], u[:, 2]),
        "shear": _span(params["shear"], u[:, 3]),
    }


def _affine_forward(params: dict, u: np.ndarray, h: int, w: int) -> np.ndarray:
    """x' = R(angle) Shear_x(shear) S(scale) x + t about the centre (imgaug ``Affine``; v2
    ``affine``'s matrix with no y shear)."""
    a = affine_params(params, u, h, w)
    m = _rotation(a["angle"])
    shear = np.tan(np.deg2rad(a["shear"]))
    m[:, :2, 1] = m[:, :2, 1] - shear[:, None] * m[:, :2, 0]  # R @ [[1, -tan], [0, 1]]
    m[:, :2, :2] *= a["scale"][:, None, None]
    m[:, 0, 2], m[:, 1, 2] = a["tx"], a["ty"]
    return m


_RECT = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])  # corners, centred


def perspective_quads(params: dict, u: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, 4, 2) corners (centred pixels; top-left, top-right, bottom-right, bottom-left) of the
    quadrilateral of the input that the output shows: each corner moves inward by |N(0, s)|."""
    s = _span(params["distortion"], u[:, 0])
    j = np.mod(np.abs(_normals(u[:, 1:17]) * s[:, None]), 1).reshape(-1, 4, 2)
    quad = np.stack(
        [j[:, 0], [1, 0] + [-1, 1] * j[:, 1], 1 - j[:, 2], [0, 1] + [1, -1] * j[:, 3]], 1
    )
    return quad * [w, h] - [w / 2, h / 2]


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


def coefficients(inv: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, 8) v2 ``perspective`` coefficients of inverse matrices in centred coordinates: v2
    measures from the top-left corner (pixel i's centre at i + 0.5) and fixes the last entry to 1."""
    shift = np.diag([1.0, 1.0, 1.0])
    shift[:2, 2] = w / 2, h / 2
    back = np.diag([1.0, 1.0, 1.0])
    back[:2, 2] = -w / 2, -h / 2
    p = shift @ inv @ back
    return (p / p[:, 2:, 2:]).reshape(-1, 9)[:, :8]


# ---- warps -----------------------------------------------------------------------------------


def _centred(n: int, x: torch.Tensor) -> torch.Tensor:
    return torch.arange(n, dtype=x.dtype, device=x.device) - (n - 1) / 2


def _shifted(fn, x: torch.Tensor, fill: float) -> torch.Tensor:
    """``fn`` (a v2 warp with zero padding) with pixels from outside at ``fill`` exactly."""
    return fn(x - fill).add_(fill) if fill else fn(x)


def warp(x: torch.Tensor, masks, inv: np.ndarray, fill: float, mode: str):
    """Resample each image (and its masks) through its own inverse matrix (n, 3, 3)."""
    n, _, h, w = x.shape
    if mode != "constant":
        grid = _matrix_grid(inv, h, w, x)
        return _sample(x, grid, fill, mode), _sample_masks(masks, grid, mode)
    out = torch.empty_like(x)
    moved = None if masks is None else torch.empty_like(masks)
    for i, c in enumerate(coefficients(inv, h, w).tolist()):
        out[i] = _shifted(
            lambda v, c=c: TF.perspective_image(v, None, None, _BILINEAR, None, c), x[i], fill
        )
        if masks is not None:
            moved[i] = TF.perspective_mask(masks[i], None, None, coefficients=c)
    return out, moved


def _matrix_grid(inv: np.ndarray, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(n, H, W, 2) ``grid_sample`` coordinates of inverse matrices in centred pixels."""
    n = len(inv)
    inv = np.diag([2 / w, 2 / h, 1.0]) @ inv  # output in grid_sample's normalised units
    c = torch.from_numpy(inv).to(like.device, like.dtype)
    xs, ys = _centred(w, like), _centred(h, like)
    grid = torch.empty((n, h, w, 2), dtype=like.dtype, device=like.device)
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
    return grid


def _sample(x: torch.Tensor, grid: torch.Tensor, fill: float, mode: str) -> torch.Tensor:
    """Bilinear sampling at normalised coordinates grid (n, H, W, 2), padded as ``mode`` says."""
    fn = lambda v: F.grid_sample(  # noqa: E731
        v, grid, mode="bilinear", padding_mode=_PADDING[mode], align_corners=False
    )
    return _shifted(fn, x, fill if mode == "constant" else 0.0)


def _sample_masks(masks, grid: torch.Tensor, mode: str):
    """Nearest-neighbour sampling of masks (any dtype) at grid; labels are never blended."""
    if masks is None:
        return None
    out = F.grid_sample(
        masks.to(grid.dtype), grid, mode="nearest", padding_mode=_PADDING[mode], align_corners=False
    )
    return out if masks.is_floating_point() else out.round_().to(masks.dtype)


def elastic_displacement(keys, params: dict, u: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """(n, H, W, 2) displacements in v2 ``elastic``'s normalised units: uniform noise in
    [-1, 1] from each sample's generator, smoothed by v2 ``gaussian_blur`` (imgaug's kernel
    size), times alpha pixels."""
    alpha = _span(params["alpha"], u[:, 0])
    sigma = _span(params["sigma"], u[:, 1])
    h, w = like.shape[-2:]
    # noise on a margin as wide as the largest kernel, so that borders are smoothed like the
    # middle (as imgaug does); the margin depends on the config only, not on the batch
    m = int(_radius(np.array([params["sigma"][1]]))[0])
    d = _random.field(keys, (2, h + 2 * m, w + 2 * m), 1, "uniform", like).mul_(2).sub_(1)
    d = gaussian_blur(d, sigma)[..., m : m + h, m : m + w]
    d = d.mul_(torch.from_numpy(alpha * 2).to(d)[:, None, None, None])  # 2 alpha: normalised
    return torch.stack([d[:, 0] / w, d[:, 1] / h], -1)


def elastic(x, masks, keys, params: dict, u: np.ndarray):
    disp = elastic_displacement(keys, params, u, x)
    fill, mode = params["fill"], params["mode"]
    h, w = x.shape[-2:]
    if mode != "constant":
        ys, xs = _centred(h, x) * (2 / h), _centred(w, x) * (2 / w)
        grid = disp + torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], -1)
        return _sample(x, grid, fill, mode), _sample_masks(masks, grid, mode)
    out = torch.empty_like(x)
    moved = None if masks is None else torch.empty_like(masks)
    for i in range(len(x)):
        d = disp[i : i + 1]
        out[i] = _shifted(lambda v, d=d: TF.elastic_image(v, d, _BILINEAR), x[i], fill)
        if masks is not None:
            moved[i] = TF.elastic_mask(masks[i], d)
    return out, moved


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
    # in float64 so that pow rounds alike whatever path torch takes (MPS has no float64)
    wide = torch.float32 if x.device.type == "mps" else torch.float64
    for i, g in enumerate(_span(params["gamma"], u[:, 0]).tolist()):
        x[i] = TF.adjust_gamma_image(x[i].to(wide), g)
    return x


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


def erasing_boxes(params: dict, u: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, 4) rows (top, left, height, width) of v2 ``erase``: a rectangle centred uniformly in
    the image (imgaug Cutout position="uniform"), clipped to it."""
    cx, cy = u[:, 0], u[:, 1]
    sh, sw = _span(params["size"], u[:, 2]), _span(params["size"], u[:, 3])

    def bounds(n, centre, size):
        lo = np.clip(np.trunc(centre * n - size * n / 2), 0, n)
        hi = np.clip(np.trunc(centre * n + size * n / 2), 0, n)
        return lo.astype(np.int64), (hi - lo).astype(np.int64)

    (top, height), (left, width) = bounds(h, cy, sh), bounds(w, cx, sw)
    return np.stack([top, left, height, width], 1)


def erasing(x, keys, params, u):
    value = torch.tensor(params["value"], dtype=x.dtype, device=x.device)
    for i, (top, left, height, width) in enumerate(erasing_boxes(params, u, *x.shape[-2:]).tolist()):
        TF.erase_image(x[i], top, left, height, width, value, inplace=True)
    return x


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
    """v2 ``gaussian_blur`` of each sample with its own sigma (pixels), in place; the kernel
    is sized like imgaug's and padded by reflection ('reflect 101', as v2 and cv2 pad)."""
    h, w = x.shape[-2:]
    for i, (s, r) in enumerate(zip(sigma.tolist(), _radius(sigma).tolist())):
        if r == 0:
            continue
        k = [2 * r + 1] * 2
        if r < min(h, w):
            x[i] = TF.gaussian_blur_image(x[i], k, [s, s])
        else:  # v2 pads by reflection only by less than the image: pad it here first
            rows, cols = _reflect_index(h, r).to(x.device), _reflect_index(w, r).to(x.device)
            padded = x[i].index_select(1, rows).index_select(2, cols)
            x[i] = TF.gaussian_blur_image(padded, k, [s, s])[:, r : r + h, r : r + w]
    return x


PIXEL_OPS = {
    "gamma": gamma,
    "gaussian_noise": gaussian_noise,
    "salt_pepper": salt_pepper,
    "blur": blur,
    "erasing": erasing,
}
