"""Trust (issue 11): signed bundles, outputs that never replace inputs and honour the umask,
header-only reads."""
import os

import numpy as np
import pytest

import anomalib_lite as al
from anomalib_lite import AnomalyError, signing
from anomalib_lite.io import atomic_output, check_outputs


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    private, public = signing.generate_keys(d / "line.key")
    other, other_pub = signing.generate_keys(d / "other.key")
    return private, public, other_pub


@pytest.fixture
def fitted():
    x = np.random.default_rng(0).random((60, 5)).astype(np.float32)
    return al.LatentDistance(device="cpu").fit(x), x


def test_signed_bundle_verifies_and_every_changed_byte_is_refused(tmp_path, keys, fitted):
    private, public, other_pub = keys
    det, x = fitted
    path = tmp_path / "m.anomaly"
    det.save(path, sign=private)
    assert np.array_equal(al.load(path, verify=public).score(x), det.score(x))
    assert al.read_header(path, verify=public)["detector"] == "LatentDistance"
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    for pos in (20, header_end - 1, header_end + 3, len(data) - 1):  # header, padding, tensors
        bad = bytearray(data)
        bad[pos] ^= 0x01 if data[pos] != 0x20 else 0x00  # also a space in the padding -> tab below
        if data[pos] == 0x20:
            bad[pos] = 0x09
        (tmp_path / "bad.anomaly").write_bytes(bytes(bad))
        with pytest.raises(AnomalyError, match="bad signature|not a readable|malformed|not signed"):
            al.load(tmp_path / "bad.anomaly", verify=public)
    with pytest.raises(AnomalyError, match="bad signature"):
        al.load(path, verify=other_pub)


def test_unsigned_bundle_is_refused_when_verification_is_asked(tmp_path, keys, fitted, monkeypatch):
    private, public, _ = keys
    det, x = fitted
    det.save(tmp_path / "plain.anomaly")
    with pytest.raises(AnomalyError, match="not signed, and verification was asked for"):
        al.load(tmp_path / "plain.anomaly", verify=public)
    monkeypatch.setenv("ANOMALY_VERIFY_KEY", str(public))  # a production line sets it once
    with pytest.raises(AnomalyError, match="not signed"):
        al.load(tmp_path / "plain.anomaly")
    det.save(tmp_path / "signed.anomaly", sign=private)
    assert al.load(tmp_path / "signed.anomaly").n_seen_ == 60


def test_key_files(tmp_path, keys):
    private, public, _ = keys
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(AnomalyError, match="junk.pem: not an unencrypted PEM private key"):
        signing.load_private_key(tmp_path / "junk.pem")
    with pytest.raises(AnomalyError, match="junk.pem: not a PEM public key"):
        signing.load_public_key(tmp_path / "junk.pem")
    with pytest.raises(AnomalyError, match="missing.pub: public key not found"):
        signing.load_public_key(tmp_path / "missing.pub")
    with pytest.raises(AnomalyError, match="not an unencrypted PEM private key"):
        signing.load_private_key(public)  # a public key cannot sign


def test_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_output(tmp_path / "a.csv") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "a.csv").stat().st_mode & 0o777) == "0o640"
    os.umask(0o022)
    try:
        with atomic_output(tmp_path / "b.csv") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "b.csv").stat().st_mode & 0o777) == "0o644"


def test_outputs_never_replace_inputs(tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((3, 2)))
    with pytest.raises(AnomalyError, match="x.npy: the bundle would overwrite the input"):
        check_outputs({"bundle": data}, [data])
    link = tmp_path / "link.npy"
    link.symlink_to(data)
    with pytest.raises(AnomalyError, match="would overwrite the input"):
        check_outputs({"scores": link}, [data])
    folder = tmp_path / "images"
    (folder / "good").mkdir(parents=True)
    with pytest.raises(AnomalyError, match="holds or overlaps the input"):
        check_outputs({}, [folder], folders=[folder / "good"])
    with pytest.raises(AnomalyError, match="holds or overlaps the input"):
        check_outputs({}, [data], folders=[tmp_path])  # heatmaps named like x.png beside x.npy
    with pytest.raises(AnomalyError, match="given as both the scores and the report"):
        check_outputs({"scores": tmp_path / "o", "report": tmp_path / "o"}, [])
    check_outputs({"scores": tmp_path / "s.csv", "stdout": "-"}, [data], folders=[tmp_path / "maps"])


def test_read_header_reads_no_tensor_and_bad_paths_are_one_error(tmp_path, fitted, monkeypatch):
    det, _ = fitted
    det.save(tmp_path / "m.anomaly")
    from safetensors import safe_open as real_open

    from anomalib_lite import bundle

    class NoTensors:
        def __init__(self, *a, **k):
            self.handle = real_open(*a, **k)

        def __enter__(self):
            self.inner = self.handle.__enter__()
            return self

        def __exit__(self, *a):
            return self.handle.__exit__(*a)

        def metadata(self):
            return self.inner.metadata()

        def keys(self):
            return self.inner.keys()

        def get_tensor(self, name):
            raise AssertionError("read_header loaded a tensor")

    monkeypatch.setattr(bundle, "safe_open", NoTensors)
    assert al.read_header(tmp_path / "m.anomaly")["n_seen"] == 60
    for bad in (None, 3, ""):
        with pytest.raises(AnomalyError, match="bundle path: expected a file name"):
            al.load(bad)
    fifo = tmp_path / "pipe.anomaly"
    os.mkfifo(fifo)
    with pytest.raises(AnomalyError, match="not a regular file"):
        al.load(fifo)
