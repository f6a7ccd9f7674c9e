"""Reconstruction, SyntheticOOD and self-supervised pretraining on small planted-defect images."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import anomalib_lite as al
from anomalib_lite import AnomalyError, LatentDistance, Reconstruction, SyntheticOOD
from anomalib_lite.training.pretrain import pretrain


def _auroc(normal, anomalous):
    return roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(anomalous))], np.r_[normal, anomalous])


@pytest.fixture(scope="module")
def data(make_shapes):
    rng = np.random.default_rng(1)
    return make_shapes(rng, 300, False), make_shapes(rng, 60, False), make_shapes(rng, 30, True)


@pytest.fixture(scope="module")
def ae(data):
    train, _, _ = data
    return Reconstruction(latent_dim=8, width=8, epochs=15, lr=3e-3, device="cpu").fit(train)


def test_autoencoder_loss_falls_and_defects_score_high(ae, data):
    _, normal, defective = data
    h = ae.history_
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert _auroc(ae.decision_function(normal), ae.decision_function(defective)) > 0.95


def test_autoencoder_on_a_stream_moving_average_flags_runs_not_single_frames(ae, data):
    from anomalib_lite.components.streaming import MovingAverage

    _, normal, defective = data
    frames = np.concatenate([normal[:30], defective[:1], normal[30:50], defective[1:11], normal[50:60]])
    raw = ae.decision_function(frames)
    smooth = MovingAverage(5).update(raw)
    single, run = 30, np.arange(51, 61)
    assert raw[single] > np.median(raw[:30])  # the lone defect frame is high on its own ...
    assert smooth[single] < smooth[run[4:]].min()  # ... but only the run stays high after smoothing
    assert smooth[run[4:]].min() > smooth[:30].max()
    chunked = MovingAverage(5)
    parts = [chunked.update(raw[i : i + 7]) for i in range(0, len(raw), 7)]
    np.testing.assert_allclose(np.concatenate(parts), smooth, rtol=1e-12)


def test_autoencoder_map_points_at_the_defect(ae, data):
    _, _, defective = data
    maps = ae.score_map(defective)
    assert maps.shape == (30, 16, 16)
    spot = np.zeros((16, 16), bool)
    spot[0:5, 12:15] = True
    assert maps[:, spot].mean() > 3 * maps[:, ~spot].mean()


def test_autoencoder_is_seeded_and_round_trips(ae, data, tmp_path):
    train, normal, defective = data
    again = Reconstruction(latent_dim=8, width=8, epochs=15, lr=3e-3, device="cpu").fit(train)
    assert np.array_equal(again.decision_function(defective), ae.decision_function(defective))
    ae.calibrate(normal, fpr=0.1).save(tmp_path / "ae.anomaly")
    back = al.load(tmp_path / "ae.anomaly")
    assert np.array_equal(back.decision_function(defective), ae.decision_function(defective))
    assert np.array_equal(back.score_map(defective), ae.score_map(defective))


def test_mc_dropout_and_ssim_and_augment(data):
    train, normal, defective = data
    det = Reconstruction(
        latent_dim=8, width=8, epochs=5, dropout=0.2, mc_samples=4, metric="ssim", device="cpu",
        augment={"seed": 0, "steps": [{"op": "brightness", "delta": [-0.02, 0.02]}]},
    ).fit(train)
    spread = det.score_spread(defective)
    assert spread.shape == (30,) and (spread > 0).all()
    assert np.array_equal(det.decision_function(defective), det.decision_function(defective))  # passes are seeded
    assert _auroc(det.decision_function(normal), det.decision_function(defective)) > 0.8
    with pytest.raises(AnomalyError, match="needs dropout"):
        Reconstruction(mc_samples=3).fit(train)


def test_autoencoder_partial_fit_learns_online(data):
    train, normal, _ = data
    det = Reconstruction(latent_dim=8, width=8, lr=3e-3, partial_fit_epochs=3, device="cpu")
    first = None
    for i in range(0, 300, 50):
        det.partial_fit(train[i : i + 50])
        first = det.decision_function(normal).mean() if first is None else first
    assert det.decision_function(normal).mean() < first and det.n_seen_ == 300


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory):
    train, _, _ = data
    path = tmp_path_factory.mktemp("w") / "r18.safetensors"
    res = pretrain("resnet18", train, task="transforms", epochs=3, image_size=32, device="cpu", out=path)
    return res, path


def test_pretraining_loss_falls_and_weights_load_into_every_detector(pretrained, data):
    res, path = pretrained
    train, normal, defective = data
    assert res.history.train_loss[-1] < res.history.train_loss[0]
    import backbones

    state, meta = backbones.load_weights_file(path)
    assert meta["task"] == "transforms" and "layer1.0.conv1.weight" in state
    lat = LatentDistance(backbone="resnet18", weights=str(path), image_size=32, device="cpu").fit(train)
    ood = SyntheticOOD(weights=str(path), image_size=32, epochs=1, device="cpu").fit(train[:100])
    rec = Reconstruction(backbone="resnet18", weights=str(path), image_size=32, epochs=2, device="cpu").fit(train)
    for det in (lat, ood, rec):
        assert det.featurizer_.extractor.weights_source == str(path) if hasattr(det, "featurizer_") and det.featurizer_ else True
        assert np.isfinite(det.decision_function(defective)).all()
    emb = lat.featurizer_.extractor.extract(torch.as_tensor(train[:4]))
    ref = backbones.create("resnet18", weights=str(path), image_size=32, device="cpu").extract(torch.as_tensor(train[:4]))
    assert all(torch.equal(emb[k], ref[k]) for k in emb)
    assert _auroc(lat.decision_function(normal), lat.decision_function(defective)) > 0.9


def test_synthetic_ood_ranks_defects_and_round_trips(data, tmp_path):
    train, normal, defective = data
    det = SyntheticOOD(image_size=32, epochs=3, synth_ops=["cutpaste", "stroke_blob"], device="cpu").fit(train)
    assert det.history_.train_loss[-1] < det.history_.train_loss[0]
    assert _auroc(det.decision_function(normal), det.decision_function(defective)) > 0.8
    maps = det.score_map(defective)
    assert maps.shape == (30, 16, 16) and np.isfinite(maps).all()
    det.save(tmp_path / "ood.anomaly")
    back = al.load(tmp_path / "ood.anomaly")
    assert np.allclose(back.decision_function(defective), det.decision_function(defective), rtol=1e-5)
    det.set_params(scoring="probability", map_method="gradient")
    p = det.decision_function(defective)
    assert ((p >= 0) & (p <= 1)).all() and det.score_map(defective[:4]).shape == (4, 16, 16)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SyntheticOOD(synth_ops=["sparkle"]), "unknown op 'sparkle'"),
        (lambda: SyntheticOOD(scoring="votes"), "scoring='votes'"),
        (lambda: Reconstruction(metric="psnr"), "metric='psnr'"),
        (lambda: Reconstruction(epochs=0), "epochs=0"),
    ],
)
def test_bad_parameters(make, message, data):
    with pytest.raises(AnomalyError, match=message):
        make().fit(data[0][:40])


def test_trained_detectors_reject_vectors():
    with pytest.raises(AnomalyError, match="takes images"):
        Reconstruction().fit(np.zeros((10, 5), np.float32))


def test_pretraining_cuts_large_images_to_keyed_crops_and_keeps_small_ones_whole():
    from anomalib_lite.training.pretrain import crop_batch

    x = torch.arange(2 * 1 * 40 * 30, dtype=torch.float32).reshape(2, 1, 40, 30)
    index = torch.tensor([5, 9])
    a = crop_batch(x, index, epoch=0, seed=0, size=16)
    assert a.shape == (2, 1, 16, 16)
    for i in range(2):  # each crop is a window of its own image
        found = [(t, l) for t in range(25) for l in range(15) if torch.equal(x[i, :, t : t + 16, l : l + 16], a[i])]
        assert len(found) == 1
    assert torch.equal(crop_batch(x, index, epoch=0, seed=0, size=16), a)  # keyed: the same draw again
    same, doubled, masks = crop_batch(x, index, 0, 0, 16, 2 * x, x[:, 0] > 600)  # others: the same windows
    assert torch.equal(same, a) and torch.equal(doubled, 2 * a) and torch.equal(masks, a[:, 0] > 600)
    assert not torch.equal(crop_batch(x, index, epoch=1, seed=0, size=16), a)  # another epoch, other windows
    # a side shorter than the crop stays whole; images that fit, or no crop, are returned as they are
    assert crop_batch(x, index, 0, 0, size=35).shape == (2, 1, 35, 30)
    assert crop_batch(x, index, 0, 0, size=40) is x and crop_batch(x, index, 0, 0, size=None) is x


def test_pretraining_sees_crops_of_large_images(monkeypatch):
    from anomalib_lite.components import nets

    seen = []
    forward = nets.PatchSegmenter.forward
    monkeypatch.setattr(nets.PatchSegmenter, "forward", lambda self, x: seen.append(tuple(x.shape[-2:])) or forward(self, x))
    images = np.random.default_rng(0).random((4, 1, 48, 40)).astype("float32")
    pretrain("resnet18", images, task="segment", epochs=1, batch_size=4, num_workers=0, device="cpu", crop=32)
    assert seen and set(seen) == {(32, 32)}
    seen.clear()
    pretrain("resnet18", images, task="segment", epochs=1, batch_size=4, num_workers=0, device="cpu", crop=None)
    assert set(seen) == {(48, 40)}
    with pytest.raises(AnomalyError, match="crop=4 must be at least 8"):
        pretrain("resnet18", images, task="segment", epochs=1, device="cpu", crop=4)


def test_pretraining_says_which_weights_it_kept_and_whether_they_beat_chance():
    """Rotations of isotropic noise cannot be told apart (the pretext stays at chance, log 4);
    of an image with a bright corner they can. Early stopping keeps the best held-out epoch;
    patience=None trains every epoch and keeps the last."""
    rng = np.random.default_rng(0)
    noise = rng.random((40, 1, 16, 16)).astype(np.float32)
    corner = (0.1 * noise).copy()
    corner[:, :, :5, :5] = 1.0
    kw = dict(transforms="rot4", batch_size=8, num_workers=0, device="cpu", lr=3e-3)
    flat = pretrain("resnet18", np.full((320, 1, 16, 16), 0.5, np.float32), epochs=2, **kw)  # rotations all alike
    assert flat.held_out == 32 and flat.chance == pytest.approx(np.log(4)) and flat.learned() is False
    assert pretrain("resnet18", noise, epochs=2, **kw).learned() is None  # 4 held-out images: too few to judge
    sharp = pretrain("resnet18", np.concatenate([corner] * 8), epochs=4, patience=None, **kw)
    assert sharp.history.stopped == "epochs" and sharp.kept_epoch == 3 and sharp.learned() is True
    early = pretrain("resnet18", noise, epochs=30, patience=1, **kw)
    h = early.history
    assert h.stopped == "early_stopping" and len(h.train_loss) < 30 and early.kept_epoch == h.best_epoch
    assert early.kept_loss() == min(h.val_loss)
    assert pretrain("resnet18", noise, task="segment", epochs=1, **{**kw, "transforms": "geom"}).learned() is None


def test_the_pretrain_command_says_it_stopped_early_and_warns_of_weights_at_chance(tmp_path):
    """30 photographs hold out 3: early stopping on their loss kept epoch 1 of 200 asked, and
    said nothing (measured: the detector on those weights lost to random ones, 90.6 against 93.8;
    with --patience none the pretext learned and it reached 100)."""
    from click.testing import CliRunner

    from cli import cli

    rng = np.random.default_rng(0)
    np.save(tmp_path / "noise.npy", rng.random((40, 1, 16, 16)).astype(np.float32))
    np.save(tmp_path / "flat.npy", np.full((320, 1, 16, 16), 0.5, np.float32))  # every rotation is the same image
    args = ["pretrain", "--backbone", "resnet18", "--transforms", "rot4", "--num-workers", "0", "--device", "cpu"]
    with pytest.warns(UserWarning, match=r"judged epochs by 4 held-out images, too few .* --patience none"):
        r = CliRunner().invoke(cli, args + ["--data", str(tmp_path / "noise.npy"), "--epochs", "30", "--patience", "1",
                                            "-o", str(tmp_path / "w.safetensors")])
    assert r.exit_code == 0, r.output
    assert "of 30 epochs (stopped early: the held-out loss had not improved for 1 epoch (--patience))" in r.output
    assert "kept epoch" in r.output and "on 4 images (chance 1.386)" in r.output
    with pytest.warns(UserWarning, match=r"no better than chance .*--patience none"):
        r = CliRunner().invoke(cli, args + ["--data", str(tmp_path / "flat.npy"), "--epochs", "2", "--patience", "none",
                                            "-o", str(tmp_path / "w2.safetensors")])
    assert r.exit_code == 0 and "2 epochs, training loss" in r.output and "kept epoch 2's" in r.output, r.output
    # under 20 images none is held out: the last epoch's weights stay, and no held-out loss is claimed
    r = CliRunner().invoke(cli, args + ["--data", str(tmp_path / "noise.npy?limit=12"), "--epochs", "3",
                                        "-o", str(tmp_path / "w3.safetensors")])
    assert r.exit_code == 0 and "3 epochs, training loss" in r.output and "kept epoch" not in r.output, r.output
