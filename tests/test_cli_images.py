"""The `anomaly` command on real-size image folders (issue 10): MVTec layout, one image, globs,
tiles, paths in every output."""
import csv
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli

sys.path.insert(0, str(Path(__file__).resolve().parent / "anomalib_lite"))
from test_real_size import _mvtec  # noqa: E402


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvtec")
    cat = _mvtec(root, np.random.default_rng(5), n_train=30, n_good=6, n_bad=4)
    out = root / "tex.anomaly"
    r = run("fit", "latent", "--data", cat / "train", "--holdout", "0.2", "--fpr", "0.1", "-o", out)
    assert r.exit_code == 0, r.output
    assert "patch bank" in r.output and "MB)" in r.output
    return cat, out


def test_evaluate_mvtec_prints_pixel_figures_and_a_table_per_defect(fitted, tmp_path):
    cat, bundle = fitted
    r = run("evaluate", bundle, "--data", cat / "test", "--report", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    assert "pixel ROC-AUC" in r.output and "PRO (to FPR 0.3)" in r.output
    assert "per class" in r.output and "\nspot " in r.output


def test_score_one_image_prints_one_line(fitted):
    cat, bundle = fitted
    r = run("score", bundle, "--data", cat / "test" / "spot" / "001.png")
    assert r.exit_code == 0, r.output
    (line,) = r.output.strip().splitlines()
    assert line.startswith("001.png: score ") and "p-value" in line and "threshold" in line


def test_score_a_glob_writes_paths_and_named_heatmaps(fitted, tmp_path):
    cat, bundle = fitted
    out, maps = tmp_path / "s.csv", tmp_path / "maps"
    r = run("score", bundle, "--data", f"{cat / 'test'}/*/00[0-2].png", "-o", out, "--maps", maps)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert [row["path"] for row in rows] == ["good/000.png", "good/001.png", "good/002.png",
                                             "spot/000.png", "spot/001.png", "spot/002.png"]
    assert sorted(p.relative_to(maps).as_posix() for p in maps.rglob("*.png")) == [row["path"] for row in rows]


def test_tiles_from_the_command_line(fitted, tmp_path):
    cat, bundle = fitted
    out = tmp_path / "tiles.anomaly"
    r = run("fit", "latent", "--data", f"{cat / 'train'}?tile=32&overlap=0.5", "--holdout", "0.2", "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    r = run("score", out, "--data", cat / "test", "-o", tmp_path / "s.csv")  # 48 px images, 32 px tiles
    assert r.exit_code == 0, r.output
    r = run("info", out)
    assert "tile: 32" in r.output
    r = run("score", out, "--data", f"{cat / 'test'}?tile=64", "-o", tmp_path / "t.csv")
    assert r.exit_code == 2 and "smaller than the 64 px tile" in r.output


def test_score_reads_files_at_the_size_the_bundle_was_fitted_at(fitted, tmp_path):
    """A bundle fitted on ``DIR?size=64`` scores the 48 px files as the fit read them (resized to
    64 px) without the user repeating ``?size=``; a size of their own still wins, and a wrong one
    is one clear error."""
    cat, _ = fitted
    out = tmp_path / "small.anomaly"
    r = run("fit", "latent", "--data", f"{cat / 'train'}?size=64", "--holdout", "0.2", "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    plain, sized = tmp_path / "plain.csv", tmp_path / "sized.csv"
    assert run("score", out, "--data", cat / "test", "-o", plain).exit_code == 0
    r = run("score", out, "--data", f"{cat / 'test'}?size=64", "-o", sized)
    assert r.exit_code == 0, r.output
    a, b = (list(csv.DictReader(p.open())) for p in (plain, sized))
    assert [row["score"] for row in a] == [row["score"] for row in b]
    scores = np.array([float(row["score"]) for row in a])
    spot = np.array([row["path"].startswith("spot/") for row in a])
    assert scores[spot].min() > scores[~spot].max()  # the planted spots still rank first at 64 px
    r = run("score", out, "--data", f"{cat / 'test'}?size=56", "-o", tmp_path / "wrong.csv")
    assert r.exit_code == 2 and "fitted on 1x64x64" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "wrong.csv").exists()


def test_a_folder_of_mixed_sizes_is_told_the_size_the_bundle_was_fitted_at(fitted, tmp_path):
    from PIL import Image

    cat, bundle = fitted  # fitted on the 48 px files as they are (no ?size=)
    lot = tmp_path / "lot"
    lot.mkdir()
    for i, side in enumerate((48, 50, 52)):
        Image.new("L", (side, side), 128).save(lot / f"{i}.png")
    r = run("score", bundle, "--data", lot, "-o", tmp_path / "s.csv")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "images differ in size" in r.output and "(the bundle was fitted on 48x48 images: ?size=48)" in r.output
    r = run("score", bundle, "--data", f"{lot}?size=48", "-o", tmp_path / "s.csv")  # the fix it names
    assert r.exit_code == 0, r.output


def test_images_are_read_in_the_channels_the_bundle_was_fitted_on(tmp_path):
    """A grey fit scores RGB photographs made grey, an RGB fit grey images repeated on three
    channels (they were "samples are 3x32x32 but ... fitted on 1x32x32"), each with one warning
    that says so (a colour-only defect is lost); ?channels= says it."""
    from PIL import Image

    rng = np.random.default_rng(0)
    grey, rgb = tmp_path / "grey", tmp_path / "rgb"
    grey.mkdir(), rgb.mkdir()
    for i in range(12):
        a = (rng.random((24, 24)) * 60 + 100).astype(np.uint8)
        Image.fromarray(a).save(grey / f"{i}.png")
        Image.fromarray(np.stack([a] * 3, -1)).save(rgb / f"{i}.png")

    def scores(bundle, data, note=None):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            r = run("score", bundle, "--data", data, "-o", "-")
        assert r.exit_code == 0, r.output
        notes = [str(w.message) for w in said if "read as grey" in str(w.message)]
        assert notes == ([f"{data}: {note}"] if note else []), notes  # said once, or not at all
        return [row["score"] for row in csv.DictReader(r.output.splitlines()[: 13])]

    notes = {"grey": "12 of 12 images are in colour and are read as grey, as the bundle's fit read its images: a "
                     "defect seen only in its colour is not scored (fit on colour images to score colour)",
             "rgb": "grey images, read as grey on all three channels because the bundle was fitted on colour "
                    "images: their scores compare them with colour parts"}
    for fit, other in ((grey, rgb), (rgb, grey)):
        assert run("fit", "latent", "--data", fit, "-o", tmp_path / f"{fit.name}.anomaly", "-q").exit_code == 0
        bundle = tmp_path / f"{fit.name}.anomaly"
        # the same pixels, in the fit's channels; the conversion said where it happened
        assert scores(bundle, other, notes[fit.name]) == scores(bundle, fit)
    r = run("evaluate", tmp_path / "grey.anomaly", "--data", rgb)  # messages name the spec given, not ?channels=1
    assert r.exit_code == 2 and f"{rgb}: no labels" in r.output and "channels" not in r.output
    r = run("score", tmp_path / "grey.anomaly", "--data", f"{rgb}?channels=3", "-o", "-")  # a spec's own: it wins
    assert r.exit_code == 2 and "samples are 3x24x24 but" in r.output
    r = run("score", tmp_path / "grey.anomaly", "--data", f"{rgb}?channels=2", "-o", "-")
    assert r.exit_code == 2 and "channels '2': use channels=1 (grey) or channels=3 (RGB)" in r.output


def test_16_bit_grey_among_rgb_images_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    import anomalib_lite as al

    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "b.png")  # mid grey, 16 bits
    (x, _), = al.load_data(str(tmp_path)).batches(2)
    x = np.asarray(x, dtype=np.float32)
    x = x / 255.0 if x.max() > 1 else x
    assert np.allclose(x[1], 0.5, atol=1e-3) and np.allclose(x[0], 128 / 255, atol=1e-3)  # (PIL's 8 bits: 1.0)


def test_fit_refuses_images_labelled_anomalous_and_names_the_normal_part(fitted, tmp_path):
    """A test folder (good + defects) is not fitted as normal: one line, nothing written; its
    good part, as the line says, fits."""
    cat, _ = fitted
    out = tmp_path / "m.anomaly"
    r = run("fit", "latent", "--data", cat / "test", "-o", out)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and not out.exists()
    assert "4 of 10 images are labelled anomalous (classes spot)" in r.output and "?classes=good" in r.output
    r = run("fit", "latent", "--data", f"{cat / 'test'}?classes=good", "--holdout", "0.5", "-o", out)
    assert r.exit_code == 0 and out.exists(), r.output
    weights = tmp_path / "w.safetensors"  # pretraining learns normal too
    r = run("pretrain", "--backbone", "resnet18", "--data", cat / "test", "--max-time", "1", "-o", weights)
    assert r.exit_code == 2 and "4 of 10 images are labelled anomalous" in r.output and not weights.exists()


def test_the_api_fit_warns_that_images_labelled_anomalous_are_learned_as_normal(fitted):
    """scikit-learn's fit(X) takes what it is given, so the API warns where the command refuses;
    the normal part it names fits without a word."""
    import warnings

    import anomalib_lite as al

    cat, _ = fitted
    with pytest.warns(UserWarning, match=r"4 of 10 samples of .*test are labelled anomalous \(classes spot\) .*"
                                         r"\?classes=good"):
        al.LatentDistance(device="cpu").fit(al.load_data(str(cat / "test")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        al.LatentDistance(device="cpu").fit(al.load_data(f"{cat / 'test'}?classes=good"))
