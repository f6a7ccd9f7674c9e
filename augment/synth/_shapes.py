"""Random shapes and fields for the synthesis ops, drawn from a numpy Generator."""

from __future__ import annotations

import numpy as np


def perlin_scales(h: int, w: int) -> int:
    """Largest octave exponent for an image: 2**0..2**5 lattice cells at 224 px, 2**0..2**2 at 28 px."""
    return int(np.clip(np.floor(np.log2(min(h, w))) - 2, 0, 5))


def perlin(
    h: int, w: int, cells: tuple[float, float], degrees: float, rng: np.random.Generator
) -> np.ndarray:
    """Gradient (Perlin) noise with ``cells`` = (rows, cols) lattice cells across the image,
    rotated by ``degrees``; values roughly in [-0.7, 0.7]."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    v = (ys + 0.5) / h * cells[0] - cells[0] / 2
    u = (xs + 0.5) / w * cells[1] - cells[1] / 2
    t = np.deg2rad(degrees)
    u, v = np.cos(t) * u - np.sin(t) * v, np.sin(t) * u + np.cos(t) * v
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    ou, ov = u0.min(), v0.min()
    angles = rng.uniform(0, 2 * np.pi, (v0.max() - ov + 2, u0.max() - ou + 2))
    gx, gy = np.cos(angles), np.sin(angles)
    fu, fv = u - u0, v - v0
    i, j = v0 - ov, u0 - ou

    def dot(di, dj):
        return gx[i + di, j + dj] * (fu - dj) + gy[i + di, j + dj] * (fv - di)

    fade_u = fu**3 * (fu * (fu * 6 - 15) + 10)
    fade_v = fv**3 * (fv * (fv * 6 - 15) + 10)
    top = dot(0, 0) + fade_u * (dot(0, 1) - dot(0, 0))
    bottom = dot(1, 0) + fade_u * (dot(1, 1) - dot(1, 0))
    return top + fade_v * (bottom - top)


def random_perlin(
    h: int, w: int, rng: np.random.Generator, degrees: tuple[float, float] = (-90, 90)
):
    """DRAEM-style noise: random octave per axis, random rotation. Returns (noise, info)."""
    top = perlin_scales(h, w)
    ey, ex = rng.integers(0, top + 1, 2)
    angle = rng.uniform(*degrees)
    info = {"cells": [int(2**ey), int(2**ex)], "rotation": float(angle)}
    return perlin(h, w, (2.0**ey, 2.0**ex), angle, rng), info


def top_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest values (at least one)."""
    k = int(np.clip(k, 1, values.size))
    flat = np.zeros(values.size, bool)
    flat[np.argpartition(values.ravel(), values.size - k)[values.size - k :]] = True
    return flat.reshape(values.shape)


def segment_distance(h: int, w: int, points: np.ndarray, reach: float) -> np.ndarray:
    """Distance from each pixel centre (y, x) to a polyline of (K, 2) points (y, x); pixels
    farther than ``reach`` from the line's bounding box get +inf (they are not computed)."""
    out = np.full((h, w), np.inf)
    lo = np.clip(np.floor(points.min(0) - reach), 0, [h, w]).astype(int)
    hi = np.clip(np.ceil(points.max(0) + reach) + 1, 0, [h, w]).astype(int)
    if np.any(hi <= lo):
        return out
    ys, xs = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]].astype(np.float64)
    p = np.stack([ys, xs], -1)[:, :, None, :]  # (h', w', 1, 2)
    a, b = points[:-1], points[1:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    nearest = a + t[..., None] * ab
    out[lo[0] : hi[0], lo[1] : hi[1]] = np.sqrt(((p - nearest) ** 2).sum(-1)).min(-1)
    return out


def bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, k: int = 16) -> np.ndarray:
    t = np.linspace(0, 1, k)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def ellipse_alpha(h: int, w: int, centre, radii, degrees: float) -> np.ndarray:
    """Anti-aliased filled ellipse: 1 inside, 0 outside, a one-pixel ramp at the edge."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    t = np.deg2rad(degrees)
    dy, dx = ys - centre[0], xs - centre[1]
    a = (np.cos(t) * dx + np.sin(t) * dy) / radii[1]
    b = (-np.sin(t) * dx + np.cos(t) * dy) / radii[0]
    rho = np.sqrt(a * a + b * b)
    return np.clip((1 - rho) * min(radii) + 0.5, 0, 1)


def rotated_box(h: int, w: int, centre, length: float, width: float, degrees: float) -> np.ndarray:
    """Pixels whose centres fall in a rectangle (length along the angle, width across it)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    t = np.deg2rad(degrees)
    dy, dx = ys - centre[0], xs - centre[1]
    along = np.cos(t) * dx + np.sin(t) * dy
    across = -np.sin(t) * dx + np.cos(t) * dy
    return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)


def smooth_field(h: int, w: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise blurred by a Gaussian of ``sigma`` px, scaled to peak magnitude 1."""
    import cv2

    f = rng.uniform(-1, 1, (h, w)).astype(np.float32)
    f = cv2.GaussianBlur(f, (0, 0), sigmaX=max(sigma, 0.3), borderType=cv2.BORDER_REFLECT_101)
    return f / max(float(np.abs(f).max()), 1e-6)
