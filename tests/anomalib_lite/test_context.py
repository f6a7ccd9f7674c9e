"""Mutual scoring (LatentDistance.set_context, `anomaly score --context`): a drift the whole batch
shares is explained by the batch, a defect is not, scores never rise, chunking does not matter."""
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from anomalib_lite import AnomalyError, LatentDistance
from anomalib_lite.data.sample_data import toy_series, weave
from anomalib_lite.scoring.metrics import roc_auc
from cli import cli

pytestmark = pytest.mark.usefixtures("one_thread")


def _new_lot(n=40, seed=1, contrast=0.8, offset=0.06):
    """Woven fabric from a new lot (lower contrast, brighter) with a dark hole in every fourth."""
    x = 0.5 + contrast * (weave(n, size=64, seed=seed) - 0.5) + offset
    labels = np.zeros(n, int)
    labels[::4] = 1
    for i in np.flatnonzero(labels):
        r, c = 8 + (7 * i) % 40, 8 + (11 * i) % 40
        x[i, :, r:r + 8, c:c + 8] = 0.15
    return x.astype(np.float32), labels


@pytest.fixture(scope="module")
def fitted():
    train = weave(80, size=64, seed=0)
    return LatentDistance(device="cpu", seed=0).fit(train[:60]).calibrate(train[60:], fpr=0.05)


def test_a_drift_the_batch_shares_is_not_flagged_and_defects_still_are(fitted):
    x, labels = _new_lot()
    before = fitted.set_context(x, images=0).decision_function(x)
    after = fitted.set_context(x, images=30).decision_function(x)
    try:
        t = fitted.threshold_
        assert (before[labels == 0] > t).mean() > 0.9  # the new lot's good parts all look anomalous
        assert (after[labels == 0] > t).mean() < 0.5  # the other parts of the lot explain them
        assert (after[labels == 1] > t).all() and roc_auc(labels, after) > 0.95
        assert (after <= before + 1e-6).all()  # the smaller distance: a score never rises
        maps = fitted.score_map(x[labels == 1])
        for j, i in enumerate(np.flatnonzero(labels)):  # each map still peaks on its hole
            r, c = 8 + (7 * i) % 40, 8 + (11 * i) % 40
            pr, pc = np.unravel_index(maps[j].argmax(), maps[j].shape)
            assert r - 4 <= pr < r + 12 and c - 4 <= pc < c + 12
    finally:
        fitted.set_context(x, images=0)


def test_an_image_among_the_references_does_not_explain_itself_and_chunks_do_not_matter(fitted):
    x, labels = _new_lot(n=12)
    fitted.set_context(x, images=12)  # every image is a reference, its own hole among them
    try:
        whole = fitted.decision_function(x)
        fitted.set_params(batch_size=5)
        chunked = fitted.decision_function(x)
    finally:
        fitted.set_params(batch_size=256)
        fitted.set_context(x, images=0)
    assert whole[labels == 1].min() > whole[labels == 0].max()
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-5)


def test_context_refuses_what_it_cannot_compare(fitted):
    x, _ = _new_lot(n=4)
    with pytest.raises(AnomalyError, match="at least 2 images"):
        fitted.set_context(x[:1])
    with pytest.raises(AnomalyError, match="shaped|fitted on"):
        fitted.set_context(np.zeros((4, 1, 32, 32), np.float32))
    with pytest.raises(AnomalyError, match=r"images=-1: must be an integer"):
        fitted.set_context(x, images=-1)
    gauss = LatentDistance(method="gaussian", device="cpu").fit(weave(12, size=32))
    with pytest.raises(AnomalyError, match="method='gaussian'"):
        gauss.set_context(weave(4, size=32))
    with pytest.raises(AnomalyError, match="draw images from"):
        fitted.set_context(iter([x]))


def _save_pngs(folder: Path, images) -> None:
    folder.mkdir(parents=True)
    for i, a in enumerate(images):
        Image.fromarray((a[0] * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")


def test_cli_score_and_evaluate_with_context(tmp_path):
    _save_pngs(tmp_path / "train" / "good", weave(60, size=64, seed=0))
    x, labels = _new_lot(contrast=0.7, offset=0.1)
    _save_pngs(tmp_path / "lot" / "good", x[labels == 0])
    _save_pngs(tmp_path / "lot" / "hole", x[labels == 1])
    run = lambda *a: CliRunner().invoke(cli, [str(v) for v in a])  # noqa: E731
    bundle = tmp_path / "m.anomaly"
    r = run("fit", "latent", "--data", tmp_path / "train", "--fpr", "0.05", "-o", bundle, "--quiet")
    assert r.exit_code == 0, r.output
    flagged = {}
    for n in (0, 20):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            r = run("score", bundle, "--data", tmp_path / "lot", "--context", n, "-o", tmp_path / f"s{n}.csv")
        assert r.exit_code == 0, r.output
        flagged[n] = int(r.output.split(" flagged")[0].rsplit(";", 1)[1])
        hints = [str(w.message) for w in seen if "--context 60" in str(w.message)]
        assert len(hints) == (n == 0)  # the drift warning points to --context, once, where it is not used
    assert flagged[0] == 40 and 10 <= flagged[20] <= 15  # the 10 holes, and few good parts
    assert "(mutual scoring: 20 of the data's images as context, --context 20)" in r.output
    r = run("evaluate", bundle, "--data", tmp_path / "lot", "--context", 20)
    assert r.exit_code == 0 and "ROC-AUC" in r.output, r.output
    assert "mutual scoring: 20 of the data's images as context, --context 20" in r.output
    n = len(labels)
    r = run("score", bundle, "--data", tmp_path / "lot", "--context", 1000, "-o", tmp_path / "all.csv")
    assert f"(mutual scoring: {n} of the data's images as context, --context 1000, all it holds)" in r.output
    r = run("score", bundle, "--data", tmp_path / "lot" / "hole" / "000.png", "--context", 20)
    assert r.exit_code == 2 and "at least 2 images" in r.output and len(r.output.strip().splitlines()) == 1


def test_cli_context_on_a_series_bundle_is_one_clear_error(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("value\n" + "\n".join(f"{v:.4f}" for v in toy_series(400, seed=0)) + "\n")
    bundle = tmp_path / "s.anomaly"
    r = CliRunner().invoke(cli, ["fit", "continuation", "--data", str(csv), "--epochs", "1", "-o", str(bundle), "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["score", str(bundle), "--data", str(csv), "--context", "30", "-o", str(tmp_path / "o.csv")])
    assert r.exit_code == 2 and "--context applies to latent bundles" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()
    r = CliRunner().invoke(cli, ["score", str(bundle), "--data", str(csv), "--stream", "--context", "30"])
    assert r.exit_code == 2 and "a stream (--stream) has no batch" in r.output and len(r.output.strip().splitlines()) == 1


def test_a_lot_of_digits_blurred_as_a_whole_is_explained_by_its_statistics_one_blurred_digit_is_not():
    """Aligned objects: the image statistics (the combined score's third kind) flag every blurred 7;
    with the lot as context they are compared with the lot's too, so a lot blurred as a whole is
    judged by what else sets its images apart (another digit), while a blurred 7 in a sharp lot is
    still flagged. Scores never rise."""
    import augment
    import torch

    import anomalib_lite as al

    def images(spec, n):
        x, y = al.load_data(spec).read(range(n))
        x = np.asarray(x, np.float32).reshape(-1, 1, 28, 28)
        return (x / 255 if x.max() > 1 else x), np.asarray(y)

    train, _ = images("mnist:train?classes=7&limit=400", 400)
    xt, yt = images("mnist:test?limit=1500", 1500)
    lot = np.concatenate([xt[yt == 7][:100], xt[yt != 7][:25]])
    other = np.r_[np.zeros(100), np.ones(25)]
    blurred = augment.Pipeline.from_config({"seed": 0, "steps": [{"op": "blur", "sigma": [1.0, 1.0]}]})(
        torch.as_tensor(lot), indices=np.arange(len(lot))).numpy()
    det = LatentDistance(device="cpu").fit(train[:360]).calibrate(train[360:], fpr=0.1)
    alone = det.set_context(blurred, images=0).decision_function(blurred)
    assert (alone[:100] > det.threshold_).mean() > 0.9  # a blurred 7 is not a normal 7
    shared = det.set_context(blurred).decision_function(blurred)
    assert (shared <= alone + 1e-9).all()
    assert (shared[:100] > det.threshold_).mean() < 0.2 and roc_auc(other, shared) > 0.8
    one = det.set_context(lot).decision_function(blurred[:5])  # blurred 7s in a sharp lot
    assert (one > det.threshold_).all()
