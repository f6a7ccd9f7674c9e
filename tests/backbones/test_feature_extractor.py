"""FeatureExtractor behaviour on random weights: shapes, truncation, frozen BatchNorm, input
adaptation, the inference path, config round trips and seeding."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import backbones

# Convs without padding make these maps a little smaller than input/stride.
UNPADDED = {"alexnet", "lenet5"}


@pytest.fixture(scope="module")
def resnet18():
    return backbones.create(
        "resnet18", weights="random", layers=["layer1", "layer2", "layer3"], device="cpu"
    )


@pytest.mark.parametrize("info", backbones.list_backbones(), ids=lambda i: i.name)
def test_every_backbone_yields_its_layers_at_the_declared_shapes(info):
    fx = backbones.create(info.name, weights="random", layers=info.layers, device="cpu")
    size = 32 if info.name == "lenet5" else 64
    out = fx.extract(torch.rand(2, 3, size, size))
    assert tuple(out) == info.layers == fx.layers
    assert fx.layer_channels == info.layer_channels and fx.layer_strides == info.layer_strides
    for layer, feat in out.items():
        n, c, h, w = feat.shape
        assert (n, c) == (2, info.layer_channels[layer])
        expected = math.ceil(size / info.layer_strides[layer])
        if info.name in UNPADDED:
            assert expected - 6 <= h == w <= expected, layer
        else:
            assert h == w == expected, layer


def test_default_layers_are_used_when_none_are_given():
    fx = backbones.create("alexnet", weights="random", device="cpu")
    assert fx.layers == ("conv2", "conv4")


def test_truncation_stops_after_the_last_requested_layer():
    fx = backbones.create("resnet18", weights="random", layers=["layer1"], device="cpu")
    assert list(fx.stages) == ["stem", "layer1"]
    assert not any(
        k.startswith(("layer2", "layer3", "layer4", "fc")) for k in fx.trunk_state_dict()
    )

    fx = backbones.create("resnet18", weights="random", layers=["layer2"], device="cpu")
    ran = []
    for name, stage in fx.stages.items():
        stage.register_forward_hook(lambda *_, name=name: ran.append(name))
    fx.extract(torch.rand(1, 3, 64, 64))
    assert ran == ["stem", "layer1", "layer2"]
    full = backbones.build_model("resnet18")
    assert sum(p.numel() for p in fx.parameters()) < sum(p.numel() for p in full.parameters()) / 5


def test_batchnorm_stays_frozen_after_train(resnet18):
    fx = resnet18
    bn = fx.stages["stem"][1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    fx.train()
    assert not fx.training and not any(m.training for m in fx.modules())
    x = torch.rand(4, 3, 64, 64) * 5 + 3
    fx.extract(x)
    fx(x)
    fx.stages["stem"].train()  # a submodule flipped directly is put back by forward
    fx(x)
    after = (bn.running_mean, bn.running_var, bn.num_batches_tracked)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not any(p.requires_grad for p in fx.parameters())


def test_grayscale_input_on_a_three_channel_net(resnet18):
    grey = torch.rand(2, 1, 48, 48)
    a, b = resnet18.extract(grey), resnet18.extract(grey.expand(-1, 3, -1, -1))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rgb_input_on_lenet5():
    fx = backbones.create("lenet5", weights="random", device="cpu")
    rgb = torch.rand(2, 3, 32, 32)
    a, b = fx.extract(rgb), fx.extract(rgb.mean(dim=1, keepdim=True))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert fx.mean == (0.5,) and fx.std == (0.5,) and fx.in_channels == 1


def test_image_size_resizes_and_none_keeps_the_input_size():
    fx = backbones.create(
        "resnet18", weights="random", layers=["layer2"], image_size=32, device="cpu"
    )
    assert fx.extract(torch.rand(1, 3, 80, 60))["layer2"].shape[-2:] == (4, 4)
    x = torch.rand(1, 3, 80, 64)
    resized = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)
    assert torch.allclose(fx.extract(x)["layer2"], fx.extract(resized)["layer2"], atol=1e-5)
    fx = backbones.create("resnet18", weights="random", layers=["layer2"], device="cpu")
    assert fx.extract(torch.rand(1, 3, 80, 64))["layer2"].shape[-2:] == (10, 8)


def test_preprocessing_normalises_with_the_recorded_stats(resnet18):
    x = torch.rand(2, 3, 8, 8)
    mean = torch.tensor(resnet18.mean).view(1, 3, 1, 1)
    std = torch.tensor(resnet18.std).view(1, 3, 1, 1)
    assert torch.allclose(resnet18.preprocess(x), (x - mean) / std, atol=1e-6)


def test_extract_returns_plain_float32_tensors_without_grad(resnet18):
    out = resnet18.extract(torch.rand(2, 3, 64, 64))
    for feat in out.values():
        assert feat.dtype == torch.float32 and feat.is_contiguous()
        assert not feat.requires_grad and feat.grad_fn is None
        assert feat.device == resnet18.device
    # usable as the input of a model someone trains
    conv = torch.nn.Conv2d(256, 4, 3)
    conv(out["layer3"]).sum().backward()
    assert conv.weight.grad is not None


def test_extract_accepts_uint8_and_arrays(resnet18):
    x8 = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    a, b = resnet18.extract(x8), resnet18.extract(x8.float() / 255)
    c = resnet18.extract(x8.numpy())
    assert all(torch.allclose(a[k], b[k], atol=1e-5) and torch.equal(a[k], c[k]) for k in a)


def test_forward_matches_extract(resnet18):
    x = torch.rand(2, 3, 64, 64)
    a, b = resnet18(x), resnet18.extract(x)
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_pooled_concatenates_global_means(resnet18):
    x = torch.rand(3, 3, 64, 64)
    feats = resnet18.extract(x)
    pooled = resnet18.pooled(x)
    assert pooled.shape == (3, 64 + 128 + 256)
    assert torch.allclose(pooled[:, 64:192], feats["layer2"].mean(dim=(2, 3)), atol=1e-6)


def test_bad_input_shapes_are_backbone_errors(resnet18):
    with pytest.raises(backbones.BackboneError, match=r"resnet18: input must be.*add a batch axis: x\[None\]"):
        resnet18.extract(torch.rand(3, 32, 32))
    with pytest.raises(backbones.BackboneError, match="4 channels; expected 1 or 3$"):
        resnet18.extract(torch.rand(1, 4, 32, 32))
    # images as they are read, channels last: the error names the permutation
    with pytest.raises(backbones.BackboneError, match=r"32 channels.*channels-last.*permute\(0, 3, 1, 2\)"):
        resnet18.extract(torch.rand(2, 32, 32, 3).numpy())


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "vgg11", "googlenet", "densenet121"])
def test_images_too_small_for_a_stage_are_one_backbone_error_naming_it(name):
    """torch's RuntimeError ("Kernel size can't be greater than actual input size", "Output size
    is too small") came out of the stage's forward; now one error with the size and the fix."""
    fx = backbones.create(name, weights="random", device="cpu")
    with pytest.raises(backbones.BackboneError, match=rf"{name}: images of 8x8 px are too small for its stage "
                                                      r"'\w+' \(it gets \d+x\d+\); resize them"):
        fx.extract(torch.rand(1, 3, 8, 8))


def test_pil_images_are_one_backbone_error_naming_the_conversion(resnet18):
    from PIL import Image

    for x in (Image.new("RGB", (32, 32)), [Image.new("RGB", (32, 32))] * 2):
        with pytest.raises(backbones.BackboneError, match="got (Image|list); for PIL images: torch.stack"):
            resnet18.extract(x)


def test_weights_none_is_random_init_as_in_torchvision():
    a = backbones.create("resnet18", weights=None, layers=["layer1"], device="cpu", seed=3)
    b = backbones.create("resnet18", weights="random", layers=["layer1"], device="cpu", seed=3)
    assert a.weights_source == "random"
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(a.extract(x)["layer1"], b.extract(x)["layer1"])


def test_config_and_trunk_state_dict_reproduce_the_outputs():
    fx = backbones.create(
        "se_resnet18",
        weights="random",
        layers=["layer1", "layer3"],
        image_size=(48, 40),
        seed=7,
        device="cpu",
    )
    cfg = json.loads(json.dumps(fx.config()))
    assert cfg == {
        "name": "se_resnet18",
        "weights_source": "random",
        "weights_sha256": None,
        "layers": ["layer1", "layer3"],
        "image_size": [48, 40],
        "mean": list(fx.mean),
        "std": list(fx.std),
        "seed": 7,
    }
    x = torch.rand(2, 3, 64, 64)
    expected = fx.extract(x)
    for again in (
        backbones.FeatureExtractor.from_config(cfg, fx.trunk_state_dict(), device="cpu"),
        backbones.FeatureExtractor.from_config(cfg, device="cpu"),
    ):  # random: re-seeded
        got = again.extract(x)
        assert all(torch.equal(expected[k], got[k]) for k in expected)
        assert again.config() == cfg


def test_a_trunk_state_dict_from_another_seed_really_is_loaded():
    a = backbones.create("resnet18", weights="random", layers=["layer2"], seed=1, device="cpu")
    cfg = a.config() | {"seed": 2}
    b = backbones.FeatureExtractor.from_config(cfg, a.trunk_state_dict(), device="cpu")
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(a.extract(x)["layer2"], b.extract(x)["layer2"])


def test_same_seed_same_weights_other_seed_other_weights():
    rng = torch.get_rng_state()
    a, b, c = (
        backbones.create(
            "resnet18", weights="random", layers=["layer1"], seed=s, device="cpu"
        ).trunk_state_dict()
        for s in (0, 0, 1)
    )
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_build_model_is_the_full_trainable_model():
    model = backbones.build_model("resnet18", seed=3)
    fx = backbones.create("resnet18", weights="random", layers=["layer4"], seed=3, device="cpu")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in fx.trunk_state_dict().items())
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1000)
    assert all(p.requires_grad for p in model.parameters())
    assert backbones.build_model("lenet5")(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    assert backbones.build_model("se_resnet18")(torch.rand(2, 3, 32, 32)).shape == (2, 1000)
    googlenet = backbones.build_model("googlenet").train()
    assert googlenet(torch.rand(2, 3, 32, 32)).shape == (2, 1000)  # logits, no aux tuple
