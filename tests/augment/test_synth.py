"""Synthesis: exact masks, severity bounds, redraws, reproducibility, both data types, errors."""

import json

import numpy as np
import pytest
import torch

from augment import AugmentError, Pipeline, synth
from augment.synth import MAX_AREA

RNG = np.random.default_rng(0)
GRAY28 = (RNG.random((24, 28, 28)) * 255).astype(np.uint8)
RGB64 = RNG.random((8, 64, 64, 3)).astype(np.float32)


def digits(n=16):
    """Digit-like images: a bright ring on black, the case stroke_blob and redraws are for."""
    ys, xs = np.mgrid[0:28, 0:28]
    r = np.hypot(ys - 14, xs - 14)
    img = ((np.abs(r - 7) < 1.6) * 255).astype(np.uint8)
    return np.repeat(img[None], n, 0)


def changed(a, b):
    a, b = np.asarray(a), np.asarray(b)
    diff = a != b
    return diff.any(-1) if diff.ndim == 4 else diff


@pytest.mark.parametrize("op", synth.OPS)
@pytest.mark.parametrize(
    "images", [GRAY28, RGB64, digits()], ids=["gray28-uint8", "rgb64-float32", "digits"]
)
def test_mask_is_exactly_the_changed_pixels(op, images):
    out, masks, params = getattr(synth, op)(images, severity=0.6, seed=1)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert masks.dtype == bool and masks.shape == images.shape[:3]
    assert np.array_equal(masks, changed(out, images))
    assert masks.any(axis=(1, 2)).mean() > 0.9  # nearly every sample got an anomaly
    assert len(params) == len(images) and all(p["op"] == op for p in params)
    assert [p["changed"] for p in params] == masks.sum((1, 2)).tolist()
    json.dumps(params)  # plain Python values


@pytest.mark.parametrize("op", synth.OPS)
def test_torch_tensors_in_and_out(op):
    x = torch.from_numpy(RGB64).permute(0, 3, 1, 2)
    out, masks, _ = getattr(synth, op)(x, seed=2)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == x.dtype
    assert isinstance(masks, torch.Tensor) and masks.shape == (8, 64, 64)
    assert torch.equal(masks, (out != x).any(1))
    # same draws as the numpy layout
    ref, _, _ = getattr(synth, op)(RGB64, seed=2)
    assert np.array_equal(out.permute(0, 2, 3, 1).numpy(), ref)


@pytest.mark.parametrize("op", synth.OPS)
@pytest.mark.parametrize("severity", [0.1, 0.4, 1.0])
def test_severity_bounds_area_and_intensity(op, severity):
    x = RGB64 if op != "stroke_blob" else digits(8)
    out, masks, _ = getattr(synth, op)(x, severity=severity, seed=3)
    h, w = x.shape[1:3]
    assert masks.sum((1, 2)).max() <= severity * MAX_AREA * h * w
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    assert np.abs(out.astype(float) - x.astype(float)).max() / scale <= severity + 1e-6


def test_lower_severity_gives_smaller_anomalies():
    areas = [synth.cutpaste(RGB64, severity=s, seed=4)[1].sum() for s in (0.2, 1.0)]
    assert areas[0] < areas[1] / 2


def test_draws_that_change_too_little_are_redrawn():
    x = np.zeros(
        (6, 28, 28), np.uint8
    )  # black on black, no jitter: cutpaste cannot change anything
    out, masks, params = synth.cutpaste(x, max_tries=5, jitter=0.0)
    assert not masks.any() and np.array_equal(out, x)
    assert all(p["attempts"] == 5 for p in params)
    x = digits(16)  # mostly background: many patches move black onto black, and are redrawn
    out, masks, params = synth.cutpaste(x, seed=5, min_pixels=10, jitter=0.0)
    assert all(p["changed"] >= 10 for p in params)
    assert max(p["attempts"] for p in params) > 1


def test_same_result_whatever_batch_and_order():
    pool = RGB64[:4]
    whole = synth.patch_blend(RGB64, indices=np.arange(10, 18), pool=pool, seed=6)
    parts = [
        synth.patch_blend(
            RGB64[i : i + 3], indices=np.arange(10 + i, 10 + min(i + 3, 8)), pool=pool, seed=6
        )
        for i in range(0, 8, 3)
    ]
    assert np.array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    assert whole[2] == [d for p in parts for d in p[2]]
    other = synth.perlin(RGB64, indices=np.arange(10, 18), seed=6, epoch=1)
    assert not np.array_equal(other[0], synth.perlin(RGB64, indices=np.arange(10, 18), seed=6)[0])


def test_synthesize_mixes_ops_and_matches_single_op_calls():
    out, masks, params = synth.synthesize(
        GRAY28, ops=["cutpaste", "scar", "perlin"], weights=[1, 1, 2], seed=7
    )
    chosen = [p["op"] for p in params]
    assert set(chosen) == {"cutpaste", "scar", "perlin"}
    assert np.array_equal(masks, changed(out, GRAY28))
    only, _, _ = synth.synthesize(GRAY28, ops=["scar"], seed=7)
    assert np.array_equal(only, synth.scar(GRAY28, seed=7)[0])
    tuned = synth.synthesize(
        GRAY28, ops=["cutpaste"], params={"cutpaste": {"area": [0.1, 0.1]}}, seed=7
    )
    assert not np.array_equal(tuned[0], synth.cutpaste(GRAY28, seed=7)[0])


def test_pipeline_synthesize_runs_the_ood_section():
    cfg = {
        "seed": 8,
        "steps": ["hflip"],
        "ood": {"severity": 0.3, "ops": [{"op": "stroke_blob", "shape": "stroke"}]},
    }
    p = Pipeline.from_config(cfg)
    x = torch.from_numpy(digits(6))[:, None]
    out, masks, params = p.synthesize(x)
    assert torch.equal(masks, (out != x).any(1))
    assert all(d["shape"] == "stroke" for d in params)
    direct = synth.stroke_blob(x, severity=0.3, seed=8, shape="stroke")
    assert torch.equal(out, direct[0])
    with pytest.raises(AugmentError, match="this pipeline has no ood section"):
        Pipeline.from_config(["hflip"]).synthesize(x)


def test_perlin_octaves_adapt_to_image_size():
    _, _, small = synth.perlin(GRAY28, seed=9)
    _, _, large = synth.perlin(np.zeros((16, 224, 224), np.uint8) + 100, seed=9)
    assert max(max(p["cells"]) for p in small) <= 4
    assert max(max(p["cells"]) for p in large) > 4


@pytest.mark.parametrize(
    "call, expected",
    [
        (
            lambda: synth.cutpaste(GRAY28, areaa=0.1),
            "cutpaste: unknown key 'areaa'; valid keys are: area, aspect, jitter",
        ),
        (
            lambda: synth.scar(GRAY28, width=[0.5, 0.1]),
            "scar: key 'width': range (0.5, 0.1) is reversed",
        ),
        (
            lambda: synth.perlin(GRAY28, severity=1.5),
            "perlin: key 'severity': 1.5 is outside (0, 1]",
        ),
        (
            lambda: synth.perlin(GRAY28, texture="dtd"),
            "perlin: key 'texture': unknown value 'dtd'; valid values are: noise, pool",
        ),
        (
            lambda: synth.stroke_blob(GRAY28.astype(np.int16)),
            "stroke_blob: images: dtype int16 is not supported",
        ),
        (
            lambda: synth.local_elastic(GRAY28[0]),
            "local_elastic: images: expected (N, H, W) or (N, H, W, C), got shape (28, 28)",
        ),
        (
            lambda: synth.patch_blend(RGB64 * 2),
            "patch_blend: images: float values must lie in [0, 1]",
        ),
        (
            lambda: synth.scar(GRAY28[:, :6]),
            "scar: images: 6x28 is too small to synthesise on (at least 8x8)",
        ),
        (
            lambda: synth.scar(torch.zeros(2, 1, 28, 28, dtype=torch.bfloat16)),
            "scar: images: dtype torch.bfloat16",
        ),
        (
            lambda: synth.cutpaste(GRAY28, epoch=-1),
            "cutpaste: epoch: expected a non-negative integer, got -1",
        ),
        (
            lambda: synth.patch_blend(RGB64, pool=GRAY28),
            "patch_blend: pool: expected images of shape (64, 64, 3)",
        ),
        (
            lambda: synth.cutpaste(GRAY28, indices=[1, 2]),
            "cutpaste: indices: expected 24 non-negative integers",
        ),
        (
            lambda: synth.synthesize(GRAY28, ops=["cutpaste", "blob"]),
            "synthesize op 2: unknown op 'blob'; valid ops are",
        ),
        (
            lambda: synth.synthesize(GRAY28, ops=["scar"], weights=[1, 2]),
            "synthesize: weights: expected 1 weights",
        ),
    ],
)
def test_errors_are_one_line_naming_the_key(call, expected):
    with pytest.raises(AugmentError) as info:
        call()
    assert expected in str(info.value) and "\n" not in str(info.value)
