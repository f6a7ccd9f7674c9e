"""The torchvision backend runs torchvision.transforms.v2's kernels: each op equals the v2
functional op for the parameters drawn for each sample, the same seed gives the same output,
drawn parameters stay in their ranges, and masks follow the geometry."""

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from augment import OPS, AugmentError, Pipeline
from augment import _torch_ops as ops
from augment._plan import plan
from augment.config import load

B = TF.InterpolationMode.BILINEAR
H, W = 20, 24


@pytest.fixture(scope="module")
def images():
    return torch.rand(12, 3, H, W, generator=torch.Generator().manual_seed(0))


def drawn(step: dict, n: int):
    """The pipeline of one step, and that step's per-sample draws for indices 0..n-1, epoch 0."""
    cfg = load({"seed": 5, "steps": [step]})
    (s,) = plan(cfg.steps, cfg.seed, 0, np.arange(n))
    return Pipeline(cfg), s


def close(a, b, atol=1e-5):
    return torch.allclose(a, b, atol=atol, rtol=0)


# ---- each op is v2's op for the drawn parameters -------------------------------------------


def test_affine_rotate_scale_equal_v2_affine(images):
    p, s = drawn({"op": "affine", "rotate": 30, "translate": 0.2, "scale": [0.7, 1.3], "shear": 20}, 12)
    a = ops.affine_params(s.step.params, s.u, H, W)
    assert np.all(np.abs(a["angle"]) <= 30) and np.all(np.abs(a["shear"]) <= 20)
    assert np.all((0.7 <= a["scale"]) & (a["scale"] <= 1.3)) and np.all(np.abs(a["tx"]) <= 0.2 * W)
    out = p(images)
    for i in range(12):
        ref = TF.affine(images[i], angle=a["angle"][i], translate=[a["tx"][i], a["ty"][i]],
                        scale=a["scale"][i], shear=[a["shear"][i], 0.0], interpolation=B)
        assert close(out[i], ref), i
    p, s = drawn({"op": "rotate", "degrees": [-40, 40]}, 12)
    deg = -40 + s.u[:, 0] * 80
    out = p(images)
    for i in range(12):  # v2's rotate turns counter-clockwise, ours (and v2's affine) clockwise
        assert close(out[i], TF.rotate(images[i], -deg[i], interpolation=B)), i
    p, s = drawn({"op": "scale", "factor": [0.5, 2.0]}, 12)
    f = 0.5 + s.u[:, 0] * 1.5
    out = p(images)
    for i in range(12):
        ref = TF.affine(images[i], angle=0.0, translate=[0.0, 0.0], scale=f[i], shear=[0.0, 0.0],
                        interpolation=B)
        assert close(out[i], ref), i


def test_perspective_equals_v2_perspective(images):
    p, s = drawn({"op": "perspective", "distortion": [0.05, 0.15]}, 12)
    quads = ops.perspective_quads(s.step.params, s.u, H, W) + [W / 2, H / 2]  # v2's pixel frame
    inside = (quads >= 0) & (quads <= [W, H])
    assert inside.all() and (np.abs(quads - quads.round()) > 0).any()  # corners move inward
    out = p(images)
    for i in range(12):  # the output's corners show the quadrilateral's corners of the input
        ref = TF.perspective(images[i], startpoints=quads[i].tolist(),
                             endpoints=[[0, 0], [W, 0], [W, H], [0, H]], interpolation=B)
        assert close(out[i], ref), i


def test_elastic_is_v2_elastic_with_a_bounded_smooth_displacement(images):
    p, s = drawn({"op": "elastic", "alpha": [5, 10], "sigma": [2, 3]}, 12)
    disp = ops.elastic_displacement(s.keys, s.step.params, s.u, images)
    assert disp.shape == (12, H, W, 2)
    pixels = disp * torch.tensor([W / 2, H / 2])  # normalised units -> pixels
    assert 0.3 < pixels.abs().max() <= 10  # uniform in [-alpha, alpha], smoothed
    assert (pixels.diff(dim=2).abs().mean() < pixels.abs().mean())  # smooth: neighbours agree
    out = p(images)
    for i in range(12):
        assert close(out[i], TF.elastic(images[i], disp[i : i + 1], interpolation=B)), i


def test_intensity_ops_equal_v2(images):
    p, s = drawn({"op": "gamma", "gamma": [0.5, 2.0]}, 12)
    g = 0.5 + s.u[:, 0] * 1.5
    out = p(images)
    for i in range(12):
        assert close(out[i], TF.adjust_gamma(images[i], g[i]), 1e-6), i
    p, s = drawn({"op": "blur", "sigma": [0.5, 2.0]}, 12)
    sigma = 0.5 + s.u[:, 0] * 1.5
    out = p(images)
    for i in range(12):  # kernel sized as imgaug sizes cv2's: 3.3 sigma, at least 5, odd
        k = int(max(int(3.3 * sigma[i]), 5)) | 1
        assert close(out[i], TF.gaussian_blur(images[i], [k, k], [sigma[i]] * 2)), i
    p, s = drawn({"op": "erasing", "size": [0.2, 0.4], "value": 0.25}, 12)
    boxes = ops.erasing_boxes(s.step.params, s.u, H, W)
    out = p(images)
    for i, (top, left, height, width) in enumerate(boxes.tolist()):
        assert height <= 0.4 * H + 1 and width <= 0.4 * W + 1
        whole = top > 0 and left > 0 and top + height < H and left + width < W
        assert not whole or (height >= 0.2 * H - 1 and width >= 0.2 * W - 1)  # unless clipped
        assert torch.equal(out[i], TF.erase(images[i], top, left, height, width, torch.tensor(0.25)))


def test_flips_are_v2_flips(images):
    assert torch.equal(Pipeline.from_config(["hflip"])(images), TF.horizontal_flip(images))
    assert torch.equal(Pipeline.from_config(["vflip"])(images), TF.vertical_flip(images))


def test_blur_wider_than_the_image_reflects_like_v2():
    x = torch.rand(3, 1, 6, 9, generator=torch.Generator().manual_seed(1))
    out = Pipeline.from_config([{"op": "blur", "sigma": [6, 6]}])(x)  # radius 7 > 6 rows
    for i in range(3):  # numpy's "reflect" is cv2's and torch's reflect-101, for any width
        padded = torch.from_numpy(np.pad(x[i].numpy(), ((0, 0), (7, 7), (7, 7)), mode="reflect"))
        ref = TF.gaussian_blur(padded, [15, 15], [6.0, 6.0])[:, 7:13, 7:16]
        assert close(out[i], ref), i
    flat = torch.full((2, 1, 4, 4), 0.3)
    assert close(Pipeline.from_config([{"op": "blur", "sigma": [10, 10]}])(flat), flat, 1e-6)


@pytest.mark.parametrize("op", ["rotate", "perspective", "elastic", "crop_and_pad"])
def test_fill_is_exact_at_the_border(op):
    """v2's own fill would blend it in as sampled * w + (1 - w) * fill and darken the border: a
    flat image whose fill is its own value must stay flat."""
    step = {"op": op, "fill": 0.6}
    if op == "elastic":
        step.update(alpha=[20, 20])
    if op == "crop_and_pad":
        step.update(fraction=[0.1, 0.3])
    x = torch.full((8, 1, 16, 16), 0.6)
    out = Pipeline.from_config([step])(x)
    assert close(out, x, 1e-6)


# ---- reproducibility per op ----------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(OPS))
def test_same_seed_same_output_other_seed_other_output(op, images):
    step = {"op": op, "p": 0.5} if op in ("hflip", "vflip") else {"op": op}
    if op == "affine":
        step.update(rotate=20, translate=0.1)
    if op == "erasing":
        step.update(size=[0.2, 0.5])
    first = Pipeline.from_config({"seed": 1, "steps": [step]})(images)
    again = Pipeline.from_config({"seed": 1, "steps": [step]})(images)
    assert torch.equal(first, again)
    halves = torch.cat([Pipeline.from_config({"seed": 1, "steps": [step]})(images[k : k + 6],
                                                                            np.arange(k, k + 6))
                        for k in (0, 6)])
    assert torch.equal(first, halves)
    other = Pipeline.from_config({"seed": 2, "steps": [step]})(images)
    assert not torch.equal(first, other)


# ---- masks follow the geometry -------------------------------------------------------------

GEOMETRIC = [
    {"op": "hflip"},
    {"op": "vflip"},
    {"op": "rotate", "degrees": [-60, 60]},
    {"op": "scale", "factor": [0.7, 1.4]},
    {"op": "affine", "rotate": 30, "translate": 0.15, "scale": [0.8, 1.2], "shear": 15},
    {"op": "perspective", "distortion": [0.05, 0.12]},
    {"op": "crop_and_pad", "fraction": [-0.15, 0.15]},
    {"op": "elastic", "alpha": [4, 8], "sigma": [3, 4]},
    {"op": "rotate", "degrees": [-60, 60], "mode": "reflect"},
    {"op": "elastic", "alpha": [4, 8], "sigma": [3, 4], "mode": "edge"},
]


def marked(n: int, size: int = 32):
    """Images and bool masks of one 3x3 block each, away from the border."""
    rng = np.random.default_rng(3)
    x = torch.zeros(n, 1, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i, (r, c) in enumerate(rng.integers(10, size - 13, (n, 2))):
        x[i, 0, r : r + 3, c : c + 3] = 1
        masks[i, r : r + 3, c : c + 3] = True
    return x, masks


def centroid(a: torch.Tensor) -> torch.Tensor:
    """(N, 2) centre of mass (row, column) of (N, H, W) weights."""
    a = a.float()
    ys, xs = torch.meshgrid(torch.arange(a.shape[1]), torch.arange(a.shape[2]), indexing="ij")
    m = a.sum((1, 2))
    return torch.stack([(a * ys).sum((1, 2)) / m, (a * xs).sum((1, 2)) / m], 1)


@pytest.mark.parametrize("step", GEOMETRIC, ids=lambda s: f"{s['op']}-{s.get('mode', 'constant')}")
def test_masks_follow_the_geometry(step):
    x, masks = marked(24)
    p = Pipeline.from_config({"seed": 9, "steps": [step]})
    out, moved = p(x, masks=masks)
    assert moved.dtype == torch.bool and moved.shape == masks.shape
    assert torch.equal(out, p(x))  # the images are the same with or without masks
    assert not torch.equal(moved, masks)  # the blocks moved
    seen = moved.flatten(1).any(1)
    assert seen.float().mean() > 0.9
    shift = (centroid(moved[seen]) - centroid(out[seen, 0])).norm(dim=1)
    assert shift.max() < 1.0, shift.max()  # the mask's block is where the image's block went
    assert (out[:, 0][moved] > 0.2).float().mean() > 0.95  # labels never land on background
    if step["op"] in ("hflip", "vflip"):
        assert torch.equal(moved, masks.flip(-1 if step["op"] == "hflip" else -2))


def test_masks_are_v2_masks_for_the_drawn_parameters():
    x, masks = marked(8)
    p, s = drawn({"op": "affine", "rotate": 30, "translate": 0.1}, 8)
    _, moved = p(x, masks=masks.to(torch.uint8))
    inv = ops.inverse_matrix("affine", s.step.params, s.u, 32, 32)
    for i, c in enumerate(ops.coefficients(inv, 32, 32).tolist()):
        ref = TF.perspective(tv_tensors.Mask(masks[i : i + 1].to(torch.uint8)), None, None, coefficients=c)
        assert torch.equal(moved[i], ref[0])


def test_masks_keep_dtype_layout_and_labels_and_skip_intensity_ops():
    x, _ = marked(6)
    labels = torch.randint(0, 5, (6, 2, 32, 32), generator=torch.Generator().manual_seed(0))
    cfg = {"seed": 1, "steps": [{"op": "rotate", "degrees": 45}, "brightness", "blur", "erasing"]}
    out, moved = Pipeline.from_config(cfg)(x, masks=labels)
    assert moved.dtype == torch.int64 and moved.shape == labels.shape
    assert set(moved.unique().tolist()) <= set(range(5))  # nearest neighbour: no blended labels
    soft = labels.float() / 4
    _, moved_soft = Pipeline.from_config(cfg)(x, masks=soft)
    assert torch.equal(moved_soft, moved.float() / 4)
    plain = Pipeline.from_config(["brightness", "contrast", "gamma", "blur", "erasing", "gaussian_noise"])
    _, kept = plain(x, masks=labels)
    assert torch.equal(kept, labels)
    u8 = (x * 255).to(torch.uint8)
    out8, moved8 = Pipeline.from_config(cfg)(u8, masks=labels[:, 0])
    assert out8.dtype == torch.uint8 and torch.equal(moved8, moved[:, 0])


def test_constant_mode_masks_get_zero_from_outside_reflect_mode_the_reflection():
    x = torch.zeros(1, 1, 16, 16)
    x[..., :, 12:] = 1  # a band at the right edge
    masks = x[:, 0] > 0
    shift = {"op": "affine", "translate": [-0.25, -0.25]}  # content moves 4 px left and up
    out, moved = Pipeline.from_config([shift])(x, masks=masks)
    assert not moved[:, :12, 12:].any() and moved[:, :12, 8:12].all() and not moved[:, 12:].any()
    out, moved = Pipeline.from_config([{**shift, "mode": "reflect"}])(x, masks=masks)
    assert torch.equal(moved, out[:, 0] > 0.5) and moved[..., 12:].all()  # the band reflected


@pytest.mark.parametrize(
    "masks, expected",
    [
        (np.zeros((4, 8, 8), bool), "masks: the torchvision backend takes a torch tensor"),
        (torch.zeros(3, 8, 8), "masks: expected shape (4, 8, 8) or (4, K, 8, 8) to match the images"),
        (torch.zeros(4, 8, 9), "got (4, 8, 9)"),
        (torch.zeros(4, 8, 8, dtype=torch.complex64), "masks: dtype torch.complex64 is not supported"),
    ],
)
def test_bad_masks(masks, expected):
    with pytest.raises(AugmentError) as info:
        Pipeline.from_config(["rotate"])(torch.zeros(4, 1, 8, 8), masks=masks)
    assert expected in str(info.value)


def test_imgaug_backend_masks_follow_the_geometry_too():
    x, masks = marked(12)
    a = (x[:, 0] * 255).to(torch.uint8).numpy()
    cfg = {"seed": 4, "steps": [{"op": "affine", "rotate": 40, "translate": 0.1}, "elastic", "hflip"]}
    p = Pipeline.from_config(cfg, backend="imgaug")
    out, moved = p(a, masks=masks.numpy())
    assert np.array_equal(out, p(a)) and moved.dtype == bool and moved.shape == (12, 32, 32)
    shift = (centroid(torch.from_numpy(moved)) - centroid(torch.from_numpy(out))).norm(dim=1)
    assert shift.max() < 1.0
    with pytest.raises(AugmentError, match="masks: dtype float32 is not supported by the imgaug"):
        p(a, masks=masks.numpy().astype(np.float32))
