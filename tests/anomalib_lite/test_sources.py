import numpy as np
import pytest
from PIL import Image

from anomalib_lite import AnomalyError, iter_batches, load_data


def test_mnist_class_selection_and_anomaly_labels(mnist_dir):
    train = load_data("mnist:train?classes=0,1")
    assert set(np.unique(train.targets)) == {0, 1}
    assert train.normal_names == ["0", "1"]
    assert 12000 < len(train) < 14000
    test = load_data("mnist:test?limit=500")
    labels = test.anomaly_labels(["7"])
    assert labels.sum() == (test.targets != 7).sum() and len(labels) == 500
    first = next(iter_batches(test, batch_size=16))
    assert first.x.shape == (16, 1, 28, 28) and 0.99 < float(first.x.max()) <= 1.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("mnist:train?classes=11", "class '11' not found; classes are: 0, 1"),
        ("mnist:valid", "unknown MNIST split"),
        ("mnist:test?colour=red", "unknown option 'colour'"),
        ("mnist:test?limit=-3", "limit '-3'"),
        ("imagenet:val", "unknown data scheme 'imagenet:'"),
        ("no/such/file.npy", "does not exist"),
        ("", "data spec '' names no data"),  # not the current folder (an unset variable in a script)
        ("?size=32", "data spec '\\?size=32' names no data"),
    ],
)
def test_bad_specs_name_the_problem(mnist_dir, spec, message):
    with pytest.raises(AnomalyError, match=message):
        load_data(spec)


def test_a_folder_named_like_a_csv_is_said_to_be_a_folder(tmp_path):
    (tmp_path / "log.csv").mkdir()
    with pytest.raises(AnomalyError, match="log.csv' is a folder, not a CSV file"):
        load_data(str(tmp_path / "log.csv"))


def test_missing_mnist_without_download_says_how_to_get_it(tmp_path):
    with pytest.raises(AnomalyError, match="MNIST not found in .*--download"):
        load_data("mnist:test", data_dir=tmp_path)


def test_a_failed_download_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    import urllib.error

    import torchvision

    import socket

    def offline(self):  # what torchvision's download raises without a network; nothing is fetched
        raise urllib.error.URLError("network is unreachable")

    def no_network(*args, **kwargs):  # and should any other path try to connect, it fails here
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(AnomalyError, match="download to .* failed .*ANOMALY_DATA_DIR=DIR or pass --data-dir DIR"):
        load_data("mnist:test", data_dir=tmp_path, download=True)


def _write_folder(root, sizes=((16, 16),) * 2):
    for cls, value in (("good", 40), ("scratch", 200)):
        (root / cls).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            Image.fromarray(np.full((h, w), value + i, np.uint8)).save(root / cls / f"{i}.png")


def test_image_folder_labels_good_as_normal(tmp_path):
    _write_folder(tmp_path)
    src = load_data(str(tmp_path))
    assert src.class_names == ["good", "scratch"] and src.normal_names == ["good"]
    assert src.anomaly_labels().tolist() == [0, 0, 1, 1]
    (b,) = list(iter_batches(src))
    assert b.x.shape == (4, 1, 16, 16)
    assert abs(float(b.x[0].mean()) - 40 / 255) < 1e-6
    only_good = load_data(f"{tmp_path}?classes=good")
    assert len(only_good) == 2 and only_good.describe()["classes"] == ["good"]


def test_image_folder_ok_ng_labels_and_a_bundle_fitted_on_good(tmp_path):
    """BTAD's and the inspection line's ok/ng are labelled like MVTec's good/defect, also against
    the classes of a bundle fitted on ``train/good`` (which the test folder does not have)."""
    for cls, value in (("ng", 200), ("ok", 40)):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(tmp_path / cls / "0.png")
    src = load_data(str(tmp_path))
    assert src.normal_names == ["ok"]
    assert src.anomaly_labels().tolist() == [1, 0] and src.anomaly_labels(["good"]).tolist() == [1, 0]
    assert src.anomaly_labels(["ng"]).tolist() == [0, 1]  # a fitted class the data has wins


def test_image_folder_with_mixed_sizes_needs_size_option(tmp_path):
    _write_folder(tmp_path, sizes=((16, 16), (20, 12)))
    with pytest.raises(AnomalyError, match=r"images differ in size .*\?size="):
        load_data(str(tmp_path))
    (b,) = list(iter_batches(load_data(f"{tmp_path}?size=8x10")))
    assert b.x.shape == (4, 1, 8, 10)


def test_corrupt_image_is_named(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(AnomalyError, match="broken.png: cannot read image"):
        list(iter_batches(load_data(str(tmp_path))))


def test_npz_with_labels_and_npy(tmp_path):
    x = np.random.default_rng(0).random((6, 5)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 0, 0, 1, 1, 0]))
    src = load_data(str(tmp_path / "d.npz") + "?classes=0")
    assert len(src) == 4 and src.describe()["classes"] == ["0"]
    full = load_data(str(tmp_path / "d.npz"))
    assert full.anomaly_labels(["0"]).tolist() == [0, 0, 0, 1, 1, 0]
    np.save(tmp_path / "d.npy", x)
    (b,) = list(iter_batches(load_data(str(tmp_path / "d.npy"))))
    assert np.allclose(b.x.numpy(), x)
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(AnomalyError, match="bad.npy: cannot read array file"):
        load_data(str(tmp_path / "bad.npy"))


def test_split_is_seeded_and_disjoint(mnist_dir):
    src = load_data("mnist:test?limit=100")
    a, b = src.split(0.2, seed=3)
    a2, b2 = src.split(0.2, seed=3)
    assert len(a) == 80 and len(b) == 20
    assert np.array_equal(a.x, a2.x) and np.array_equal(b.targets, b2.targets)
    both = np.concatenate([a.x, b.x]).reshape(100, -1)
    assert len(np.unique(both, axis=0)) == len(np.unique(src.x.reshape(100, -1), axis=0))
