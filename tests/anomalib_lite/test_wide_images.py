"""Images of more than 8 bits: 32-bit float TIFFs (depth maps, thermal images) and 16-bit ones
with fewer bits used (a 12-bit camera), read through ``?range=LO,HI``, the values read as black
and white; the bundle reads the files it scores with the range it was fitted with. TIFFs PIL
cannot read whole (three float channels: MVTec 3D-AD's point clouds; 64-bit floats) come
through tifffile the same way."""
import csv

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import anomalib_lite as al
from anomalib_lite import AnomalyError
from anomalib_lite.data.batches import iter_batches
from cli import cli


def _float_tiffs(folder, n=12, hot=(), seed=0, level=400.0):
    """Depth-map-like float32 TIFFs around ``level`` (mm); ``hot``: indices with a raised patch."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        a = (level + 5.0 * rng.normal(size=(24, 24))).astype(np.float32)
        if i in hot:
            a[8:16, 8:16] += 60.0
        Image.fromarray(a, mode="F").save(folder / f"{i:02d}.tif")
    return folder


def _one(spec):
    (b,) = list(iter_batches(al.load_data(spec)))
    return b.x[0, 0].numpy()


def test_a_float_image_in_0_1_is_read_as_it_is_and_one_outside_needs_a_range(tmp_path):
    unit = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    assert np.allclose(_one(str(tmp_path / "unit.tif")), unit, atol=1e-7)

    depth = (300.0 + 200.0 * unit).astype(np.float32)  # 300..500 mm
    Image.fromarray(depth, mode="F").save(tmp_path / "depth.tif")
    with pytest.raises(AnomalyError, match=r"depth.tif: a 32-bit float image with values in \[300, 500\], not "
                                           r"\[0, 1\]: add \?range=LO,HI .* \(this one's: \?range=300,500\)") as e:
        _one(str(tmp_path / "depth.tif"))
    assert str(e.value).startswith(str(tmp_path / "depth.tif")) and "cannot read" not in str(e.value)  # one line
    assert np.allclose(_one(f"{tmp_path / 'depth.tif'}?range=300,500"), unit, atol=1e-6)
    clipped = _one(f"{tmp_path / 'depth.tif'}?range=350,450")  # outside the range: black or white
    assert clipped.min() == 0.0 and clipped.max() == 1.0 and np.allclose(clipped[8], np.clip((depth[8] - 350) / 100, 0, 1),
                                                                            atol=1e-6)


def test_a_12_bit_image_in_a_16_bit_file_takes_its_full_scale_from_a_range(tmp_path):
    twelve = (np.arange(16 * 16).reshape(16, 16) * 16).astype(np.uint16)  # up to 4,080 of 4,095
    Image.fromarray(twelve).save(tmp_path / "cam.png")
    assert _one(str(tmp_path / "cam.png")).max() < 0.07  # 0..65535 by default: a dim image
    assert np.allclose(_one(f"{tmp_path / 'cam.png'}?range=0,4095"), twelve / 4095.0, atol=1e-6)


@pytest.mark.parametrize("spec, message", [
    ("nan.tif", "nan.tif: 3 pixels are NaN or infinite"),
    ("eight.png?range=0,100", r"range= applies to 16-bit and 32-bit float images; these are 8-bit \(L\)"),
    ("unit.tif?range=1,0", "range '1,0' is not LO,HI"),
    ("unit.tif?range=a,b", "range 'a,b' is not LO,HI"),
    ("x.npy?range=0,1", "range= applies to image files only"),
    ("s.csv?range=0,1", "range= applies to images only"),
])
def test_bad_wide_image_input_is_one_error(tmp_path, spec, message):
    a = np.zeros((8, 8), np.float32)
    a[0, :3] = np.nan
    Image.fromarray(a, mode="F").save(tmp_path / "nan.tif")
    Image.fromarray(np.zeros((8, 8), np.float32), mode="F").save(tmp_path / "unit.tif")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "eight.png")
    np.save(tmp_path / "x.npy", np.zeros((4, 3), np.float32))
    (tmp_path / "s.csv").write_text("value\n" + "1\n" * 50)
    with pytest.raises(AnomalyError, match=message) as e:
        _one(str(tmp_path / spec))
    assert "cannot read" not in str(e.value)


def test_float_tiffs_fit_and_score_through_the_command_with_the_fitted_range(tmp_path):
    """Fitted with ?range=, the bundle scores float files read the same way without being told;
    parts with a raised patch rank above every normal one."""
    train = _float_tiffs(tmp_path / "train", n=16)
    test = _float_tiffs(tmp_path / "test", n=12, hot=(3, 7, 9), seed=1)
    bundle = tmp_path / "d.anomaly"
    r = CliRunner().invoke(cli, ["fit", "latent", "--data", f"{train}?range=300,500", "--backbone", "none",
                                 "--image-score", "pooled", "-o", str(bundle), "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["score", str(bundle), "--data", str(test), "-o", str(tmp_path / "s.csv")])
    assert r.exit_code == 0, r.output
    scores = {row["path"]: float(row["score"]) for row in csv.DictReader((tmp_path / "s.csv").open())}
    hot = [scores[f"{i:02d}.tif"] for i in (3, 7, 9)]
    normal = [s for name, s in scores.items() if int(name[:2]) not in (3, 7, 9)]
    assert min(hot) > max(normal)
    det = al.load(bundle)
    api = det.decision_function(al.load_data(f"{test}?range=300,500"))
    assert np.allclose(sorted(api), sorted(scores.values()), rtol=1e-4)


def _xyz_tiffs(folder, n=12, hot=(), seed=0):
    """Point-cloud-like TIFFs of three float channels (x and y in m across the part, z its depth
    around 0.5 m), as MVTec 3D-AD writes them; ``hot``: indices with a raised patch in z."""
    tifffile = pytest.importorskip("tifffile")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-0.1, 0.1, 24), np.linspace(-0.1, 0.1, 24))
    for i in range(n):
        z = 0.5 + 0.005 * rng.normal(size=(24, 24))
        if i in hot:
            z[8:16, 8:16] += 0.06
        tifffile.imwrite(folder / f"{i:02d}.tiff", np.stack([x, y, z], -1).astype(np.float32), photometric="rgb")
    return folder


def test_three_float_channels_and_64_bit_floats_are_read_by_tifffile(tmp_path):
    """PIL cannot open either ("cannot read image" before); each channel is mapped by ?range= and
    resized on its own; planar files (channels first), and channels written as pages of their
    own, read as interleaved ones."""
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-0.1, 0.6, size=(20, 30, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "xyz.tiff", xyz, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(xyz, -1, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "pages.tif", np.moveaxis(xyz, -1, 0), photometric="minisblack")  # a page each
    for name in ("xyz.tiff", "planar.tif", "pages.tif"):
        source = al.load_data(f"{tmp_path / name}?range=-0.1,0.6")
        assert source.mode == "RGB" and source.size == (20, 30)
        (b,) = list(iter_batches(source))
        assert np.allclose(b.x[0].numpy(), np.moveaxis((xyz + 0.1) / 0.7, -1, 0), atol=1e-6)
    (b,) = list(iter_batches(al.load_data(f"{tmp_path / 'xyz.tiff'}?range=-0.1,0.6&size=10x15")))
    assert b.x.shape == (1, 3, 10, 15) and 0.0 <= float(b.x.min()) and float(b.x.max()) <= 1.0
    d64 = rng.uniform(0, 1, size=(12, 12))
    tifffile.imwrite(tmp_path / "d64.tiff", d64)
    assert np.allclose(_one(str(tmp_path / "d64.tiff")), d64, atol=1e-6)


@pytest.mark.parametrize("spec, message", [
    ("xyz.tiff", r"xyz.tiff: a 32-bit float image with values in \[-0.1, 0.6\], not \[0, 1\]: add \?range=LO,HI"),
    ("xyz.tiff?range=-0.1,0.6&channels=1", "xyz.tiff: an image of three float channels, read as grey"),
    ("four.tiff", "four.tiff: a float TIFF of shape 8x8x4; images of one or three channels are read"),
    ("xyz_nan.tiff?range=0,1", "xyz_nan.tiff: 2 pixels are NaN or infinite"),
    ("stack.tiff", "stack.tiff: a float TIFF of shape 5x8x8; images of one or three channels are read"),  # (PIL: page 1)
    ("big.tiff", r"big.tiff: refused: 4,096 pixels, more than 200 \(PIL's limit against decompression bombs"),
    ("junk.tiff", r"junk.tiff: cannot read image \(cannot identify image file"),
])
def test_bad_float_tiffs_are_one_error(tmp_path, spec, message, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    xyz = np.zeros((8, 8, 3), np.float32)
    xyz[0, 0], xyz[-1, -1] = (-0.1, 0.0, 0.6), (0.2, 0.1, 0.5)
    tifffile.imwrite(tmp_path / "xyz.tiff", xyz, photometric="rgb")
    tifffile.imwrite(tmp_path / "four.tiff", np.zeros((8, 8, 4), np.float32), photometric="minisblack",
                     planarconfig="contig")
    xyz[2, 3, 2] = xyz[4, 4, 0] = np.nan
    tifffile.imwrite(tmp_path / "xyz_nan.tiff", xyz, photometric="rgb")
    tifffile.imwrite(tmp_path / "stack.tiff", np.zeros((5, 8, 8), np.float32), photometric="minisblack")
    tifffile.imwrite(tmp_path / "big.tiff", np.zeros((64, 64, 3), np.float32), photometric="rgb")
    (tmp_path / "junk.tiff").write_bytes(b"II*\x00" + bytes(range(256)) * 4)  # a TIFF header, then nothing valid
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # (the bomb bound, made small)
    with pytest.raises(AnomalyError, match=message):
        _one(str(tmp_path / spec))


def test_point_clouds_fit_and_score_through_the_command(tmp_path):
    """MVTec 3D-AD-like xyz TIFFs: fitted with ?range=, scored without it; a raised patch in
    depth ranks above every normal part, and the command's scores are the API's."""
    train = _xyz_tiffs(tmp_path / "train", n=16)
    test = _xyz_tiffs(tmp_path / "test", n=12, hot=(2, 5, 10), seed=1)
    bundle = tmp_path / "pc.anomaly"
    r = CliRunner().invoke(cli, ["fit", "latent", "--data", f"{train}?range=-0.1,0.6", "--backbone", "none",
                                 "-o", str(bundle), "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["score", str(bundle), "--data", str(test), "-o", str(tmp_path / "s.csv")])
    assert r.exit_code == 0, r.output
    scores = {row["path"]: float(row["score"]) for row in csv.DictReader((tmp_path / "s.csv").open())}
    hot = [scores[f"{i:02d}.tiff"] for i in (2, 5, 10)]
    assert min(hot) > max(s for name, s in scores.items() if int(name[:2]) not in (2, 5, 10))
    api = al.load(bundle).decision_function(al.load_data(f"{test}?range=-0.1,0.6"))
    assert np.allclose(sorted(api), sorted(scores.values()), rtol=1e-4)
