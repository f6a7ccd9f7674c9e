"""Trust (issue 11): signed bundles, outputs that never replace inputs and honour the umask,
header-only reads."""
import os

import numpy as np
import pytest

import anomalib_lite as al
from anomalib_lite import AnomalyError
from anomalib_lite.bundles import signing
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
    assert np.array_equal(al.load(path, verify=public).decision_function(x), det.decision_function(x))
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
    from anomalib_lite.bundles import bundle

    def no_tensors(data):
        raise AssertionError("read_header loaded the tensors")

    from anomalib_lite.bundles import header

    monkeypatch.setattr(bundle, "load_bytes", no_tensors)
    reads = []
    real = header._read_bytes
    monkeypatch.setattr(header, "_read_bytes", lambda path, whole: reads.append(real(path, whole)) or reads[-1])
    assert al.read_header(tmp_path / "m.anomaly")["fitted"]["n_seen_"] == 60
    assert len(reads) == 1 and len(reads[0]) < (tmp_path / "m.anomaly").stat().st_size  # the header's bytes only
    for bad in (None, 3, ""):
        with pytest.raises(AnomalyError, match="bundle path: expected a file name"):
            al.load(bad)
    fifo = tmp_path / "pipe.anomaly"
    os.mkfifo(fifo)
    with pytest.raises(AnomalyError, match="not a regular file, so not a bundle"):
        al.load(fifo)
    with pytest.raises(AnomalyError, match="is a folder, not a bundle"):  # (os.fdopen refused it with its own error)
        al.load(tmp_path)
    with pytest.raises(AnomalyError, match="is a folder, not a bundle"):
        al.read_header(tmp_path)
    from anomalib_lite.bundles import signing

    with pytest.raises(AnomalyError, match="is a folder, not a public key"):  # key files read the same way
        signing.load_public_key(tmp_path)


# ---------------------------------------------------------------- images of every kind

def _png_claiming(path, width, height):
    """A PNG whose header claims width x height (PIL refuses it before decoding anything)."""
    import struct
    import zlib

    from PIL import Image

    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def test_hostile_and_unusual_images_are_read_right_or_refused_in_one_line(tmp_path):
    from PIL import Image

    from anomalib_lite.data.batches import iter_batches

    bomb = tmp_path / "bomb" / "x.png"
    bomb.parent.mkdir()
    _png_claiming(bomb, 100000, 100000)
    with pytest.raises(AnomalyError, match=r"x.png: refused: .*decompression bomb"):
        al.load_data(str(bomb))
    cut = tmp_path / "cut"
    cut.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(cut / "a.png")
    data = (cut / "a.png").read_bytes()
    (cut / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(AnomalyError, match="a.png: cannot read image .*truncated"):
        list(iter_batches(al.load_data(str(cut))))

    kinds = tmp_path / "kinds"
    kinds.mkdir()
    wide = (np.arange(16 * 16).reshape(16, 16) * 250).astype(np.uint16)  # 16-bit grey, up to 63,750
    Image.fromarray(wide).save(kinds / "wide.png")
    (b,) = list(iter_batches(al.load_data(str(kinds / "wide.png"))))
    assert b.x.dtype.is_floating_point and np.allclose(b.x[0, 0].numpy(), wide / 65535.0, atol=1e-6)

    pal = Image.new("P", (16, 16))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    pal.putpixel((3, 2), 1)
    pal.save(kinds / "pal.png")
    (b,) = list(iter_batches(al.load_data(str(kinds / "pal.png"))))
    assert b.x.shape == (1, 3, 16, 16) and b.x[0, :, 2, 3].tolist() == [1.0, 0.0, 0.0]

    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(kinds / "cmyk.jpg", quality=100)
    (b,) = list(iter_batches(al.load_data(str(kinds / "cmyk.jpg"))))
    assert b.x.shape == (1, 3, 16, 16) and b.x[0, 0].mean() > 0.9 and b.x[0, 1].mean() < 0.1  # red

    tall = np.zeros((20, 10), np.uint8)
    tall[0, :] = 255  # the top row of the picture as seen
    img = Image.fromarray(tall.T.copy()[::-1])  # stored turned: 10 high, 20 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(kinds / "turned.jpg", exif=exif, quality=100)
    src = al.load_data(str(kinds / "turned.jpg"))
    (b,) = list(iter_batches(src))
    assert src.size == (20, 10) and b.x.shape == (1, 1, 20, 10)
    assert b.x[0, 0, 0].mean() > 0.8 and b.x[0, 0, 1:].mean() < 0.2  # the bright row is on top
