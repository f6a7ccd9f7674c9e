"""Heatmaps: an image beside the same image with its anomaly map as a colour overlay.

:func:`heatmap_image` draws one sample with PIL and a matplotlib colormap (no pyplot figure per
image, so thousands of them take seconds); :func:`write_heatmaps` writes one PNG per sample of an
:class:`~anomalib_lite.evaluation.Evaluation`, computing the maps in batches. Colours run from
blue (the low end of the map's range) to red (the high end); the range is the map's own min/max
unless ``vmin``/``vmax`` are given (the report shares one range between all its heatmaps).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import AnomalyError
from .io import atomic_output, check_writable

__all__ = ["CMAP", "heatmap_image", "heatmap_name", "label_text", "true_labels", "write_heatmaps"]

CMAP = "jet"  # blue (low) to red (high): readable over grey digits and photographs alike
ALPHA = 0.5  # weight of the map colour in the overlay
MIN_SIDE = 160  # small images (MNIST: 28 px) are upscaled (nearest) to at least this many pixels
GAP = 4  # pixels between the two panels
_RED, _GREEN = (248, 113, 113), (74, 222, 128)  # light: on the dark caption box

_colormaps: dict = {}
_fonts: dict = {}


def _lut(name: str) -> np.ndarray:
    """The colormap as a (256, 3) uint8 table (looked up once)."""
    if name not in _colormaps:
        import matplotlib

        cmap = matplotlib.colormaps[name]
        _colormaps[name] = (cmap(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return _colormaps[name]


def _font(size: int):
    if size not in _fonts:
        try:
            _fonts[size] = ImageFont.load_default(size=size)  # Pillow >= 10.1: scalable
        except TypeError:
            _fonts[size] = ImageFont.load_default()
    return _fonts[size]


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


def _colour(score_map, size: tuple[int, int], vmin, vmax, cmap: str) -> np.ndarray:
    """The map normalised to [vmin, vmax] (default: its own range) as (H, W, 3) uint8 colours."""
    m = np.asarray(score_map, dtype=np.float32)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise AnomalyError(f"heatmap: score_map must be (H, W), got shape {m.shape}")
    finite = np.isfinite(m)
    any_finite = bool(finite.any())
    lo = float(vmin) if vmin is not None else float(np.min(m[finite])) if any_finite else 0.0
    hi = float(vmax) if vmax is not None else float(np.max(m[finite])) if any_finite else 1.0
    span = hi - lo
    norm = (m - lo) / span if span > 0 else np.zeros_like(m)
    idx = (np.clip(np.nan_to_num(norm, nan=0.0), 0, 1) * 255).round().astype(np.uint8)
    rgb = _lut(cmap)[idx]
    if rgb.shape[:2] != size:  # a map at another resolution: stretch it onto the image
        rgb = np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.NEAREST))
    return rgb


def label_text(label) -> str | None:
    """A true label as text: 0/1 -> 'normal'/'anomaly', anything else as it is; None stays None."""
    if label is None:
        return None
    if isinstance(label, (bool, np.bool_, int, np.integer)) and int(label) in (0, 1):
        return "anomaly" if int(label) else "normal"
    return str(label)


def heatmap_image(image, score_map, score: float, threshold: float | None = None, label=None,
                  scale: int | None = None, vmin: float | None = None, vmax: float | None = None,
                  cmap: str = CMAP, mask=None) -> Image.Image:
    """The image and (with a map) the image under its map in colour, side by side, with the
    score, the verdict (ANOMALY/normal, when ``threshold`` is given) and the true label (when
    known: 0/1 or text) in the top-left corner. A ground-truth ``mask`` (H, W) adds a third
    panel: the true defect in white, beside the map that should find it.

    ``image``: (C, H, W) float in [0, 1], C = 1 or 3. ``score_map``: (H, W) or None (image only).
    ``scale``: integer upscaling (nearest), by default the smallest making each side >= 160 px.
    ``vmin``/``vmax``: the map values drawn blue/red (default: the map's own min/max).
    """
    rgb = _to_rgb(image)
    h, w = rgb.shape[:2]
    if scale is None:
        scale = max(1, math.ceil(MIN_SIDE / max(1, min(h, w))))
    scale = int(scale)
    if scale < 1:
        raise AnomalyError(f"heatmap: scale={scale} must be a positive integer")
    panels = [rgb]
    if score_map is not None:
        colour = _colour(score_map, (h, w), vmin, vmax, cmap)
        panels.append((rgb * (1 - ALPHA) + colour * ALPHA).round().astype(np.uint8))
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (h, w):
            raise AnomalyError(f"heatmap: mask {m.shape} does not match the image {h}x{w}")
        panels.append(np.repeat((m * 255).astype(np.uint8)[..., None], 3, axis=-1))
    H, W = h * scale, w * scale
    out = Image.new("RGB", (W * len(panels) + GAP * (len(panels) - 1), H), (255, 255, 255))
    for i, p in enumerate(panels):
        tile = Image.fromarray(p)
        if scale > 1:
            tile = tile.resize((W, H), Image.NEAREST)
        out.paste(tile, (i * (W + GAP), 0))
    _caption(out, score, threshold, label_text(label), H)
    return out


def _caption(img: Image.Image, score: float, threshold, label: str | None, height: int) -> None:
    """Score, verdict and true label on a dark box in the top-left corner."""
    size = max(10, min(16, height // 13))
    font = _font(size)
    lines: list[tuple[str, tuple[int, int, int]]] = [(f"score {score:.4g}", (255, 255, 255))]
    if threshold is not None and np.isfinite(score):
        bad = score > threshold
        lines.append(("ANOMALY" if bad else "normal", _RED if bad else _GREEN))
    if label is not None:
        lines.append((f"true: {label}", (229, 231, 235)))
    draw = ImageDraw.Draw(img, "RGBA")
    pad, step = 3, size + 2
    width = max(draw.textlength(t, font=font) for t, _ in lines)
    draw.rectangle((0, 0, int(width) + 2 * pad, pad * 2 + step * len(lines)), fill=(17, 24, 39, 200))
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
                   vmin: float | None = None, vmax: float | None = None) -> list[Path]:
    """One PNG per sample of ``ev`` (an image Evaluation), named by :func:`heatmap_name`: the
    image, the image under its map, and the true mask where one is known.

    ``indices`` picks samples (default: all); ``top`` keeps only the ``top`` highest scoring of
    them. Maps are computed ``batch_size`` at a time; every file is written whole or not at all;
    ``out_dir`` is created if missing. Returns the paths, highest score first when ``top`` is given.
    """
    from .evaluation import has_score_map

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
        for j, i in enumerate(chunk):
            score = float(ev.scores[i])
            img = heatmap_image(images[j], maps[j], score, ev.threshold, labels[start + j],
                                vmin=vmin, vmax=vmax, mask=None if masks is None else masks[j])
            path = out_dir / heatmap_name(ev, i)
            if path.parent != out_dir:
                path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, "heatmap") as tmp:
                img.save(tmp, format="PNG", optimize=False)
            paths.append(path)
    return paths
