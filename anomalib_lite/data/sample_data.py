"""Sample data that one command makes (``anomaly demo --make-data DIR``): an inspection image set
from real photographs, and load-like time series with planted anomalies (:func:`make_series`,
:func:`make_labelled_series`).

:func:`make_image_set` writes an MVTec AD-style set (``CAT/train/good``, ``CAT/test/good``,
``CAT/test/<defect>``, ``CAT/ground_truth/<defect>/<name>_mask.png``) from photographs that ship
with scikit-image (textures, micrographs, surfaces, a fundus photograph, a deep-sky field), with
defects modelled on real inspection defects (MVTec AD's kinds) painted in. Training crops come from
one part of each photograph and test crops from another, so a detector meets good parts it has
never seen, as on a real line. Each mask holds the pixels the defect changed (by more than
``MASK_LEVEL``), closed over one-pixel gaps inside the painted region.

The defect painters here are deliberately separate from ``augment.synth`` (which detectors use to
*train*): a benchmark whose defects were drawn by the same code that trains a detector would
measure how well it learned its own generator.

Dev and held-out halves (:data:`HALVES`) were fixed before any result was looked at: categories in
alphabetical order and defect kinds in the order of :data:`DEFECTS` alternate between the halves.
A category's test set holds the defect kinds of its own half.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import AnomalyError

__all__ = ["CATEGORIES", "DEFECTS", "HALVES", "MASK_LEVEL", "make_demo_data", "make_image_set", "make_labelled_series",
           "make_series", "paint_defect", "photograph", "toy_images", "toy_labelled_series", "toy_series", "weave"]

#: category -> (scikit-image loader, scale applied before cropping, crops must avoid a black surround)
_SOURCES = {
    "brick": ("brick", 1.0, False),
    "gravel": ("gravel", 1.0, False),
    "grass": ("grass", 1.0, False),
    "hubble": ("hubble_deep_field", 1.0, False),
    "ihc": ("immunohistochemistry", 1.0, False),
    "moon": ("moon", 1.0, False),
    "retina": ("retina", 0.5, True),
}
CATEGORIES = tuple(sorted(_SOURCES))
#: defect kinds modelled on MVTec AD's (and real inspection) defects, in the order that fixes the halves
DEFECTS = ("scratch", "crack", "hole", "cut", "contamination", "stain", "fold", "warp", "blur", "missing",
           "extra", "print")
HALVES = {
    "dev": {"categories": CATEGORIES[0::2], "defects": DEFECTS[0::2]},
    "held-out": {"categories": CATEGORIES[1::2], "defects": DEFECTS[1::2]},
}
MASK_LEVEL = 0.02
_TRAIN_SHARE = 0.55  # rows (or, for a wide photograph, columns) [0, 55 %) train; the rest test


def photograph(category: str) -> np.ndarray:
    """The source photograph of a category as float32 (H, W, C) in [0, 1]."""
    import skimage.data
    from PIL import Image

    if category not in _SOURCES:
        raise AnomalyError(f"sample data: unknown category '{str(category)[:40]}'; categories are: {', '.join(CATEGORIES)}")
    name, scale, _ = _SOURCES[category]
    a = np.asarray(getattr(skimage.data, name)())
    if scale != 1.0:
        a = np.asarray(Image.fromarray(a).resize((round(a.shape[1] * scale), round(a.shape[0] * scale)),
                                                 Image.Resampling.LANCZOS))
    a = a.astype(np.float32) / 255
    return a[..., None] if a.ndim == 2 else a[..., :3]


def _usable(category: str, img: np.ndarray) -> np.ndarray:
    """Pixels that belong to the subject (the fundus photograph's black surround does not)."""
    if not _SOURCES[category][2]:
        return np.ones(img.shape[:2], bool)
    from scipy import ndimage

    return ndimage.binary_erosion(img.mean(axis=2) > 0.06, iterations=8)


def _crop(img: np.ndarray, usable: np.ndarray, part: str, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    tall = h >= w
    cut = int((h if tall else w) * _TRAIN_SHARE)
    for _ in range(1000):
        if tall:
            lo, hi = (0, cut) if part == "train" else (cut, h)
            r, c = rng.integers(lo, hi - size + 1), rng.integers(0, w - size + 1)
        else:
            lo, hi = (0, cut) if part == "train" else (cut, w)
            r, c = rng.integers(0, h - size + 1), rng.integers(lo, hi - size + 1)
        if usable[r:r + size, c:c + size].all():
            return np.ascontiguousarray(img[r:r + size, c:c + size])
    raise AnomalyError(f"sample data: no {size}-px crop of the photograph lies inside its subject")


# ---------------------------------------------------------------- shapes


def _blob(size: int, rng: np.random.Generator, area: float, centre=None) -> np.ndarray:
    """A soft irregular blob of about ``area`` (share of the image): values in [0, 1]."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = centre if centre is not None else rng.uniform(0.2, 0.8, 2) * size
    r = np.sqrt(area * size * size / np.pi)
    ang = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + sum(rng.uniform(0.05, 0.2) * np.sin(k * ang + rng.uniform(0, 6.3)) for k in (2, 3, 5))
    d = np.hypot(yy - cy, xx - cx) / (r * wobble)
    return np.clip(1.4 - d, 0, 1) ** 1.2


def _polyline(size: int, points: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased mask of a polyline of (y, x) points, drawn at 4x and averaged down."""
    import cv2

    s = 4
    big = np.zeros((size * s, size * s), np.uint8)
    pts = np.round(points[:, ::-1] * s).astype(np.int32)  # cv2 wants (x, y)
    cv2.polylines(big, [pts], False, 255, thickness=max(1, int(round(width * s))), lineType=cv2.LINE_AA)
    return big.reshape(size, s, size, s).mean(axis=(1, 3)).astype(np.float32) / 255


def _bezier(size: int, rng: np.random.Generator, span=(0.1, 0.9)) -> np.ndarray:
    c = rng.uniform(*span, (3, 2)) * size
    t = np.linspace(0, 1, 200)[:, None]
    return (1 - t) ** 2 * c[0] + 2 * (1 - t) * t * c[1] + t ** 2 * c[2]


def _walk(size: int, rng: np.random.Generator, start, angle: float, steps: int, step: float = 2.0) -> np.ndarray:
    pts = [np.asarray(start, float)]
    for _ in range(steps):
        angle += rng.normal(0, 0.45)
        pts.append(pts[-1] + step * np.array([np.sin(angle), np.cos(angle)]))
    return np.clip(np.array(pts), 0, size - 1)


def _warp(img: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Sample ``img`` at (y + dy, x + dx), bilinear, edges reflected."""
    import cv2

    h, w = img.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    out = cv2.remap(img, (xx + dx).astype(np.float32), (yy + dy).astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT)
    return out.reshape(img.shape)


def _smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(a, sigma)


# ---------------------------------------------------------------- defects: (x, rng, foreign) -> (y, region)


def _scratch(x, rng, foreign):
    m = _polyline(x.shape[0], _bezier(x.shape[0], rng), rng.uniform(1.0, 2.2)) * rng.uniform(0.55, 0.9)
    level = 0.95 if rng.random() < 0.5 else 0.05
    return x * (1 - m[..., None]) + level * m[..., None], m > 0


def _crack(x, rng, foreign):
    size = x.shape[0]
    start = rng.uniform(0.25, 0.75, 2) * size
    angle = rng.uniform(0, 2 * np.pi)
    lines = [_walk(size, rng, start, angle, int(rng.integers(15, 30))),
             _walk(size, rng, start, angle + np.pi, int(rng.integers(8, 20)))]
    for _ in range(int(rng.integers(1, 3))):
        base = lines[0][rng.integers(len(lines[0]) // 3, len(lines[0]))]
        lines.append(_walk(size, rng, base, angle + rng.choice([-1, 1]) * rng.uniform(0.6, 1.2), int(rng.integers(5, 12))))
    m = np.zeros((size, size), np.float32)
    for i, pts in enumerate(lines):
        m = np.maximum(m, _polyline(size, pts, rng.uniform(1.0, 1.8) if i < 2 else rng.uniform(0.7, 1.2)))
    y = x * (1 - rng.uniform(0.45, 0.75) * m[..., None])
    return y, m > 0


def _hole(x, rng, foreign):
    size = x.shape[0]
    b = _blob(size, rng, rng.uniform(0.004, 0.015))
    inside = _smooth((b > 0.35).astype(np.float32), 0.8)
    dy, dx = rng.normal(0, 1, 2)
    rim = np.clip(_smooth(np.roll(inside, (int(round(dy * 2)), int(round(dx * 2))), (0, 1)), 1.5) - inside, 0, 1)
    dark = rng.uniform(0.03, 0.15)
    y = x * (1 - inside[..., None]) + dark * inside[..., None]
    y = np.clip(y * (1 - 0.35 * rim[..., None]), 0, 1)
    return y, (inside + rim) > 0.01


def _cut(x, rng, foreign):
    """A straight cut: the material on either side pulled apart by a pixel or two, a dark gap."""
    size = x.shape[0]
    length = rng.uniform(0.25, 0.5) * size
    angle = rng.uniform(0, np.pi)
    c = rng.uniform(0.3, 0.7, 2) * size
    d = np.array([np.sin(angle), np.cos(angle)])
    pts = np.array([c - d * length / 2, c + d * length / 2])
    gap = _polyline(size, pts, rng.uniform(0.8, 1.6))
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    n = np.array([np.cos(angle), -np.sin(angle)])  # normal
    side = np.sign((yy - c[0]) * n[0] + (xx - c[1]) * n[1])
    along = np.abs((yy - c[0]) * d[0] + (xx - c[1]) * d[1])
    near = np.clip(1 - np.abs((yy - c[0]) * n[0] + (xx - c[1]) * n[1]) / 5, 0, 1) * (along < length / 2 + 2)
    push = rng.uniform(1.0, 2.0) * near * side
    y = _warp(x, push * n[0], push * n[1])
    y = y * (1 - gap[..., None]) + rng.uniform(0.02, 0.12) * gap[..., None]
    return y, (near > 0) | (gap > 0)


def _contamination(x, rng, foreign):
    """A few particles of foreign material (another photograph's texture, its own tone)."""
    size = x.shape[0]
    m = np.zeros((size, size), np.float32)
    centre = rng.uniform(0.2, 0.8, 2) * size
    for _ in range(int(rng.integers(1, 5))):
        at = np.clip(centre + rng.normal(0, 0.08 * size, 2), 5, size - 5)
        m = np.maximum(m, _blob(size, rng, rng.uniform(0.0008, 0.004), centre=at))
    m = np.clip(_smooth((m > 0.4).astype(np.float32), 0.7), 0, 1)
    f = foreign[:size, :size]
    f = f if f.shape[2] == x.shape[2] else np.repeat(f.mean(axis=2, keepdims=True), x.shape[2], axis=2)
    tone = rng.uniform(0.15, 0.85, x.shape[2]) if x.shape[2] > 1 else rng.choice([0.15, 0.85], 1)
    f = np.clip(tone + 0.5 * (f - f.mean()), 0, 1)
    return x * (1 - m[..., None]) + f * m[..., None], m > 0


def _stain(x, rng, foreign):
    """A translucent stain: a soft blob that tints (colour) or darkens/brightens (grey)."""
    m = _blob(x.shape[0], rng, rng.uniform(0.01, 0.04))
    if x.shape[2] > 1:
        tint = rng.uniform(-0.22, 0.22, x.shape[2])
        tint -= tint.mean() * 0.5
    else:
        tint = rng.uniform(0.12, 0.22, 1) * rng.choice([-1, 1])
    return np.clip(x + m[..., None] * tint, 0, 1), m > 0.02


def _fold(x, rng, foreign):
    """A wrinkle: material pulled towards a line, bright on one flank and shaded on the other."""
    size = x.shape[0]
    angle = rng.uniform(0, np.pi)
    c = rng.uniform(0.3, 0.7, 2) * size
    length = rng.uniform(0.35, 0.7) * size
    width = rng.uniform(3, 7)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    d = np.array([np.sin(angle), np.cos(angle)])
    n = np.array([np.cos(angle), -np.sin(angle)])
    u = (yy - c[0]) * n[0] + (xx - c[1]) * n[1]
    t = (yy - c[0]) * d[0] + (xx - c[1]) * d[1]
    fade = np.clip(1 - (np.abs(t) / (length / 2)) ** 4, 0, 1)
    bump = np.exp(-(u / width) ** 2) * fade
    pull = 0.6 * width * (u / width) * bump  # sample from farther out: compression towards the line
    y = _warp(x, pull * n[0], pull * n[1])
    shade = -u / width * bump * rng.uniform(0.15, 0.3)
    y = np.clip(y * (1 + shade[..., None]), 0, 1)
    return y, bump > 1e-3


def _warp_defect(x, rng, foreign):
    """A local deformation (a dent or a swirl) of a disc of the part."""
    size = x.shape[0]
    r = rng.uniform(0.08, 0.16) * size
    c = rng.uniform(0.25, 0.75, 2) * size
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    ry, rx = yy - c[0], xx - c[1]
    rho = np.hypot(ry, rx) / r
    w = np.clip(1 - rho ** 2, 0, 1) ** 2
    if rng.random() < 0.5:  # swirl
        a = rng.uniform(0.6, 1.2) * rng.choice([-1, 1]) * w
        dy, dx = ry * np.cos(a) - rx * np.sin(a) - ry, ry * np.sin(a) + rx * np.cos(a) - rx
    else:  # bulge (pinch when negative)
        k = rng.uniform(0.35, 0.6) * rng.choice([-1, 1])
        dy, dx = -k * ry * w, -k * rx * w
    return _warp(x, dy, dx), w > 0


def _blur(x, rng, foreign):
    """Loss of detail: a soft region out of focus (or smeared)."""
    m = _blob(x.shape[0], rng, rng.uniform(0.03, 0.08))
    blurred = np.stack([_smooth(x[..., c], rng.uniform(1.5, 3.0)) for c in range(x.shape[2])], axis=2)
    return x * (1 - m[..., None]) + blurred * m[..., None], m > 0.02


def _missing(x, rng, foreign):
    """Missing material: a patch where the surface is gone and a flat backing shows through."""
    size = x.shape[0]
    b = _blob(size, rng, rng.uniform(0.01, 0.03))
    m = _smooth((b > 0.4).astype(np.float32), 0.6)
    backing = np.clip(np.quantile(x, rng.choice([0.02, 0.98]), axis=(0, 1)) + rng.normal(0, 0.01, (size, size, 1)), 0, 1)
    return x * (1 - m[..., None]) + backing * m[..., None], m > 0


def _extra(x, rng, foreign):
    """Extra material: a lump of the same material, from elsewhere, magnified and raised (shaded)."""
    import cv2

    size = x.shape[0]
    b = _blob(size, rng, rng.uniform(0.01, 0.03))
    m = _smooth((b > 0.4).astype(np.float32), 0.8)
    scale = rng.uniform(1.3, 1.8)
    src = cv2.resize(x, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR).reshape(
        round(size * scale), round(size * scale), x.shape[2])
    oy, ox = rng.integers(0, src.shape[0] - size + 1, 2)
    lump = src[oy:oy + size, ox:ox + size]
    gy, gx = np.gradient(_smooth(m, 2.0))
    light = 1 + 4.0 * (gy + gx)[..., None]
    return np.clip(x * (1 - m[..., None]) + lump * light * m[..., None], 0, 1), (m > 0) | (np.abs(gy + gx) > 0.01)


def _print(x, rng, foreign):
    """A print defect along a band across the part: a ghost (the pattern printed twice, a few pixels
    apart) or an ink streak (a roller mark: the band darker or lighter)."""
    size = x.shape[0]
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    c = rng.uniform(0.3, 0.7, 2) * size
    u = (yy - c[0]) * np.cos(angle) - (xx - c[1]) * np.sin(angle)
    if rng.random() < 0.5:
        band = np.clip(1 - np.abs(u) / rng.uniform(6, 14), 0, 1) ** 0.5
        shift = rng.uniform(3, 6) * np.array([np.sin(angle + 1.2), np.cos(angle + 1.2)])
        ghost = _warp(x, np.full_like(u, shift[0]), np.full_like(u, shift[1]))
        a = rng.uniform(0.35, 0.55)
        return x * (1 - a * band[..., None]) + ghost * a * band[..., None], band > 0
    band = np.clip(1.5 - np.abs(u) / rng.uniform(1.0, 2.5), 0, 1)
    ink = rng.uniform(0.06, 0.14) * rng.choice([-1, 1]) * (1 + 0.3 * rng.standard_normal(size))[None, :]
    return np.clip(x + (band * ink)[..., None], 0, 1), band > 0


_PAINTERS: dict[str, Callable] = {
    "scratch": _scratch, "crack": _crack, "hole": _hole, "cut": _cut, "contamination": _contamination,
    "stain": _stain, "fold": _fold, "warp": _warp_defect, "blur": _blur, "missing": _missing, "extra": _extra,
    "print": _print,
}
assert tuple(_PAINTERS) == DEFECTS


def paint_defect(x: np.ndarray, defect: str, rng: np.random.Generator, foreign: np.ndarray | None = None):
    """One defect painted into ``x`` (H, W, C) float in [0, 1]: ``(image, mask, region)``, the mask
    bool (H, W), the pixels it changed by more than :data:`MASK_LEVEL` (closed over one-pixel gaps
    within the painted region), the region the painter touched. ``foreign``: another material's
    texture, for contamination."""
    from scipy import ndimage

    if defect not in _PAINTERS:
        raise AnomalyError(f"sample data: unknown defect '{str(defect)[:40]}'; defects are: {', '.join(DEFECTS)}")
    if foreign is None:
        foreign = rng.random(x.shape, dtype=np.float32)
    y, region = _PAINTERS[defect](x, rng, foreign)
    y = np.clip(y, 0, 1).astype(np.float32)
    changed = np.abs(y - x).max(axis=2) > MASK_LEVEL
    mask = ndimage.binary_closing(changed, structure=np.ones((3, 3)), border_value=0) & region | changed
    return y, mask, region


def toy_images(n: int, seed: int, spot: bool = False) -> np.ndarray:
    """``n`` tiny grey images (N, 1, 16, 16): a brighter square on noise, with ``spot`` a white
    corner spot too. What the contract suite and the bundle fuzzer fit every detector on in a
    second (and a plugin's first check: ``tests/test_contract.py``'s ``run_contract``)."""
    rng = np.random.default_rng(seed)
    x = (0.5 + 0.05 * rng.standard_normal((n, 1, 16, 16))).astype(np.float32)
    x[:, :, 4:12, 4:12] += 0.3
    if spot:
        x[:, :, 1:4, 11:14] = 1.0
    return x.clip(0, 1)


def toy_series(n: int, seed: int) -> np.ndarray:
    """A sine of ``n`` steps with a little noise (the series counterpart of :func:`toy_images`)."""
    rng = np.random.default_rng(seed)
    return np.sin(np.arange(n) / 5.0) + 0.05 * rng.standard_normal(n)


def toy_labelled_series(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`toy_series` with an anomaly labelled every 70 steps (4 steps), announced by a rise in
    the 4 steps before it: ``(values, 0/1 labels)``."""
    x = toy_series(n, seed)
    y = np.zeros(n, dtype=int)
    for onset in range(60, n - 10, 70):
        x[onset - 4 : onset] += 2.0
        y[onset : onset + 4] = 1
    return x, y


def weave(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` crops (N, 1, size, size) of a plain-woven fabric (a regular texture, as MVTec AD's
    carpet and grid) at random phases, with sensor noise: where blur and local warps show at small
    sizes (on a stochastic photograph at 64 px they are at chance; BENCHMARKS.md)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    out = []
    for oy, ox in rng.uniform(0, 16, (n, 2)):
        warp_thread, weft_thread = np.sin(2 * np.pi * (xx + ox) / 8), np.sin(2 * np.pi * (yy + oy) / 8)
        over = np.sin(2 * np.pi * (xx + ox) / 16) * np.sin(2 * np.pi * (yy + oy) / 16) > 0
        img = 0.5 + 0.25 * np.where(over, warp_thread, weft_thread) + 0.03 * rng.standard_normal((size, size))
        out.append(np.clip(img, 0, 1)[None])
    return np.stack(out).astype(np.float32) if out else np.zeros((0, 1, size, size), np.float32)


def _save(a: np.ndarray, path: Path) -> None:
    from PIL import Image

    u8 = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(u8[..., 0] if u8.shape[2] == 1 else u8).save(path)


def make_image_set(root, categories=None, defects=None, size: int = 128, n_train: int = 200, n_good: int = 60,
                   n_per_defect: int = 20, seed: int = 0) -> dict[str, dict[str, int]]:
    """Write an MVTec AD-style inspection set under ``root``; returns counts per category.

    ``categories``: names from :data:`CATEGORIES` (default all); ``defects``: kinds from
    :data:`DEFECTS`, or None for each category's own half (:data:`HALVES`). Crops are ``size`` px;
    every draw derives from (seed, category, part, index), so a category's images do not depend on
    which other categories or defects are written. Files are written as they are made (the set is
    data to look at, not an output to keep whole): rerun into an empty folder after a failure.
    """
    from scipy import ndimage  # noqa: F401  (fail early when scipy is missing)

    cats = list(categories) if categories is not None else list(CATEGORIES)
    for c in cats:
        if c not in _SOURCES:
            raise AnomalyError(f"sample data: unknown category '{str(c)[:40]}'; categories are: {', '.join(CATEGORIES)}")
    if not 16 <= int(size) <= 512:
        raise AnomalyError(f"sample data: size={size}: give 16 to 512 px")
    root = Path(root)
    counts = {}
    for cat in cats:
        img, ci = photograph(cat), CATEGORIES.index(cat)
        usable = _usable(cat, img)
        kinds = list(defects) if defects is not None else [d for d in DEFECTS if cat in _half_of(cat, d)]
        foreign_cat = CATEGORIES[(ci + 3) % len(CATEGORIES)]
        foreign_img = photograph(foreign_cat)

        def rng(part: int, i: int) -> np.random.Generator:
            return np.random.default_rng(np.random.SeedSequence([seed, ci, part, i]))

        base = root / cat
        for sub in ["train/good", "test/good"] + [f"test/{d}" for d in kinds] + [f"ground_truth/{d}" for d in kinds]:
            (base / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n_train):
            _save(_crop(img, usable, "train", size, rng(0, i)), base / "train" / "good" / f"{i:03d}.png")
        for i in range(n_good):
            _save(_crop(img, usable, "test", size, rng(1, i)), base / "test" / "good" / f"{i:03d}.png")
        for k, d in enumerate(kinds):
            if d not in _PAINTERS:
                raise AnomalyError(f"sample data: unknown defect '{str(d)[:40]}'; defects are: {', '.join(DEFECTS)}")
            for i in range(n_per_defect):
                r = rng(2 + DEFECTS.index(d), i)
                for attempt in range(200):  # redraw a defect that changes too little of what it touched to be seen
                    x = _crop(img, usable, "test", size, r)
                    fr = r.integers(0, foreign_img.shape[0] - size + 1), r.integers(0, foreign_img.shape[1] - size + 1)
                    y, m, region = paint_defect(x, d, r, foreign_img[fr[0]:fr[0] + size, fr[1]:fr[1] + size])
                    if m.sum() >= max(8, (0.25 if attempt < 50 else 0.0) * region.sum()):
                        break
                else:
                    raise AnomalyError(f"sample data: {cat}: no visible '{d}' defect in 200 draws")
                _save(y, base / "test" / d / f"{i:03d}.png")
                from PIL import Image

                Image.fromarray(m.astype(np.uint8) * 255).save(base / "ground_truth" / d / f"{i:03d}_mask.png")
        counts[cat] = {"train": n_train, "good": n_good, **{d: n_per_defect for d in kinds}}
    return counts


def _half_of(category: str, defect: str) -> list[str]:
    """The categories that get ``defect`` by default: those of the defect's own half."""
    for half in HALVES.values():
        if defect in half["defects"]:
            return list(half["categories"])
    return []


# ---------------------------------------------------------------- series
def _series(n: int, rng: np.random.Generator, step_minutes: int) -> tuple[np.ndarray, list[str]]:
    """A load-like series: a daily rhythm (quieter at weekends), slow drift, noise; ISO stamps."""
    t = np.arange(n)
    day = 24 * 60 // step_minutes
    start = np.datetime64("2024-03-04T00:00")  # a Monday
    stamps = start + t * np.timedelta64(step_minutes, "m")
    weekday = ((t // day) % 7) < 5
    rhythm = 10 + 4 * np.sin(2 * np.pi * (t % day) / day - np.pi / 2) * np.where(weekday, 1.0, 0.6)
    drift = 0.5 * np.sin(2 * np.pi * t / (n + 1))
    values = rhythm + drift + rng.normal(0, 0.3, n)
    return values, [str(s) for s in stamps]


def _plant(values: np.ndarray, rng: np.random.Generator, n_events: int, lo: int, hi: int,
           warn: int = 0) -> list[tuple[int, int]]:
    """Anomalies at steps spread over [``lo``, ``hi``) (a spike, a level shift, a dropout to zero, a
    burst of noise, in turn), each preceded over ``warn`` steps by growing jitter (what an early
    warning can learn from); returns (first, last) step of each."""
    starts = np.linspace(lo, hi, n_events).astype(int) + rng.integers(-10, 10, n_events)
    events = []
    for k, s in enumerate(starts):
        length = int(rng.integers(4, 16))
        if warn:
            ramp = np.linspace(0, 1, warn)
            values[s - warn : s] += rng.normal(0, 1, warn) * 1.5 * ramp
        kind = k % 4
        if kind == 0:
            values[s : s + length] += rng.choice([-1, 1]) * rng.uniform(5, 8)
        elif kind == 1:
            values[s : s + length] += rng.uniform(3, 5)
        elif kind == 2:
            values[s : s + length] = 0.0
        else:
            values[s : s + length] += rng.normal(0, 3, length)
        events.append((int(s), int(s + length - 1)))
    return events


def make_series(path, n: int = 4032, step_minutes: int = 5, seed: int = 0) -> list[tuple[int, int]]:
    """Write a series CSV (``timestamp,value``: two weeks of 5-minute steps of a load-like rhythm)
    with four anomalies (a spike, a level shift, a dropout, a noise burst) between 55 % and 85 % of
    it: a detector fitted on the file learns mostly normal steps and calibrates on a normal end
    (the CLI holds out the last 10 %). Returns their (first, last) steps."""
    from ..io import atomic_output

    rng = np.random.default_rng(np.random.SeedSequence([seed, 101]))
    values, stamps = _series(n, rng, step_minutes)
    events = _plant(values, rng, 4, lo=int(0.55 * n), hi=int(0.85 * n))
    with atomic_output(path, "series") as tmp, open(tmp, "w") as fh:
        fh.write("timestamp,value\n" + "".join(f"{s},{v:.4f}\n" for s, v in zip(stamps, values)))
    return events


def make_labelled_series(path, n: int = 4032, step_minutes: int = 5, seed: int = 0, n_events: int = 24,
                         warn: int = 30) -> list[tuple[int, int]]:
    """Write a labelled series CSV (``timestamp,value,anomaly``; 1 marks anomalous steps) with
    ``n_events`` anomalies, each announced by ``warn`` steps of growing jitter: data an early
    warning (``SupervisedRNN``, ``--horizon``) can learn from. Returns the anomalies' steps."""
    from ..io import atomic_output

    rng = np.random.default_rng(np.random.SeedSequence([seed, 102]))
    values, stamps = _series(n, rng, step_minutes)
    events = _plant(values, rng, n_events, lo=warn + 50, hi=n - 40, warn=warn)
    label = np.zeros(n, dtype=int)
    for a, b in events:
        label[a : b + 1] = 1
    with atomic_output(path, "labelled series") as tmp, open(tmp, "w") as fh:
        fh.write("timestamp,value,anomaly\n" + "".join(f"{s},{v:.4f},{y}\n" for s, v, y in zip(stamps, values, label)))
    return events


def make_demo_data(root, seed: int = 0) -> str:
    """``anomaly demo --make-data DIR``: the data every README command runs on, from one command:
    ``DIR/brick`` (an MVTec-style inspection set of 64 px crops, small enough to try every command
    in seconds: 100 for training, 30 good and 10 of each of the six defect kinds of brick's half
    for testing, with exact masks; :func:`make_image_set` makes larger ones), ``DIR/series.csv`` (:func:`make_series`)
    and ``DIR/labelled.csv`` (:func:`make_labelled_series`). Refuses a folder that holds them
    already. Returns the line the command prints."""
    from ..io import check_writable

    root = Path(root)
    present = [str(p) for p in (root / "brick", root / "series.csv", root / "labelled.csv") if p.exists()]
    if present:
        raise AnomalyError(f"{present[0]}: exists already; give --make-data a new or empty folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AnomalyError(f"{root}: cannot create the folder ({e.strerror})") from None
    check_writable(root / "series.csv", "sample data")
    counts = make_image_set(root, categories=["brick"], size=64, n_train=100, n_good=30, n_per_defect=10,
                            seed=seed)["brick"]
    series = make_series(root / "series.csv", seed=seed)
    labelled = make_labelled_series(root / "labelled.csv", seed=seed)
    defects = [k for k in counts if k not in ("train", "good")]
    return (f"wrote {root / 'brick'} ({counts['train']} training images of 64 px; test: {counts['good']} good and "
            f"{sum(counts[d] for d in defects)} with defects ({', '.join(defects)}), masks in ground_truth), "
            f"{root / 'series.csv'} (4032 steps, {len(series)} anomalies) and {root / 'labelled.csv'} "
            f"(4032 steps, {len(labelled)} labelled anomalies)")
