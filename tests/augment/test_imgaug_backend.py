"""The imgaug backend: it imports on this numpy, it is reproducible, and the same config gives
statistically matching results on both backends."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from augment import AugmentError, Pipeline

N = 300


def test_imgaug_imports_and_runs_on_installed_numpy():
    from augment._imgaug_compat import import_imgaug

    ia, _, _ = import_imgaug()
    assert ia.__version__ == "0.4.0"
    assert set(np.sctypes["uint"]) >= {np.uint8}  # restored for imgaug
    # OneOf / SomeOf are the augmenters that needed np.bool on numpy 1.24+
    p = Pipeline.from_config(
        [{"one_of": ["hflip", "vflip"]}, {"some_of": ["blur", "brightness"], "k": [1, 2]}],
        backend="imgaug",
    )
    x = np.random.default_rng(0).integers(0, 256, (4, 12, 12), dtype=np.uint8)
    assert p(x).shape == x.shape


def test_torchvision_backend_never_imports_imgaug():
    code = (
        "import sys, torch, augment\n"
        "p = augment.Pipeline.from_config([{'op': 'rotate'}, {'op': 'blur'}])\n"
        "p(torch.rand(2, 1, 8, 8)); augment.synth.cutpaste(torch.rand(2, 1, 8, 8))\n"
        "assert 'imgaug' not in sys.modules, 'imgaug was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_repo_root())


def _repo_root():
    import pathlib

    import augment

    return str(pathlib.Path(augment.__file__).parent.parent)


def test_reproducible_whatever_batch_and_order():
    p = Pipeline.from_config(
        {
            "seed": 5,
            "steps": [
                {"op": "affine", "rotate": 20, "translate": 0.1},
                {"op": "gaussian_noise", "p": 0.5},
                {"op": "erasing", "p": 0.5},
            ],
        },
        backend="imgaug",
    )
    x = np.random.default_rng(0).random((12, 16, 16, 3)).astype(np.float32)
    whole = p(x, np.arange(12))
    assert whole.dtype == np.float32 and whole.shape == x.shape
    parts = np.concatenate([p(x[i : i + 5], np.arange(i, min(i + 5, 12))) for i in range(0, 12, 5)])
    assert np.array_equal(whole, parts)
    order = np.arange(12)[::-1]
    assert np.array_equal(p(x[order], order), whole[order])
    assert not np.array_equal(p(x, epoch=1), whole)
    assert len({whole[i].tobytes() for i in range(12)}) == 12


def ks(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    v = np.concatenate([a, b])
    return float(
        np.abs(
            np.searchsorted(a, v, "right") / len(a) - np.searchsorted(b, v, "right") / len(b)
        ).max()
    )


def both(cfg, x_uint8: np.ndarray):
    """Run cfg on both backends; float results (N, H, W)."""
    a = Pipeline.from_config(cfg, backend="imgaug")(x_uint8)
    t = Pipeline.from_config(cfg)(torch.from_numpy(x_uint8)[:, None])[:, 0].numpy()
    return a.astype(float) / 255, t.astype(float) / 255


def orientation(img: np.ndarray) -> np.ndarray:
    """Angle (degrees, clockwise on screen) of each image's principal axis, from second moments."""
    ys, xs = np.mgrid[0 : img.shape[1], 0 : img.shape[2]]
    m = img.sum((1, 2))
    cx, cy = (img * xs).sum((1, 2)) / m, (img * ys).sum((1, 2)) / m
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    mu20, mu02, mu11 = (
        (img * dx**2).sum((1, 2)),
        (img * dy**2).sum((1, 2)),
        (img * dx * dy).sum((1, 2)),
    )
    return np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02))


def test_rotation_angles_match_across_backends():
    bar = np.zeros((N, 64, 64), np.uint8)
    bar[:, 31:33, 10:54] = 255
    cfg = {"seed": 1, "steps": [{"op": "rotate", "degrees": [5, 40]}]}
    a, t = both(cfg, bar)
    ang_a, ang_t = orientation(a), orientation(t)
    for ang in (ang_a, ang_t):
        assert 4 < ang.min() and ang.max() < 41
        assert abs(ang.mean() - 22.5) < 2.0
    assert ks(ang_a, ang_t) < 0.15


@pytest.mark.parametrize(
    "step, image, statistic",
    [
        ({"op": "brightness", "delta": [-0.2, 0.1]}, "grey", lambda o, x: (o - x).mean((1, 2))),
        ({"op": "contrast", "factor": [0.5, 1.5]}, "ramp", lambda o, x: o.std((1, 2))),
        ({"op": "gamma", "gamma": [0.5, 2.0]}, "grey", lambda o, x: o.mean((1, 2))),
        ({"op": "gaussian_noise", "sigma": [0.0, 0.1]}, "grey", lambda o, x: o.std((1, 2))),
        ({"op": "salt_pepper", "amount": [0.0, 0.2]}, "grey", lambda o, x: (o != x).mean((1, 2))),
        ({"op": "blur", "sigma": [0.3, 2.0]}, "checker", lambda o, x: o.std((1, 2))),
        ({"op": "erasing", "size": [0.1, 0.5], "value": 1.0}, "black", lambda o, x: o.mean((1, 2))),
        (
            {"op": "elastic", "alpha": [0, 20], "sigma": [2, 4]},
            "checker",
            lambda o, x: np.abs(o - x).mean((1, 2)),
        ),
        (
            {"op": "perspective", "distortion": [0.05, 0.15]},
            "square",
            lambda o, x: (o > 0.5).mean((1, 2)),
        ),
        ({"op": "scale", "factor": [0.6, 1.4]}, "square", lambda o, x: (o > 0.5).mean((1, 2))),
        ({"op": "affine", "translate": 0.2}, "square", lambda o, x: (o > 0.5).mean((1, 2))),
        (
            {"op": "crop_and_pad", "fraction": [-0.2, 0.2]},
            "square",
            lambda o, x: (o > 0.5).mean((1, 2)),
        ),
    ],
)
def test_same_config_same_distribution(step, image, statistic):
    x = np.zeros((N, 32, 32), np.uint8)
    if image == "grey":
        x[:] = 128
    elif image == "ramp":
        x[:] = np.linspace(0, 255, 32).round().astype(np.uint8)
    elif image == "checker":
        x[:] = ((np.add.outer(np.arange(32), np.arange(32)) // 2) % 2 * 255).astype(np.uint8)
    elif image == "square":
        x[:, 8:24, 8:24] = 255
    a, t = both({"seed": 2, "steps": [step]}, x)
    sa, st = statistic(a, x / 255), statistic(t, x / 255)
    assert sa.std() > 0 and st.std() > 0  # the parameter is drawn per sample on both
    assert ks(sa, st) < 0.2, (sa.mean(), st.mean())


def test_fixed_geometry_is_identical_across_backends():
    ys, xs = np.mgrid[0:40, 0:40]
    smooth = (127.5 + 100 * np.sin(xs / 5.0) * np.cos(ys / 7.0)).round().astype(np.uint8)
    x = np.repeat(smooth[None], 2, 0)
    for step in (
        {"op": "rotate", "degrees": [25, 25]},
        {
            "op": "affine",
            "translate": [0.1, 0.1],
            "scale": [1.2, 1.2],
            "shear": [10, 10],
            "rotate": [-8, -8],
        },
    ):
        a, t = both([step], x)
        assert np.abs(a - t).max() <= 1.5 / 255, step


@pytest.mark.parametrize(
    "x, expected",
    [
        (torch.zeros(2, 8, 8), "the imgaug backend takes a numpy array (N, H, W[, C]), got Tensor"),
        (
            np.zeros((8, 8), np.uint8),
            "images: expected a 3-d or 4-d array (N, H, W[, C]), got shape (8, 8)",
        ),
        (np.zeros((2, 8, 8), np.int64), "images: dtype int64 is not supported"),
        (np.full((2, 8, 8), -1.0), "images: float values must lie in [0, 1]"),
    ],
)
def test_bad_images(x, expected):
    with pytest.raises(AugmentError) as info:
        Pipeline.from_config(["hflip"], backend="imgaug")(x)
    assert expected in str(info.value)
