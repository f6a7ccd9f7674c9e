"""`anomaly fit --data` with no detector named: the documented best route for the data's kind."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import anomalib_lite as al
from anomalib_lite.data import sample_data
from anomalib_lite.app import workflows
from cli import cli


def _anomaly(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    sample_data.make_image_set(root, categories=["brick"], defects=["hole", "blur"], size=48, n_train=40, n_good=8,
                               n_per_defect=8, seed=2)
    return root / "brick"


def test_images_offline_get_the_dense_route_and_its_maps_find_defects(parts, tmp_path, monkeypatch):
    import backbones

    monkeypatch.setattr(backbones.weights, "imagenet_cached", lambda name: False)
    out = tmp_path / "m.anomaly"
    res = _anomaly("fit", "--data", parts / "train", "-o", out, "--fpr", 0.05, "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    line = res.output
    assert "chose the route for images, offline" in line and "cross-fitting on all 40 samples" in line
    det = al.load(out)
    assert type(det).__name__ == "LatentDistance" and det.get_params()["pretrain"] == "segment"
    assert det.data_info_["route"].startswith("images, offline: ")
    info = _anomaly("info", out)
    assert info.exit_code == 0 and "route: images, offline: " in info.output
    test = al.load_data(str(parts / "test"))
    labels = np.asarray(test.anomaly_labels())
    names = np.array([test.name(i).split("/")[0] for i in range(len(test))])
    scores = det.decision_function(test)
    holes = names == "hole"
    assert scores[holes].mean() > scores[labels == 0].max()  # planted holes rank above every good part
    maps, masks = det.score_map(test), test.read_masks(np.arange(len(test)))
    peaks = [masks[i].reshape(-1)[maps[i].argmax()] for i in np.flatnonzero(holes)]
    assert np.mean(peaks) >= 0.75  # the map peaks on the defect


def test_imagenet_weights_in_the_cache_give_patchcore_and_vectors_and_series_their_routes(monkeypatch, tmp_path):
    import backbones

    monkeypatch.setattr(backbones.weights, "imagenet_cached", lambda name: name == "wide_resnet50_2")
    images = al.load_data(str(_npy(tmp_path / "i.npy", (12, 1, 32, 32))))
    det, route = workflows.choose_detector(images)
    assert route == "images, ImageNet weights cached" and det.backbone == "wide_resnet50_2"
    det, route = workflows.choose_detector(al.load_data(str(_npy(tmp_path / "v.npy", (12, 5)))))
    assert route == "vectors" and det.backbone is None


def test_a_series_gets_the_nab_route(tmp_path):
    t = np.arange(700)
    x = np.sin(2 * np.pi * t / 50) + 0.05 * np.random.default_rng(0).normal(size=len(t))
    path = tmp_path / "s.csv"
    path.write_text("timestamp,value\n" + "".join(f"{i},{v:.5f}\n" for i, v in enumerate(x)))
    res = _anomaly("fit", "--data", path, "-o", tmp_path / "s.anomaly", "--device", "cpu", "-q")
    assert res.exit_code == 0 and "chose the route for series" in res.output, res.output
    assert type(al.load(tmp_path / "s.anomaly")).__name__ == "Continuation"


def _npy(path, shape):
    np.save(path, np.random.default_rng(0).random(shape).astype("float32"))
    return path


def test_fit_with_neither_a_detector_nor_data_is_one_usage_error(tmp_path):
    res = _anomaly("fit")
    assert res.exit_code == 2 and "name a detector" in res.output
    res = _anomaly("fit", "--data", tmp_path, "latent", "-o", tmp_path / "m.anomaly")
    assert res.exit_code == 2 and "after the detector's name" in res.output
    assert not list(tmp_path.iterdir())
