"""Heatmaps an inspector can read: the image beside the image under its anomaly map, on one colour
scale per run anchored at the threshold, with a colour bar and the true defect's outline.

:func:`heatmap_image` draws one sample with PIL (no pyplot figure per image, so thousands of them
take seconds); :func:`write_heatmaps` writes one PNG per sample of an
:class:`~anomalib_lite.evaluation.assessment.Evaluation`, computing the maps in batches.

Colours (:class:`MapScale`): every heatmap of a run shares one scale, so a colour means the same
value in every file. Map values up to the threshold run from dark to light blue, values above it
from yellow to dark red: where blue turns to yellow is where the verdict flips. For a detector whose
image score is its map's maximum (LatentDistance's patch scores) that is exact: an image is
flagged iff some pixel is yellow or red. For other maps (a reconstruction error averaged into the
score, pooled scores) the threshold is carried to the map's scale by the median ratio of map
maximum to score over the images drawn, and the colour bar says so. Without a threshold the scale
is the maps' own range (one colormap). A ground-truth mask is drawn as a green outline on the map.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import AnomalyError
from ..io import atomic_output, check_writable

__all__ = ["MapScale", "colour_stops", "heatmap_image", "heatmap_name", "label_text", "map_scale", "true_labels",
           "write_heatmaps"]

BELOW, ABOVE = ("Blues", 0.95, 0.35), ("YlOrRd", 0.2, 1.0)  # (colormap, start, end): below / above the threshold
PLAIN = "viridis"  # no threshold: one colormap over the maps' range
ALPHA = 0.5  # weight of the map colour in the overlay
MIN_SIDE = 160  # small images (MNIST: 28 px) are upscaled (nearest) to at least this many pixels
GAP = 4  # pixels between the two panels
CONTOUR = (57, 255, 20)  # the true defect's outline: green, a colour neither half of the scale uses
FONT_MIN = 13  # caption text, in pixels: readable at 100 % zoom
BAR = 14  # colour bar height, pixels
_RED, _GREEN = (248, 113, 113), (74, 222, 128)  # light: on the dark caption box

_luts: dict = {}
_fonts: dict = {}


def _ramp(name: str, a: float, b: float, n: int) -> np.ndarray:
    import matplotlib

    return (matplotlib.colormaps[name](np.linspace(a, b, n))[:, :3] * 255).round().astype(np.uint8)


def _lut(anchored: bool) -> np.ndarray:
    """(256, 3) uint8 colours: indices 0-127 at or below the threshold, 128-255 above (anchored),
    or one colormap over the range."""
    if anchored not in _luts:
        _luts[anchored] = np.concatenate([_ramp(*BELOW, 128), _ramp(*ABOVE, 128)]) if anchored else _ramp(PLAIN, 0, 1, 256)
    return _luts[anchored]


def _font(size: int):
    if size not in _fonts:
        try:
            _fonts[size] = ImageFont.load_default(size=size)  # Pillow >= 10.1: scalable
        except TypeError:
            _fonts[size] = ImageFont.load_default()
    return _fonts[size]


@dataclass(frozen=True)
class MapScale:
    """One colour scale: ``lo`` (darkest), ``anchor`` (the threshold on the map's scale: the last
    blue; None without a threshold), ``hi`` (darkest red); ``exact``: the anchor is where the
    verdict flips (score = map maximum), else the threshold carried to the map's scale."""

    lo: float
    hi: float
    anchor: float | None = None
    exact: bool = False

    def index(self, m: np.ndarray) -> np.ndarray:
        """Map values -> colour indices 0..255 (NaN: the lowest)."""
        m = np.nan_to_num(np.asarray(m, dtype=np.float64), nan=self.lo, posinf=self.hi, neginf=self.lo)
        if self.anchor is None:
            t = (m - self.lo) / (self.hi - self.lo)
            return (np.clip(t, 0, 1) * 255).round().astype(np.uint8)
        below = np.clip((m - self.lo) / (self.anchor - self.lo), 0, 1) * 127
        above = 128 + np.clip((m - self.anchor) / (self.hi - self.anchor), 0, 1) * 127
        return np.where(m > self.anchor, above, below).round().astype(np.uint8)

    def colours(self) -> np.ndarray:
        return _lut(self.anchor is not None)

    def describe(self) -> str:
        if self.anchor is None:
            return "map value (no threshold: the maps' own range)"
        if self.exact:
            return "map value; blue up to the threshold, yellow to red above it: an image with any yellow or red is flagged"
        return ("map value; blue up to the threshold carried to the map's scale (median map maximum / score of the "
                "images shown), yellow to red above it")


def map_scale(maps, map_scores, threshold: float | None, scores=None) -> MapScale:
    """The shared scale of a run: ``maps`` (k, H, W) of some of the samples drawn and their
    ``map_scores``; ``scores``: the scores of every sample drawn (default ``map_scores``), whose
    largest sets the top of the scale; anchored at ``threshold`` (see the module's note)."""
    s = np.asarray(map_scores, dtype=np.float64).reshape(-1)
    m = np.asarray(maps, dtype=np.float64)
    finite = m[np.isfinite(m)]
    if finite.size == 0:
        return MapScale(0.0, 1.0)
    peaks = np.array([np.nanmax(x) if np.isfinite(x).any() else np.nan for x in m])
    ok = np.isfinite(peaks) & np.isfinite(s) & (s > 0)
    exact = bool(ok.any() and np.allclose(peaks[ok], s[ok], rtol=1e-4, atol=1e-6))
    ratio = 1.0 if exact or not ok.any() else float(np.median(peaks[ok] / s[ok]))
    lo = float(finite.min())
    top = np.asarray(s if scores is None else scores, dtype=np.float64)
    top = top[np.isfinite(top)]
    hi = max(float(finite.max()), float(top.max()) * ratio if top.size else -np.inf)
    if threshold is None or not np.isfinite(threshold):
        return MapScale(lo, hi if hi > lo else lo + 1.0)
    anchor = float(threshold) * ratio
    span = max(hi - lo, abs(anchor) * 0.1, 1e-12)
    lo = lo if lo < anchor else anchor - span
    hi = hi if hi > anchor else anchor + span
    return MapScale(lo, hi, anchor, exact)


def colour_stops(scale: MapScale, every: int = 8) -> str:
    """The scale as CSS gradient stops (for the report's colour bar)."""
    lut = scale.colours()
    picks = [*range(0, 256, every), 255]
    return ", ".join(f"rgb({r},{g},{b}) {100 * i / 255:.1f}%" for i, (r, g, b) in zip(picks, lut[picks].tolist()))


def _to_rgb(image) -> np.ndarray:
    """(C, H, W) or (H, W) float in [0, 1] (clipped) -> (H, W, 3) uint8."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3 and x.shape[0] in (1, 3):
        x = x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise AnomalyError(f"heatmap: image must be (C, H, W) with C = 1 or 3, got shape {np.shape(image)}")
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def _map2d(score_map) -> np.ndarray:
    m = np.asarray(score_map, dtype=np.float32)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise AnomalyError(f"heatmap: score_map must be (H, W), got shape {m.shape}")
    return m


def _resize(a: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    """(h, w[, 3]) uint8 to ``size`` = (H, W): nearest when enlarging pixels, area-like when shrinking."""
    if a.shape[:2] == size:
        return a.copy()
    method = Image.BILINEAR if smooth and (size[0] < a.shape[0]) else Image.NEAREST
    return np.array(Image.fromarray(a).resize((size[1], size[0]), method))


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` of its edge (a contour that stays inside the defect)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[0, :] = shrunk[-1, :] = shrunk[:, 0] = shrunk[:, -1] = False
        inner = shrunk
    return mask & ~inner


def label_text(label) -> str | None:
    """A true label as text: 0/1 -> 'normal'/'anomaly', anything else as it is; None stays None."""
    if label is None:
        return None
    if isinstance(label, (bool, np.bool_, int, np.integer)) and int(label) in (0, 1):
        return "anomaly" if int(label) else "normal"
    return str(label)


def heatmap_image(image, score_map, score: float, threshold: float | None = None, label=None,
                  scale: int | None = None, mask=None, *, colour_scale: MapScale | None = None,
                  height: int | None = None, caption: bool = True, colour_bar: bool = False) -> Image.Image:
    """The image and (with a map) the image under its map in colour, side by side; a ground-truth
    ``mask`` (H, W) is outlined in green on the map; ``caption``: score, verdict (ANOMALY/normal,
    when ``threshold`` is given) and true label in the top-left corner; ``colour_bar``: the scale
    below, its threshold marked.

    ``image``: (C, H, W) float in [0, 1], C = 1 or 3. ``score_map``: (H, W) or None (image only).
    ``colour_scale``: the run's shared :class:`MapScale` (default: this map alone, anchored at
    ``threshold``). Size: ``height`` pixels per panel, or an integer upscaling ``scale`` (nearest;
    by default the smallest making each side >= 160 px).
    """
    rgb = _to_rgb(image)
    h, w = rgb.shape[:2]
    if height is not None:
        H = int(height)
        W = max(1, round(w * H / h))
    else:
        scale = max(1, math.ceil(MIN_SIDE / max(1, min(h, w)))) if scale is None else int(scale)
        if scale < 1:
            raise AnomalyError(f"heatmap: scale={scale} must be a positive integer")
        H, W = h * scale, w * scale
    panels = [_resize(rgb, (H, W), smooth=True)]
    sc = None
    if score_map is not None:
        m = _map2d(score_map)
        sc = colour_scale if colour_scale is not None else map_scale(m[None], [score], threshold)
        colour = sc.colours()[_resize(sc.index(m).astype(np.uint8), (h, w), smooth=False)]
        over = (rgb * (1 - ALPHA) + colour * ALPHA).round().astype(np.uint8)
        over = _resize(over, (H, W), smooth=True)
        if mask is not None:
            mk = np.asarray(mask, dtype=bool)
            if mk.shape != (h, w):
                raise AnomalyError(f"heatmap: mask {mk.shape} does not match the image {h}x{w}")
            big = _resize(mk.astype(np.uint8) * 255, (H, W), smooth=False) > 127
            over[_outline(big, max(2, H // 128))] = CONTOUR
        panels.append(over)
    elif mask is not None:
        mk = np.asarray(mask, dtype=bool)
        big = _resize(mk.astype(np.uint8) * 255, (H, W), smooth=False) > 127
        panels[0][_outline(big, max(2, H // 128))] = CONTOUR
    width = W * len(panels) + GAP * (len(panels) - 1)
    bar = colour_bar and sc is not None
    font = _font(max(FONT_MIN, min(18, H // 12)))
    extra = (BAR + 8 + font.size + 4) if bar else 0
    out = Image.new("RGB", (width, H + extra), (255, 255, 255))
    for i, p in enumerate(panels):
        out.paste(Image.fromarray(p), (i * (W + GAP), 0))
    if caption:
        _caption(out, score, threshold, label_text(label), font)
    if bar:
        _colour_bar(out, sc, H + 4, font)
    return out


def _colour_bar(img: Image.Image, sc: MapScale, top: int, font) -> None:
    """The scale as a bar across the image, lo / threshold / hi written under it."""
    draw = ImageDraw.Draw(img)
    x0, x1 = 4, img.width - 4
    idx = np.linspace(0, 255, x1 - x0).round().astype(np.int64)
    strip = np.repeat(sc.colours()[idx][None], BAR, axis=0)
    img.paste(Image.fromarray(strip), (x0, top))
    y = top + BAR + 2
    draw.text((x0, y), f"{sc.lo:.3g}", fill=(55, 65, 81), font=font)
    draw.text((x1, y), f"{sc.hi:.3g}", fill=(55, 65, 81), font=font, anchor="ra")
    if sc.anchor is not None:
        xm = x0 + (x1 - x0) * 127.5 / 255
        draw.line([(xm, top - 2), (xm, top + BAR + 1)], fill=(17, 24, 39), width=2)
        draw.text((xm, y), f"threshold {sc.anchor:.3g}" + ("" if sc.exact else " (scaled)"), fill=(17, 24, 39),
                  font=font, anchor="ma")


def _caption(img: Image.Image, score: float, threshold, label: str | None, font) -> None:
    """Score, verdict and true label on a dark box in the top-left corner."""
    lines: list[tuple[str, tuple[int, int, int]]] = [(f"score {score:.4g}", (255, 255, 255))]
    if threshold is not None and np.isfinite(score):
        bad = score > threshold
        lines.append(("ANOMALY" if bad else "normal", _RED if bad else _GREEN))
    if label is not None:
        lines.append((f"true: {label}", (229, 231, 235)))
    draw = ImageDraw.Draw(img, "RGBA")
    pad, step = 4, font.size + 3
    width = max(draw.textlength(t, font=font) for t, _ in lines)
    draw.rectangle((0, 0, int(width) + 2 * pad, pad * 2 + step * len(lines)), fill=(17, 24, 39, 210))
    for i, (text, colour) in enumerate(lines):
        draw.text((pad, pad + i * step), text, fill=colour, font=font)


def _indices(ev, indices, top) -> np.ndarray:
    n = len(ev.scores)
    if indices is None:
        idx = np.arange(n)
    else:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise AnomalyError(f"heatmaps: index out of range for {n} samples")
        idx = idx % max(n, 1)
    if top is not None:
        if int(top) < 1:
            raise AnomalyError(f"heatmaps: top={top} must be a positive integer")
        s = np.nan_to_num(np.asarray(ev.scores, dtype=np.float64)[idx], nan=-np.inf)
        idx = idx[np.argsort(-s, kind="stable")[: int(top)]]
    return idx


def true_labels(ev, idx: Sequence[int]) -> list[str | None]:
    """The true label of each sample: its class name and whether that class is anomalous."""
    src = ev.source
    names = getattr(src, "class_names", None)
    targets = getattr(src, "targets", None)
    out = []
    for i in idx:
        y = None if ev.labels is None else int(ev.labels[i])
        cls = None if targets is None or names is None else str(names[int(targets[i])])
        if cls is not None and y is not None:
            out.append(f"{cls} ({label_text(y)})")
        else:
            out.append(cls if cls is not None else label_text(y))
    return out


def heatmap_name(ev, i: int) -> str:
    """The file a sample's heatmap goes to: its own relative path as a PNG (``scratch/003.png``
    for ``test/scratch/003.png``), or ``{index:05d}_score{score:.4g}.png`` for arrays."""
    names = getattr(ev.source, "names", None)
    if names is not None:
        return str(Path(names[int(i)]).with_suffix(".png"))
    return f"{int(i):05d}_score{float(ev.scores[i]):.4g}.png"


def write_heatmaps(out_dir, ev, indices=None, top: int | None = None, *, batch_size: int = 64,
                   scale: MapScale | None = None) -> list[Path]:
    """One PNG per sample of ``ev`` (an image Evaluation), named by :func:`heatmap_name`: the
    image and the image under its map (the true mask outlined where known), the score, verdict
    and true label, and the colour bar. Every file shares one :class:`MapScale` (``scale``, or
    one made from the scores of the samples written and the first batch of maps).

    ``indices`` picks samples (default: all); ``top`` keeps only the ``top`` highest scoring of
    them. Maps are computed ``batch_size`` at a time; every file is written whole or not at all;
    ``out_dir`` is created if missing. Returns the paths, highest score first when ``top`` is given.
    """
    from .assessment import has_score_map

    if ev.kind != "image":
        raise AnomalyError(f"heatmaps: {ev.source.spec} is a series; heatmaps need images")
    if not has_score_map(ev.detector):
        raise AnomalyError(f"maps: {type(ev.detector).__name__} has no score_map")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AnomalyError(f"{out_dir}: cannot create the folder for heatmaps ({e.strerror})") from None
    check_writable(out_dir / "heatmap.png", "heatmaps")
    idx = _indices(ev, indices, top)
    labels = true_labels(ev, idx)
    paths: list[Path] = []
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        images, maps, masks = ev.images(chunk), ev.maps(chunk), ev.masks(chunk)
        if scale is None:  # one scale for the run: the first batch's maps, every score written
            scale = map_scale(maps, ev.scores[chunk], ev.threshold, scores=ev.scores[idx])
        for j, i in enumerate(chunk):
            img = heatmap_image(images[j], maps[j], float(ev.scores[i]), ev.threshold, labels[start + j],
                                mask=None if masks is None else masks[j], colour_scale=scale, colour_bar=True)
            path = out_dir / heatmap_name(ev, i)
            if path.parent != out_dir:
                path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, "heatmap") as tmp:
                img.save(tmp, format="PNG", optimize=False)
            paths.append(path)
    return paths
