"""The preview grid and the atomic PNG writer."""

import numpy as np
import pytest
import torch
from PIL import Image

from augment import AugmentError, Pipeline, preview_grid, save_png

CFG = {
    "seed": 0,
    "steps": [{"op": "rotate", "degrees": 20}],
    "ood": {"severity": 0.8, "ops": ["cutpaste"]},
}


def test_grid_rows_originals_augmented_synthetic_and_masks():
    x = (np.random.default_rng(0).random((5, 28, 28)) * 255).astype(np.uint8)
    p = Pipeline.from_config(CFG)
    grid = preview_grid(x, p, n=4, synth=True, variants=2)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    zoom, gap, label = 3, 2, 96  # 28 px tiles enlarged to 84 px
    assert grid.shape == (5 * (28 * zoom + gap) + gap, label + 4 * (28 * zoom + gap) + gap, 3)
    # first tile of the first row is the first original, enlarged, in grey
    tile = grid[gap : gap + 28 * zoom, label + gap : label + gap + 28 * zoom]
    assert np.array_equal(tile[::zoom, ::zoom, 0], x[0]) and np.array_equal(
        tile[..., 0], tile[..., 2]
    )
    # the mask row is red exactly where the synthesised image changed
    _, masks, _ = p.synthesize(torch.from_numpy(x[:4])[:, None])
    row = 4 * (28 * zoom + gap) + gap
    tile = grid[row : row + 28 * zoom, label + gap : label + gap + 28 * zoom][
        ::zoom, ::zoom
    ].astype(int)
    red = (tile[..., 0] - tile[..., 2]) > 60
    assert np.array_equal(red, masks[0].numpy())


def test_grid_without_synthesis_and_with_imgaug():
    x = torch.rand(3, 3, 40, 40)
    grid = preview_grid(x, Pipeline.from_config(CFG, backend="imgaug"), n=8)
    assert grid.shape[0] == 4 * (80 + 2) + 2  # original + 3 epochs; 40 px tiles doubled
    with pytest.raises(AugmentError, match="preview_grid: n: expected a positive integer"):
        preview_grid(x, Pipeline.from_config(CFG), n=0)


def test_save_png_is_atomic_and_readable(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    path = tmp_path / "grid.png"
    save_png(img, path)
    assert np.array_equal(np.asarray(Image.open(path)), img)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left behind
    with pytest.raises(AugmentError, match="save_png: expected a uint8 array"):
        save_png(img.astype(np.float32), tmp_path / "bad.png")
    with pytest.raises(OSError):
        save_png(img, tmp_path / "missing-dir" / "x.png")
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
