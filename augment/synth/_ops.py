"""The seven synthesis ops, one sample at a time: ``make(ctx) -> (candidate, region, drawn)``.

``candidate`` is a float32 (H, W, C) image, ``region`` the bool (H, W) pixels it may change;
the driver (``_core``) bounds intensity and area, redraws and measures the exact mask. Sizes
scale with sqrt(severity), areas with severity.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import _shapes
from ._core import MAX_AREA, Context


def _span(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _jitter(patch: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """CutPaste colour jitter: random gain and offset of up to ``amount``."""
    gain, offset = 1 + rng.uniform(-amount, amount), rng.uniform(-amount, amount)
    return np.clip(patch * gain + offset, 0, 1).astype(np.float32)


def _area_fraction(ctx: Context, r: tuple[float, float]) -> float:
    return min(_span(ctx.rng, r) * ctx.severity, ctx.severity * MAX_AREA)


def cutpaste(ctx: Context):
    """Cut a rectangle (area and log-uniform aspect drawn) and paste it elsewhere, jittered."""
    img, rng, p = ctx.image, ctx.rng, ctx.params
    h, w = img.shape[:2]
    area = max(_area_fraction(ctx, p["area"]) * h * w, 1.0)
    aspect = float(np.exp(rng.uniform(np.log(p["aspect"][0]), np.log(p["aspect"][1]))))
    ph = int(np.clip(round(np.sqrt(area / aspect)), 1, min(h - 1, ctx.cap)))  # aspect = pw / ph
    pw = int(np.clip(round(area / ph), 1, min(w - 1, ctx.cap // ph)))
    sy, sx = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
    ty, tx = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
    candidate = img.copy()
    candidate[ty : ty + ph, tx : tx + pw] = _jitter(
        img[sy : sy + ph, sx : sx + pw], rng, p["jitter"]
    )
    region = np.zeros((h, w), bool)
    region[ty : ty + ph, tx : tx + pw] = True
    return candidate, region, {"source": [sy, sx], "box": [ty, tx, ph, pw]}


def scar(ctx: Context):
    """A thin rotated rectangle filled with jittered content from elsewhere in the image."""
    img, rng, p = ctx.image, ctx.rng, ctx.params
    h, w = img.shape[:2]
    side = min(h, w) * ctx.size_scale
    width = max(1.0, _span(rng, p["width"]) * side)
    length = max(3.0, _span(rng, p["length"]) * side)
    length = min(length, ctx.cap / width)
    angle = _span(rng, p["degrees"])
    cy, cx = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
    region = _shapes.rotated_box(h, w, (cy, cx), length, width, angle)
    dy, dx = rng.integers(-h + 1, h), rng.integers(-w + 1, w)
    ys, xs = np.nonzero(region)
    source = img[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)]
    candidate = img.copy()
    candidate[ys, xs] = _jitter(source, rng, p["jitter"])
    info = {
        "centre": [cy, cx],
        "length": length,
        "width": width,
        "degrees": angle,
        "shift": [dy, dx],
    }
    return candidate, region, info


def _noise_texture(h: int, w: int, c: int, rng: np.random.Generator) -> np.ndarray:
    """A random smooth texture in [0, 1]: Perlin noise at a finer scale, with a random level and
    contrast per channel (a tint)."""
    cells = 2.0 ** (_shapes.perlin_scales(h, w) + 1)
    n = _shapes.perlin(h, w, (cells, cells), rng.uniform(0, 90), rng)[..., None]
    return np.clip(rng.uniform(0.2, 0.8, c) + rng.uniform(0.5, 1.5, c) * n, 0, 1).astype(np.float32)


def perlin(ctx: Context):
    """DRAEM: blend a texture into the image under a thresholded, rotated Perlin-noise mask."""
    img, rng, p = ctx.image, ctx.rng, ctx.params
    h, w, c = img.shape
    noise, info = _shapes.random_perlin(h, w, rng)
    region = _shapes.top_k_mask(noise, round(_area_fraction(ctx, p["area"]) * h * w))
    texture = ctx.other() if p["texture"] == "pool" else _noise_texture(h, w, c, rng)
    b = _span(rng, p["blend"])
    candidate = (1 - b) * texture + b * img
    return candidate.astype(np.float32), region, {**info, "blend": b, "texture": p["texture"]}


def local_elastic(ctx: Context):
    """Smooth random displacement inside a disc; nothing moves outside it."""
    img, rng, p = ctx.image, ctx.rng, ctx.params
    h, w, c = img.shape
    side = min(h, w)
    radius = min(
        max(_span(rng, p["radius"]) * side * ctx.size_scale, 1.5), np.sqrt(ctx.cap / np.pi)
    )
    shift = max(_span(rng, p["displacement"]) * side, 0.5)
    cy, cx = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rho = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2) / radius
    window = np.where(rho < 1, np.cos(np.pi / 2 * rho) ** 2, 0).astype(np.float32)
    dx = _shapes.smooth_field(h, w, radius / 2, rng) * shift * window
    dy = _shapes.smooth_field(h, w, radius / 2, rng) * shift * window
    candidate = np.empty_like(img)
    for k in range(0, c, 4):  # cv2.remap handles at most 4 channels at a time
        part = cv2.remap(
            np.ascontiguousarray(img[..., k : k + 4]),
            xs + dx,
            ys + dy,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        candidate[..., k : k + 4] = part.reshape(h, w, -1)
    info = {"centre": [cy, cx], "radius": radius, "displacement": shift}
    return candidate, window > 0, info


def stroke_blob(ctx: Context):
    """Add or erase a curved stroke or a blob, anchored on the foreground (digits, line art)."""
    img, rng, p = ctx.image, ctx.rng, ctx.params
    h, w, _ = img.shape
    side = min(h, w)
    gray = img.mean(-1)
    background = float(np.median(gray))
    ink = 1.0 if background < 0.5 else 0.0
    shape = p["shape"] if p["shape"] != "any" else ("stroke", "blob")[rng.integers(2)]
    polarity = p["polarity"] if p["polarity"] != "any" else ("add", "erase")[rng.integers(2)]
    fg = np.argwhere(np.abs(gray - background) > 0.25)
    anchor = (
        fg[rng.integers(len(fg))] + rng.uniform(-0.5, 0.5, 2)
        if len(fg)
        else rng.uniform(0, [h - 1, w - 1])
    )
    thickness = max(1.0, _span(rng, p["thickness"]) * side)
    if shape == "stroke":
        length = min(
            max(_span(rng, p["length"]) * side * ctx.size_scale, 2.0), ctx.cap / (thickness + 1)
        )
        t = rng.uniform(0, 2 * np.pi)
        end = anchor + length * np.array([np.sin(t), np.cos(t)])
        bend = (anchor + end) / 2 + rng.uniform(-0.3, 0.3) * length * np.array(
            [np.cos(t), -np.sin(t)]
        )
        dist = _shapes.segment_distance(h, w, _shapes.bezier(anchor, bend, end), thickness + 1)
        alpha = np.clip(thickness / 2 + 0.5 - dist, 0, 1)
        info = {"anchor": anchor, "end": end, "thickness": thickness}
    else:
        r = thickness * rng.uniform(1.1, 2.25) * ctx.size_scale
        r = max(
            min(max(r, 1.0), np.sqrt(ctx.cap / np.pi) - 0.5), 0.5
        )  # the anti-aliased rim adds ~0.5 px
        radii = (r, r * rng.uniform(0.5, 1.0))
        alpha = _shapes.ellipse_alpha(h, w, anchor, radii, rng.uniform(0, 180))
        info = {"anchor": anchor, "radii": list(radii)}
    target = (
        ink * rng.uniform(0.7, 1.0) + (1 - ink) * rng.uniform(0.0, 0.3)
        if polarity == "add"
        else background
    )
    candidate = img + alpha[..., None].astype(np.float32) * (np.float32(target) - img)
    return candidate, alpha > 0, {"shape": shape, "polarity": polarity, **info}


def patch_blend(ctx: Context):
    """NSA: patches from other normal images, rescaled, Poisson-blended (cv2.seamlessClone)."""
    img, rng, p = ctx.image, ctx.rng, ctx.params
    h, w, c = img.shape
    n = int(rng.integers(p["patches"][0], p["patches"][1] + 1))
    budget = ctx.cap / n
    candidate, region, boxes = img.copy(), np.zeros((h, w), bool), []
    for _ in range(n):
        ph = int(np.clip(round(_span(rng, p["size"]) * h * ctx.size_scale), 1, h - 4))
        pw = int(np.clip(round(_span(rng, p["size"]) * w * ctx.size_scale), 1, w - 4))
        pw = max(1, min(pw, int(budget // ph)))
        scale = _span(rng, p["rescale"])
        sh, sw = min(h, max(1, round(ph / scale))), min(w, max(1, round(pw / scale)))
        source = ctx.other()
        y0, x0 = rng.integers(0, h - sh + 1), rng.integers(0, w - sw + 1)
        patch = cv2.resize(
            source[y0 : y0 + sh, x0 : x0 + sw], (pw, ph), interpolation=cv2.INTER_LINEAR
        )
        patch = patch.reshape(ph, pw, c)
        ty, tx = int(rng.integers(1, h - ph)), int(rng.integers(1, w - pw))
        candidate = _blend(candidate, patch, ty, tx, p["blend"])
        region[ty : ty + ph, tx : tx + pw] = True
        boxes.append([ty, tx, ph, pw])
    return candidate, region, {"boxes": boxes, "blend": p["blend"]}


def _blend(dst: np.ndarray, patch: np.ndarray, ty: int, tx: int, how: str) -> np.ndarray:
    ph, pw, c = patch.shape
    if how == "alpha" or min(ph, pw) < 2:  # feathered edges (Poisson needs 2 px a side)
        wy = np.minimum(np.arange(1, ph + 1), np.arange(ph, 0, -1)) / max(ph / 4, 1)
        wx = np.minimum(np.arange(1, pw + 1), np.arange(pw, 0, -1)) / max(pw / 4, 1)
        a = np.clip(np.minimum(wy[:, None], wx[None, :]), 0, 1)[..., None].astype(np.float32)
        out = dst.copy()
        out[ty : ty + ph, tx : tx + pw] += a * (patch - out[ty : ty + ph, tx : tx + pw])
        return out
    # cv2 erodes the mask by one pixel and centres its bounding box on `centre`: with the patch
    # padded by 2 and a mask 1 px larger than the patch, exactly the target box changes
    out = dst.copy()
    mask = np.zeros((ph + 4, pw + 4), np.uint8)
    mask[1:-1, 1:-1] = 255
    centre = (tx + pw // 2, ty + ph // 2)
    for k in range(c):  # one channel at a time, as 3 identical channels
        src = np.repeat(np.pad(_u8(patch[..., k]), 2, mode="edge")[..., None], 3, -1)
        canvas = np.repeat(_u8(dst[..., k])[..., None], 3, -1)
        out[..., k] = cv2.seamlessClone(src, canvas, mask, centre, cv2.NORMAL_CLONE)[..., 0] / 255.0
    return out


def _u8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


_FILLS = ("texture", "other", "blur", "tone", "warp", "flat", "grain")


def _thin_curve(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Alpha (H, W) of a smooth curve 1-4 px wide, anti-aliased (a scratch, a crack, a thread)."""
    c = rng.uniform(0.1, 0.9, (3, 2)) * np.array([h, w])
    pts = _shapes.bezier(c[0], c[1], c[2], k=64)
    big = np.zeros((h * 4, w * 4), np.uint8)
    cv2.polylines(big, [np.round(pts[:, ::-1] * 4).astype(np.int32)], False, 255,
                  thickness=max(1, int(rng.uniform(1, 4) * 4)), lineType=cv2.LINE_AA)
    return big.reshape(h, 4, w, 4).mean(axis=(1, 3)).astype(np.float32) / 255


def _region_fill(kind: str, ctx: Context) -> np.ndarray:
    """What a region's content becomes: (H, W, C) float32 in [0, 1]."""
    img, rng = ctx.image, ctx.rng
    h, w, c = img.shape
    if kind == "texture":
        return _noise_texture(h, w, c, rng)
    if kind == "other":  # another normal image, turned and rescaled: the same material, out of place
        o = np.ascontiguousarray(np.rot90(ctx.other(), int(rng.integers(4))))
        s = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        if o.shape[:2] != (h, w) or abs(s - 1) > 0.05:
            o = cv2.resize(o, (max(w, round(o.shape[1] * s)), max(h, round(o.shape[0] * s))),
                           interpolation=cv2.INTER_LINEAR).reshape(-1, max(w, round(o.shape[1] * s)), c)
        oy, ox = rng.integers(0, o.shape[0] - h + 1), rng.integers(0, o.shape[1] - w + 1)
        return o[oy : oy + h, ox : ox + w]
    if kind == "blur":  # loss of detail
        sigma = rng.uniform(1.0, 4.0)
        return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101).reshape(h, w, c)
    if kind == "tone":  # a stain, a discolouration, a change of gloss
        mean = img.mean(axis=(0, 1))
        out = (img - mean) * rng.uniform(0.4, 1.6) + mean + rng.uniform(-0.3, 0.3, c)
        return np.clip(out, 0, 1).astype(np.float32)
    if kind == "warp":  # a dent, a fold, a misplaced structure
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        amp = rng.uniform(2.0, 8.0) * min(h, w) / 128
        dx = _shapes.smooth_field(h, w, rng.uniform(4, 16) * min(h, w) / 128, rng) * amp
        dy = _shapes.smooth_field(h, w, rng.uniform(4, 16) * min(h, w) / 128, rng) * amp
        out = np.empty_like(img)
        for k in range(0, c, 4):  # cv2.remap handles at most 4 channels at a time
            out[..., k : k + 4] = cv2.remap(np.ascontiguousarray(img[..., k : k + 4]), xs + dx, ys + dy,
                                            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101).reshape(h, w, -1)
        return out
    if kind == "flat":  # missing material: a backing of one colour
        return np.broadcast_to(rng.uniform(0, 1, c).astype(np.float32), img.shape).copy()
    # grain: sensor noise, a rough patch
    return np.clip(img + rng.normal(0, rng.uniform(0.05, 0.2), img.shape), 0, 1).astype(np.float32)


def region(ctx: Context):
    """A local change of any kind (DRAEM's synthesis, generalised): a Perlin-shaped region (or a
    thin curve) whose content becomes a foreign texture, another normal image turned and
    rescaled, a blurred, re-toned, warped, flat or grainy version of itself, blended with an
    opacity. What detectors trained on it learn is "locally unlike the rest", not one defect."""
    img, rng, p = ctx.image, ctx.rng, ctx.params
    h, w, _ = img.shape
    if rng.random() < p["thin"]:
        alpha = _thin_curve(h, w, rng)
        shape = {"shape": "curve"}
    else:
        lo, hi = p["area"]
        area = float(np.exp(rng.uniform(np.log(max(lo, 1e-4)), np.log(max(hi, lo, 1e-4)))))
        noise, drawn = _shapes.random_perlin(h, w, rng)
        shape = {"shape": "perlin", **drawn}
        mask = _shapes.top_k_mask(noise, round(min(area * ctx.severity, ctx.severity * MAX_AREA) * h * w))
        alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=rng.uniform(0.3, 1.5))
    kind = _FILLS[int(rng.integers(len(_FILLS)))] if p["fill"] == "any" else p["fill"]
    b = _span(rng, p["opacity"])
    a = (alpha * b)[..., None]
    candidate = img * (1 - a) + _region_fill(kind, ctx) * a
    return candidate.astype(np.float32), alpha > 1e-3, {**shape, "fill": kind, "opacity": b}


MAKERS = {f.__name__: f for f in (cutpaste, scar, perlin, local_elastic, stroke_blob, patch_blend, region)}
