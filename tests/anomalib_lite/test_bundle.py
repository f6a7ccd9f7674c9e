import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import anomalib_lite as al
from anomalib_lite import AnomalyError, LatentDistance


@pytest.fixture
def images(shapes_images):
    return shapes_images(80, False), shapes_images(10, True)


@pytest.mark.parametrize(
    "params",
    [
        {"method": "knn"},
        {"method": "gaussian"},
        {"method": "knn", "backbone": "resnet18", "weights": "random", "image_size": 32},
    ],
    ids=["knn", "gaussian", "resnet18-random"],
)
def test_round_trip_scores_identically(tmp_path, images, params):
    normal, defective = images
    det = LatentDistance(device="cpu", patch_size=3, **params).fit(normal[:60]).calibrate(normal[60:], fpr=0.1)
    det.save(tmp_path / "m.anomaly")
    back = al.load(tmp_path / "m.anomaly")
    assert type(back) is LatentDistance and back.get_params() == det.get_params()
    assert np.array_equal(back.decision_function(defective), det.decision_function(defective))
    assert np.array_equal(back.score_map(defective), det.score_map(defective))
    assert back.threshold_ == det.threshold_
    assert np.array_equal(back.predict(defective), det.predict(defective))
    assert np.array_equal(back.p_values(back.decision_function(normal)), det.p_values(det.decision_function(normal)))
    # loaded bundles keep learning like the original
    det.partial_fit(defective)
    back.partial_fit(defective)
    assert np.allclose(back.decision_function(normal), det.decision_function(normal))


def test_stored_statistics_precision_has_the_layout_a_reload_gives(images):
    """The image statistics' precision is used as stored: a column-major copy (LAPACK's output)
    would multiply by another BLAS path than the row-major one a bundle reloads, and on some CPUs
    (seen on an AMD EPYC) score the calibration images one ulp apart after a reload."""
    normal, _ = images
    det = LatentDistance(device="cpu", patch_size=3).fit(normal[:60])
    precision = det.bank_.get("stats_precision")
    assert precision is not None and precision.is_contiguous()



def test_header_records_what_a_user_needs(tmp_path, images, mnist_dir):
    src = al.load_data("mnist:train?classes=4&limit=200")
    det = LatentDistance(backbone="resnet18", weights="random", image_size=32, device="cpu")
    det.fit(src).calibrate(al.load_data("mnist:test?classes=4&limit=100"))
    det.save(tmp_path / "m.anomaly")
    h = al.read_header(tmp_path / "m.anomaly")
    assert h["detector"] == "LatentDistance" and h["format_version"] == 2
    backbone = h["fitted"]["backbone_"]
    assert h["params"]["backbone"] == "resnet18" and backbone["name"] == "resnet18"
    assert backbone["weights_source"] == "random" and backbone["image_size"] == [32, 32] and backbone["mean"]
    assert h["normal_classes"] == ["4"] and h["fitted"]["threshold_"] == det.threshold_
    assert {"torch", "anomalib_lite", "numpy"} <= set(h["versions"])
    assert h["fitted"]["input_shape_"] == [1, 28, 28] and "patch bank" in h["summary"]


def test_imagenet_backbone_is_referenced_by_hash_not_embedded(tmp_path, images, monkeypatch):
    import torchvision

    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), ckpt / "resnet18-f37072fd.pth")
    normal, defective = images
    det = LatentDistance(backbone="resnet18", weights="imagenet", image_size=32, device="cpu").fit(normal)
    det.save(tmp_path / "m.anomaly")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.anomaly"), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("backbone.")]  # noqa: SIM118  # they stay in the cache
    assert np.array_equal(al.load(tmp_path / "m.anomaly").decision_function(defective), det.decision_function(defective))
    torch.save(torchvision.models.resnet18().state_dict(), ckpt / "resnet18-f37072fd.pth")
    with pytest.raises(AnomalyError, match="hash|sha256"):
        al.load(tmp_path / "m.anomaly")


def _saved(tmp_path, images):
    det = LatentDistance(device="cpu").fit(images[0])
    det.save(tmp_path / "m.anomaly")
    return tmp_path / "m.anomaly"


def test_truncated_bundle(tmp_path, images):
    path = _saved(tmp_path, images)
    data = path.read_bytes()
    for cut in (len(data) // 2, 20, 3):
        path.write_bytes(data[:cut])
        with pytest.raises(AnomalyError, match="m.anomaly: not a readable bundle"):
            al.load(path)


def test_tampered_tensor_bytes(tmp_path, images):
    path = _saved(tmp_path, images)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AnomalyError, match="checksum mismatch"):
        al.load(path)


def test_tampered_header(tmp_path, images):
    path = _saved(tmp_path, images)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        header = json.loads(f.metadata()["anomalib_lite"])
    header["params"]["k"] = 1
    save_file(tensors, str(path), metadata={"anomalib_lite": json.dumps(header)})
    with pytest.raises(AnomalyError, match="checksum mismatch"):
        al.load(path)


def test_foreign_and_pickled_files_are_refused_without_running_them(tmp_path):
    foreign = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(AnomalyError, match="not an anomalib_lite bundle"):
        al.load(foreign)

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.anomaly"
    evil.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(AnomalyError, match="not a readable bundle"):
        al.load(evil)
    assert not (tmp_path / "pwned").exists()
    text = tmp_path / "notes.anomaly"
    text.write_text("hello")
    with pytest.raises(AnomalyError, match="not a readable bundle"):
        al.load(text)
    with pytest.raises(AnomalyError, match="bundle not found"):
        al.load(tmp_path / "missing.anomaly")


def test_failed_save_leaves_nothing(tmp_path, images, monkeypatch):
    det = LatentDistance(device="cpu").fit(images[0])
    from pathlib import Path

    def broken(self, data):
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(OSError):
        det.save(tmp_path / "m.anomaly")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AnomalyError, match="does not exist"):
        LatentDistance(device="cpu").fit(images[0]).save(tmp_path / "nope" / "m.anomaly")
