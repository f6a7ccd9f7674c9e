"""Weights: ImageNet through torch.hub's cache (offline), weights files, and their errors."""

from __future__ import annotations

import os

import pytest
import torch
import torchvision

import backbones
from backbones import BackboneError, FeatureExtractor


def _trunk_equals(fx, state):
    trunk = fx.trunk_state_dict()
    return bool(trunk) and all(torch.equal(v, state[k]) for k, v in trunk.items())


# ----------------------------------------------------------------------------- ImageNet


def test_imagenet_weights_load_from_the_cache(fake_imagenet, offline_hub):
    assert backbones.imagenet_cached("resnet18") is False
    path, state = fake_imagenet("resnet18")
    assert os.path.basename(path) == "resnet18-f37072fd.pth"
    assert backbones.imagenet_cached("resnet18") is True
    fx = backbones.create("resnet18", weights="imagenet", download=False, device="cpu")
    assert _trunk_equals(fx, state)
    assert fx.weights_source == "imagenet:IMAGENET1K_V1"
    assert fx.weights_sha256 == backbones.file_sha256(path)
    assert offline_hub == []  # no download attempted


def test_not_cached_and_no_download_names_the_checkpoints_dir():
    with pytest.raises(BackboneError) as err:
        backbones.create("resnet18", weights="imagenet", download=False)
    msg = str(err.value)
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    assert msg.startswith("resnet18: ImageNet weights are not cached")
    assert "download=False" in msg and "resnet18-f37072fd.pth" in msg and folder in msg
    assert "weights='random'" in msg and "\n" not in msg


def test_other_imagenet_weights_are_chosen_by_enum_name():
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url
    with pytest.raises(BackboneError, match=os.path.basename(url)):
        backbones.create("resnet50", weights="imagenet:IMAGENET1K_V2", download=False)
    with pytest.raises(BackboneError, match="no ImageNet weights 'V7'; available: IMAGENET1K_V1"):
        backbones.create("resnet18", weights="imagenet:V7")
    with pytest.raises(BackboneError, match="weights=3"):
        backbones.create("resnet18", weights=3)


def test_failed_download_gives_one_backbone_error(offline_hub):
    with pytest.raises(
        BackboneError,
        match=r"not cached and could not be downloaded "
        r"\(<urlopen error network disabled in tests>\)",
    ):
        backbones.create("wide_resnet50_2")  # default: weights="imagenet", downloads allowed
    ((url, kwargs),) = offline_hub
    assert url == torchvision.models.Wide_ResNet50_2_Weights.IMAGENET1K_V1.url
    assert kwargs["check_hash"] is True and kwargs["weights_only"] is True


def test_a_successful_download_is_used(monkeypatch):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    state = torchvision.models.resnet18().state_dict()

    def fake_download(url, progress=True, check_hash=False, weights_only=False, **kw):
        assert url == weights.url and check_hash and weights_only
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        os.makedirs(folder, exist_ok=True)
        torch.save(state, os.path.join(folder, os.path.basename(url)))
        return state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    fx = backbones.create("resnet18", device="cpu")
    assert _trunk_equals(fx, state) and fx.weights_sha256 is not None


def test_imagenet_from_config_checks_the_recorded_hash(fake_imagenet):
    path, _ = fake_imagenet("resnet18", seed=1)
    fx = backbones.create("resnet18", layers=["layer1"], download=False, device="cpu")
    x = torch.rand(1, 3, 32, 32)
    again = FeatureExtractor.from_config(fx.config(), device="cpu", download=False)
    assert torch.equal(fx.extract(x)["layer1"], again.extract(x)["layer1"])
    fake_imagenet("resnet18", seed=2)  # the cached file changes
    with pytest.raises(BackboneError, match="not the same weights"):
        FeatureExtractor.from_config(fx.config(), device="cpu", download=False)
    # a bundle carrying its own tensors does not need the cache at all
    os.remove(path)
    restored = FeatureExtractor.from_config(fx.config(), fx.trunk_state_dict(), device="cpu")
    assert torch.equal(fx.extract(x)["layer1"], restored.extract(x)["layer1"])


def test_googlenet_imagenet_applies_transform_input_in_the_stem(fake_imagenet):
    _, state = fake_imagenet("googlenet")
    fx = backbones.create("googlenet", layers=["inception4"], download=False, device="cpu")
    assert fx.stages["stem"].transform_input
    assert (
        not backbones.create("googlenet", weights="random", device="cpu")
        .stages["stem"]
        .transform_input
    )
    # same result as torchvision's own ImageNet GoogLeNet on the same weights
    reference = torchvision.models.GoogLeNet(
        transform_input=True, aux_logits=True, init_weights=False
    )
    reference.load_state_dict(state)
    reference.eval()
    seen = {}
    reference.inception4e.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        reference(fx.preprocess(x))
    assert torch.allclose(fx.extract(x)["inception4"], seen["out"], atol=1e-4)


# ----------------------------------------------------------------------------- files


def test_safetensors_round_trip_with_metadata(tmp_path):
    model = backbones.build_model("resnet18", seed=5)
    path = tmp_path / "w" / "resnet18.safetensors"
    backbones.save_weights(model, path, "resnet18", metadata={"epochs": 3})
    assert os.listdir(path.parent) == ["resnet18.safetensors"]  # no temporary file left
    state, meta = backbones.load_weights_file(path)
    assert meta["backbone"] == "resnet18" and meta["epochs"] == 3 and len(meta["mean"]) == 3
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    fx = backbones.create("resnet18", weights=path, device="cpu")
    assert _trunk_equals(fx, model.state_dict())
    assert fx.weights_source == str(path.resolve())
    assert fx.weights_sha256 == backbones.file_sha256(path)
    again = backbones.build_model("resnet18", weights=str(path))
    assert torch.equal(again.fc.weight, model.fc.weight)


def test_saved_mean_and_std_are_used(tmp_path):
    path = tmp_path / "lenet.safetensors"
    backbones.save_weights(
        backbones.build_model("lenet5"), path, "lenet5", metadata={"mean": [0.13], "std": [0.31]}
    )
    fx = backbones.create("lenet5", weights=path, device="cpu")
    assert (fx.mean, fx.std) == ((0.13,), (0.31,))


def test_an_extractor_saves_its_trunk(tmp_path):
    fx = backbones.create("resnet18", weights="random", layers=["layer2"], seed=4, device="cpu")
    path = tmp_path / "trunk.safetensors"
    backbones.save_weights(fx, path, "resnet18")
    again = backbones.create("resnet18", weights=path, layers=["layer2"], device="cpu")
    assert _trunk_equals(again, fx.trunk_state_dict())
    with pytest.raises(BackboneError, match="tensors missing, e.g. layer3"):
        backbones.create("resnet18", weights=path, layers=["layer3"])


def test_pth_with_module_prefix_and_without_head(tmp_path):
    state = backbones.build_model("resnet18", seed=6).state_dict()
    path = tmp_path / "ddp.pth"
    torch.save({"module." + k: v for k, v in state.items() if not k.startswith("fc.")}, path)
    fx = backbones.create("resnet18", weights=path, device="cpu")
    assert _trunk_equals(fx, state)
    wrapped = tmp_path / "ckpt.pt"  # training-checkpoint layout, SSL projection head alongside
    torch.save(
        {
            "epoch": 3,
            "state_dict": {
                **{"backbone." + k: v for k, v in state.items()},
                "head.weight": torch.zeros(3),
            },
        },
        wrapped,
    )
    assert _trunk_equals(backbones.create("resnet18", weights=wrapped, device="cpu"), state)


def test_densenet_old_style_keys_load(tmp_path):
    state = backbones.build_model("densenet121", seed=2).state_dict()
    old = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v for k, v in state.items()}
    assert old.keys() != state.keys()
    path = tmp_path / "densenet.pth"
    torch.save(old, path)
    fx = backbones.create("densenet121", weights=path, layers=["denseblock2"], device="cpu")
    assert _trunk_equals(fx, state)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_corrupt_files_name_the_path(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    state = backbones.build_model("lenet5").state_dict()
    if suffix == ".pth":
        torch.save(state, good)
    else:
        backbones.save_weights(state, good, "lenet5")
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(good.read_bytes()[:-200])  # truncated
    with pytest.raises(BackboneError, match=str(bad)) as err:
        backbones.create("lenet5", weights=bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["notes.txt", "notes.safetensors", "notes.pth", "empty.pt"])
def test_foreign_files_name_the_path(tmp_path, name):
    path = tmp_path / name
    path.write_text("" if name.startswith("empty") else "these are not weights\n")
    with pytest.raises(BackboneError, match=f"{path}: not a weights file"):
        backbones.load_weights_file(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(BackboneError, match=f"{tmp_path / 'nope.pt'}: no such weights file"):
        backbones.create("resnet18", weights=tmp_path / "nope.pt")
    with pytest.raises(BackboneError, match=str(tmp_path)):
        backbones.load_weights_file(tmp_path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module, not a state dict
    with pytest.raises(BackboneError, match=f"{path}: not a plain tensor file"):
        backbones.load_weights_file(path)


def test_mismatched_state_dicts_name_the_path_and_keys(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    with pytest.raises(
        BackboneError,
        match=f"{path}: shapes do not fit resnet18: layer1.0.conv1.weight|"
        f"{path}: not resnet18 weights",
    ):
        backbones.create("resnet18", weights=path)
    partial = tmp_path / "partial.pth"
    state = torchvision.models.resnet18().state_dict()
    del state["layer1.0.conv1.weight"]
    torch.save(state, partial)
    with pytest.raises(
        BackboneError,
        match=f"{partial}: not resnet18 weights: 1 of .* missing, e.g. layer1.0.conv1.weight",
    ):
        backbones.create("resnet18", weights=partial)
    shapes = tmp_path / "shapes.pth"
    state = torchvision.models.resnet18().state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(state, shapes)
    with pytest.raises(
        BackboneError,
        match=f"{shapes}: shapes do not fit resnet18: "
        r"layer2.0.conv1.weight \(128, 64, 5, 5\)",
    ):
        backbones.create("resnet18", weights=shapes)


def test_weights_saved_for_another_backbone(tmp_path):
    path = tmp_path / "se.safetensors"
    backbones.save_weights(backbones.build_model("se_resnet18"), path, "se_resnet18")
    with pytest.raises(
        BackboneError, match=f"{path}: weights were saved for se_resnet18, not resnet18"
    ):
        backbones.create("resnet18", weights=path)


def test_save_weights_errors_leave_no_file(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(BackboneError, match="not JSON-serialisable"):
        backbones.save_weights(
            backbones.build_model("lenet5"), path, "lenet5", metadata={"when": object()}
        )
    with pytest.raises(BackboneError, match="unknown"):
        backbones.save_weights({}, path, "lenet6")
    assert os.listdir(tmp_path) == []


def test_path_source_from_config_checks_the_file_hash(tmp_path):
    path = tmp_path / "w.safetensors"
    backbones.save_weights(backbones.build_model("lenet5", seed=1), path, "lenet5")
    fx = backbones.create("lenet5", weights=path, device="cpu")
    FeatureExtractor.from_config(fx.config(), device="cpu")  # same file: fine
    backbones.save_weights(backbones.build_model("lenet5", seed=2), path, "lenet5")
    with pytest.raises(BackboneError, match="not the same weights"):
        FeatureExtractor.from_config(fx.config(), device="cpu")


def test_file_sha256(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    assert backbones.file_sha256(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
