"""Names, layers, devices and their errors."""

from __future__ import annotations

import pytest
import torch

import backbones
from backbones import BackboneError

REQUIRED = {
    "resnet18",
    "resnet34",
    "resnet50",
    "wide_resnet50_2",
    "densenet121",
    "se_resnet18",
    "se_resnet50",
    "lenet5",
    "alexnet",
    "vgg11_bn",
    "vgg16",
    "googlenet",
}


def test_list_backbones_covers_the_required_names():
    infos = {i.name: i for i in backbones.list_backbones()}
    assert REQUIRED <= set(infos)
    for info in infos.values():
        assert set(info.default_layers) <= set(info.layers)
        assert list(info.layer_channels) == list(info.layer_strides) == list(info.layers)
    assert not infos["se_resnet18"].has_imagenet and not infos["lenet5"].has_imagenet
    assert infos["resnet18"].has_imagenet and infos["googlenet"].has_imagenet
    assert (infos["lenet5"].in_channels, infos["lenet5"].default_size) == (1, 32)
    assert (infos["resnet50"].in_channels, infos["resnet50"].default_size) == (3, 224)
    assert infos["resnet18"].default_layers == ("layer2", "layer3")


def test_backbone_error_is_a_value_error():
    assert issubclass(BackboneError, ValueError)


def test_unknown_name_lists_valid_names():
    with pytest.raises(BackboneError, match="resnet19.*resnet18") as err:
        backbones.create("resnet19", weights="random")
    assert "\n" not in str(err.value)


def test_unknown_layer_lists_the_backbones_layers():
    with pytest.raises(BackboneError, match="layer5.*stem, layer1, layer2, layer3, layer4"):
        backbones.create("resnet18", weights="random", layers=["layer2", "layer5"])
    with pytest.raises(BackboneError, match="no layers"):
        backbones.create("resnet18", weights="random", layers=[])


def test_layers_come_back_in_network_order():
    fx = backbones.create("resnet18", weights="random", layers="layer3, layer1", device="cpu")
    assert fx.layers == ("layer1", "layer3")


def test_no_imagenet_weights_for_own_architectures():
    for name in ("se_resnet18", "lenet5"):
        with pytest.raises(BackboneError, match=f"{name}: no ImageNet weights.*random"):
            backbones.create(name)
        assert backbones.imagenet_cached(name) is None


def test_resolve_device():
    assert backbones.resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert backbones.resolve_device("cpu") == torch.device("cpu")
    assert backbones.resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("cpux", "gpu", "", "meta"):
        with pytest.raises(BackboneError, match="device"):
            backbones.resolve_device(bad)
    with pytest.raises(BackboneError, match="device"):
        backbones.create("resnet18", weights="random", device="cpux")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_cuda_is_a_backbone_error():
    with pytest.raises(BackboneError, match="CUDA is not available"):
        backbones.resolve_device("cuda:0")


@pytest.mark.parametrize("size", [0, -3, (32,), (32, 32, 3), "64", 2.5, True])
def test_bad_image_size(size):
    with pytest.raises(BackboneError, match="image_size"):
        backbones.create("resnet18", weights="random", image_size=size, device="cpu")
