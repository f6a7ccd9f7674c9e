"""The torchvision backend: per-sample draws, reproducibility, groups, dtypes, bad input."""

import numpy as np
import pytest
import torch

from augment import AugmentError, Pipeline

TRAINING = {
    "seed": 3,
    "steps": [
        {"op": "hflip", "p": 0.5},
        {
            "op": "affine",
            "translate": 0.1,
            "scale": [0.9, 1.1],
            "shear": 10,
            "rotate": 15,
            "p": 0.8,
        },
        {"op": "perspective", "p": 0.3},
        {"op": "elastic", "p": 0.3},
        {"one_of": [{"op": "blur"}, {"op": "gaussian_noise"}, {"op": "salt_pepper"}], "p": 0.7},
        {"some_of": [{"op": "brightness"}, {"op": "contrast"}, {"op": "gamma"}], "k": [0, 3]},
        {"op": "crop_and_pad", "p": 0.3, "fill": 0.5},
        {"op": "erasing", "p": 0.3},
    ],
}


@pytest.fixture(scope="module")
def images():
    return torch.rand(48, 3, 20, 24, generator=torch.Generator().manual_seed(0))


def test_same_result_whatever_batch_size_or_order(images):
    p = Pipeline.from_config(TRAINING)
    whole = p(images, np.arange(100, 148))
    pieces = torch.cat(
        [p(images[i : i + 5], np.arange(100 + i, 100 + min(i + 5, 48))) for i in range(0, 48, 5)]
    )
    assert torch.equal(whole, pieces)
    order = np.random.default_rng(1).permutation(48)
    assert torch.equal(p(images[order], 100 + order), whole[order])
    one = torch.cat([p(images[i : i + 1], [100 + i]) for i in range(48)])
    assert torch.equal(one, whole)


def test_draws_are_per_sample_and_depend_on_seed_epoch_index(images):
    p = Pipeline.from_config(TRAINING)
    same = images[:1].repeat(32, 1, 1, 1)
    out = p(same)
    distinct = {out[i].numpy().tobytes() for i in range(32)}
    assert len(distinct) > 25  # not one draw for the whole batch
    assert not torch.equal(p(images, epoch=1), p(images, epoch=0))
    assert not torch.equal(p(images, np.arange(1, 49)), p(images))
    reseeded = Pipeline.from_config({**TRAINING, "seed": 4})
    assert not torch.equal(reseeded(images), p(images))
    p.set_epoch(1)
    assert torch.equal(p(images), p(images, epoch=1))


@pytest.mark.parametrize(
    "step",
    [
        {"op": "gaussian_noise", "sigma": [0.05, 0.05]},
        {"op": "salt_pepper", "amount": [0.2, 0.2]},
        {"op": "elastic", "alpha": [20, 20], "sigma": [2, 2]},
    ],
)
def test_noise_fields_differ_between_samples(step, images):
    same = images[:1].repeat(8, 1, 1, 1)
    out = Pipeline.from_config([step])(same)
    assert len({o.numpy().tobytes() for o in out}) == 8


def test_input_is_not_modified(images):
    before = images.clone()
    Pipeline.from_config(TRAINING)(images)
    assert torch.equal(images, before)


def test_uint8_in_uint8_out_and_values_in_range(images):
    p = Pipeline.from_config(TRAINING)
    x8 = (images * 255).round().to(torch.uint8)
    out8 = p(x8)
    assert out8.dtype == torch.uint8 and out8.shape == x8.shape
    out = p(images)
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert (out8.float() / 255 - out).abs().mean() < 0.02  # same draws, up to quantisation
    wide = p(images.double())
    assert wide.dtype == torch.float64 and (wide.float() - out).abs().max() < 1e-5  # same draws


def test_flips_are_exact_and_p_zero_is_identity(images):
    flipped = Pipeline.from_config(["hflip", "vflip"])(images)
    assert torch.equal(flipped, images.flip(-1).flip(-2))
    assert torch.equal(Pipeline.from_config(["hflip", "hflip"])(images), images)
    never = [{"op": op, "p": 0.0} for op in ("rotate", "brightness", "elastic", "erasing", "blur")]
    assert torch.equal(Pipeline.from_config(never)(images), images)


def test_probability_is_per_sample():
    x = torch.full((2000, 1, 4, 4), 0.5)
    out = Pipeline.from_config([{"op": "brightness", "delta": [0.1, 0.1], "p": 0.3}])(x)
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.26 < changed < 0.34


def test_one_of_and_some_of_choose_children_per_sample():
    # three brightness steps with distinct deltas: the total change says which ones applied
    kids = [{"op": "brightness", "delta": [d, d]} for d in (0.1, 0.2, 0.4)]
    x = torch.full((3000, 1, 2, 2), 0.1)
    one = (Pipeline.from_config([{"one_of": kids}])(x) - x)[:, 0, 0, 0].numpy()
    values, counts = np.unique(np.round(one, 4), return_counts=True)
    assert list(values) == [0.1, 0.2, 0.4] and counts.min() > 900
    two = (Pipeline.from_config([{"some_of": kids, "k": 2}])(x) - x)[:, 0, 0, 0].numpy()
    values, counts = np.unique(np.round(two, 4), return_counts=True)
    assert list(values) == [0.3, 0.5, 0.6] and counts.min() > 900
    some = (Pipeline.from_config([{"some_of": kids, "k": [0, 1], "p": 0.5}])(x) - x)[
        :, 0, 0, 0
    ].numpy()
    assert 0.7 < np.mean(np.round(some, 4) == 0) < 0.8  # half skip the group, a quarter pick none


def test_fill_and_modes():
    x = torch.zeros(4, 1, 16, 16)
    out = Pipeline.from_config([{"op": "scale", "factor": [0.5, 0.5], "fill": 1.0}])(x)
    assert out[:, :, 0, 0].eq(1).all() and out[:, :, 8, 8].eq(0).all()
    ramp = torch.linspace(0, 1, 16).repeat(4, 1, 16, 1)
    edge = Pipeline.from_config([{"op": "affine", "translate": [0.25, 0.25], "mode": "edge"}])(ramp)
    assert edge[:, :, :, :4].eq(0).all()  # shifted right by 4 px, left columns repeat the edge


def test_rotation_direction_is_clockwise_on_screen():
    x = torch.zeros(1, 1, 33, 33)
    x[:, :, 16, 20:] = 1  # a bar pointing right from the centre
    out = Pipeline.from_config([{"op": "rotate", "degrees": [90, 90]}])(x)
    assert out[0, 0, 20:, 16].min() > 0.99  # now it points down


@pytest.mark.parametrize(
    "x, expected",
    [
        (
            np.zeros((2, 1, 8, 8), np.float32),
            "the torchvision backend takes a torch tensor (N, C, H, W), got ndarray",
        ),
        (torch.zeros(1, 8, 8), "images: expected a 4-d tensor (N, C, H, W), got shape (1, 8, 8)"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.int32), "images: dtype torch.int32 is not supported"),
        (torch.full((2, 1, 8, 8), 2.0), "images: float values must lie in [0, 1], got [2, 2]"),
    ],
)
def test_bad_images(x, expected):
    with pytest.raises(AugmentError) as info:
        Pipeline.from_config(["hflip"])(x)
    assert expected in str(info.value)
