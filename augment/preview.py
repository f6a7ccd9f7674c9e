"""A picture of what a config does: originals, augmented versions, synthesised anomalies."""

from __future__ import annotations

import os
import tempfile

import cv2
import numpy as np

from .errors import AugmentError

_TILE = 64  # small images are enlarged (nearest neighbour) to at least this many pixels
_GAP = 2
_LABEL_W = 96
_BACKGROUND = 40
_MASK_RGB = np.array([1.0, 0.15, 0.1], np.float32)


def _to_numpy(x) -> np.ndarray:
    """Any accepted batch -> float32 (N, H, W, 3) in [0, 1] for display."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
        x = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    x = np.asarray(x)
    x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32)
    x = x[..., None] if x.ndim == 3 else x
    return np.repeat(x[..., :1], 3, -1) if x.shape[-1] != 3 else x


def _for_backend(images, backend: str):
    """Hand the pipeline the data type its backend takes."""
    import torch

    is_tensor = isinstance(images, torch.Tensor)
    if backend == "torchvision" and not is_tensor:
        a = np.asarray(images)
        a = a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(a))
    if backend == "imgaug" and is_tensor:
        a = images.detach().cpu().numpy().transpose(0, 2, 3, 1)
        return np.ascontiguousarray(a[..., 0] if a.shape[-1] == 1 else a)
    return images


def preview_grid(
    images, pipeline, n: int = 8, synth: bool = False, variants: int = 3
) -> np.ndarray:
    """(H, W, 3) uint8 grid: a row of ``n`` originals, ``variants`` rows of augmented versions
    (epochs 0, 1, ...), and with ``synth`` the synthesised images and their masks in red."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise AugmentError(f"preview_grid: n: expected a positive integer, got {n!r}")
    batch = _for_backend(images, pipeline.backend)[:n]
    rows = [("original", _to_numpy(batch))]
    for e in range(variants):
        rows.append((f"epoch {e}", _to_numpy(pipeline(batch, epoch=e))))
    if synth:
        syn, masks, _ = pipeline.synthesize(batch)
        syn = _to_numpy(syn)
        m = np.asarray(masks.cpu() if hasattr(masks, "cpu") else masks)[..., None].astype(
            np.float32
        )
        grey = syn.mean(-1, keepdims=True) * 0.7
        rows += [
            ("synthetic", syn),
            ("mask", grey * (1 - m) + m * (0.35 * grey + 0.65 * _MASK_RGB)),
        ]
    return _layout(rows)


def _layout(rows: list[tuple[str, np.ndarray]]) -> np.ndarray:
    n, h, w, _ = rows[0][1].shape
    zoom = max(1, int(np.ceil(_TILE / max(h, w))))
    th, tw = h * zoom, w * zoom
    height = len(rows) * (th + _GAP) + _GAP
    width = _LABEL_W + n * (tw + _GAP) + _GAP
    canvas = np.full((height, width, 3), _BACKGROUND, np.uint8)
    for r, (label, tiles) in enumerate(rows):
        y = _GAP + r * (th + _GAP)
        cv2.putText(
            canvas,
            label,
            (6, y + th // 2 + 5),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (230, 230, 230),
            1,
            cv2.LINE_AA,
        )
        for c, tile in enumerate(tiles):
            big = np.repeat(np.repeat(tile, zoom, 0), zoom, 1)
            x = _LABEL_W + _GAP + c * (tw + _GAP)
            canvas[y : y + th, x : x + tw] = np.round(np.clip(big, 0, 1) * 255).astype(np.uint8)
    return canvas


def save_png(array: np.ndarray, path) -> None:
    """Write a uint8 (H, W) or (H, W, 3) image as PNG: to a binary file object as it is, or to a
    path atomically (temporary file, then rename)."""
    from PIL import Image

    a = np.asarray(array)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise AugmentError(
            f"save_png: expected a uint8 array (H, W) or (H, W, 3), got {a.dtype} {a.shape}"
        )
    if hasattr(path, "write"):
        Image.fromarray(a).save(path, format="PNG")
        return
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(suffix=".png.tmp", dir=os.path.dirname(os.path.abspath(path)))
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(a).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise