"""One default image score for both kinds of anomaly: a small local defect and a whole-image outlier."""
from __future__ import annotations

import numpy as np
import pytest

import anomalib_lite as al
from anomalib_lite.scoring.metrics import roc_auc


@pytest.fixture(scope="module")
def digits():
    import augment

    train = al.load_data("mnist:train?classes=7&limit=400")
    x7, _ = train.read(range(len(train)))
    test = al.load_data("mnist:test?limit=1500")
    xt, yt = test.read(range(len(test)))
    sevens, others = xt[yt == 7][:120], xt[yt != 7][:120]
    local, _, _ = augment.synth.stroke_blob(sevens.copy(), severity=0.8, seed=3)  # a planted stroke or blob
    return x7, sevens, others, local


def _auc(det, normal, anomalous):
    s = det.decision_function(np.concatenate([normal, anomalous]))
    return roc_auc(np.r_[np.zeros(len(normal)), np.ones(len(anomalous))], s)


def test_combined_serves_whole_image_outliers_and_local_defects(digits):
    x7, sevens, others, local = digits
    fit = {s: al.LatentDistance(image_score=s, device="cpu").fit(x7) for s in ("combined", "patch", "pooled")}
    other_auc = {s: _auc(d, sevens, others) for s, d in fit.items()}
    local_auc = {s: _auc(d, sevens, local) for s, d in fit.items()}
    # each single kind fails one of the two; the combination holds the whole-image outliers as the
    # pooled evidence does and keeps most of what the patches see (an uninformative kind adds noise)
    assert other_auc["pooled"] > other_auc["patch"] + 0.03
    assert local_auc["patch"] > local_auc["pooled"] + 0.08
    assert other_auc["combined"] > other_auc["pooled"] - 0.02
    assert local_auc["combined"] > local_auc["pooled"] + 0.06
    assert local_auc["combined"] > local_auc["patch"] - 0.06
    # it says what each kind saw: other digits stand out in the pooled evidence (whichever kind
    # decided, both see them), planted defects mostly in the patches
    det = fit["combined"]
    assert len(det.evidence_scale_) == 3 and min(s[1] for s in det.evidence_scale_) > 0
    normal, other, planted = det.evidence(sevens), det.evidence(others), det.evidence(local)
    assert np.median(other["pooled"]) > np.median(normal["pooled"]) + 1.5
    assert np.median(planted["pooled"]) < np.median(other["pooled"]) - 1.0
    assert np.mean(planted["decided"] == "patch") > 0.6


def test_combined_scale_comes_from_images_held_out_of_the_banks(digits):
    x7 = digits[0]
    det = al.LatentDistance(device="cpu").fit(x7[:200])
    assert det.bank_rows_ == 180  # every tenth image measured the evidence scales, none of them in a bank
    small = al.LatentDistance(device="cpu").fit(x7[:9])  # too few to hold any out: the patch score
    assert small.evidence_scale_ is None
    np.testing.assert_allclose(small.decision_function(x7[:3]), small.score_map(x7[:3]).reshape(3, -1).max(1),
                               rtol=1e-5)


def test_position_share_tells_aligned_objects_from_textures():
    import torch

    from anomalib_lite.components.streaming import PositionShare
    from anomalib_lite.data import sample_data

    def share(x, chunks=1):
        ps = PositionShare()
        for part in np.array_split(x, chunks):
            ps.update(torch.as_tensor(part))
        return ps.value()

    aligned, texture = sample_data.toy_images(60, seed=0), sample_data.weave(60, seed=0)
    assert share(aligned) > 0.5 and share(texture) < 0.02  # a square always in the middle; a fabric at any phase
    assert share(texture, chunks=7) == pytest.approx(share(texture), abs=1e-9)  # streaming: chunks do not matter
    noise = np.random.default_rng(0).random((200, 3, 32, 32), dtype=np.float32)
    assert share(noise) < 0.01  # chance alone is adjusted for (unadjusted it is about 1/n)
    assert share(texture[:1]) is None and share(np.full((5, 1, 16, 16), 0.3, np.float32)) is None
    for shape in ((30, 3, 40, 120), (30, 1, 1, 9), (30, 1, 3, 3)):  # any image shape a detector takes
        assert 0.0 <= share(np.random.default_rng(1).random(shape, dtype=np.float32)) < 0.2


def test_a_texture_scores_by_its_patches_and_digits_by_both_kinds(digits, tmp_path):
    from anomalib_lite.data import sample_data

    fabric, test = sample_data.weave(50, seed=0), sample_data.weave(8, seed=4)
    det = al.LatentDistance(device="cpu").fit(fabric)
    patch = al.LatentDistance(image_score="patch", device="cpu").fit(fabric)
    assert det.position_share_ < 0.05 and det.evidence_scale_ is None and "a texture" in det.summary()
    # the images held out to measure the evidence scales join the banks: the patch route's bank
    assert det.patch_bank_rows_ == patch.patch_bank_rows_ and det.memory_ is None  # and no pooled ballast
    np.testing.assert_allclose(det.decision_function(test), patch.decision_function(test), rtol=1e-6)
    with pytest.raises(al.AnomalyError, match="texture"):
        det.evidence(test)
    det.save(tmp_path / "t.anomaly")
    back = al.load(tmp_path / "t.anomaly")
    assert back.position_share_ == det.position_share_
    np.testing.assert_allclose(back.decision_function(test), det.decision_function(test), rtol=1e-6)
    back.partial_fit(test[:2])  # learning on goes on as a texture
    assert back.memory_ is None and back.patch_bank_rows_ > det.patch_bank_rows_
    sevens = al.LatentDistance(device="cpu").fit(digits[0][:100])
    assert sevens.position_share_ > 0.2 and sevens.evidence_scale_ is not None and "aligned" in sevens.summary()


def test_image_statistics_flag_a_blurred_or_thinner_digit_that_both_distances_take_for_normal(digits, tmp_path):
    """A blur moves a digit towards the average 7 and thinner strokes leave every patch plausible:
    the patch and pooled distances rank them near or below the clean 7s. The image's statistics
    (exposure, contrast, sharpness) see both, and the bundle keeps them."""
    import torch
    import torch.nn.functional as F

    import augment

    x7, sevens, _, _ = digits
    sevens = np.asarray(sevens, np.float32).reshape(-1, 1, 28, 28)
    sevens = sevens / 255 if sevens.max() > 1 else sevens
    blurred = augment.Pipeline.from_config({"seed": 0, "steps": [{"op": "blur", "sigma": [1.0, 1.0]}]})(
        torch.as_tensor(sevens), indices=np.arange(len(sevens))).numpy()
    thinner = -F.max_pool2d(F.pad(-torch.as_tensor(sevens), (0, 1, 0, 1), mode="replicate"), 2, stride=1).numpy()
    det = al.LatentDistance(device="cpu").fit(x7)
    patch = al.LatentDistance(image_score="patch", device="cpu").fit(x7)
    for changed, least in ((blurred, 0.95), (thinner, 0.75)):
        assert _auc(patch, sevens, changed) < 0.75
        assert _auc(det, sevens, changed) > least
    assert np.mean(det.evidence(blurred)["decided"] == "stats") > 0.9
    assert det.bank_.get("stats_mean").shape == (4,)  # 2 per channel + 2
    det.save(tmp_path / "d.anomaly")
    back = al.load(tmp_path / "d.anomaly")
    np.testing.assert_allclose(back.decision_function(blurred), det.decision_function(blurred), rtol=1e-6)


def test_a_bundle_fitted_before_the_image_statistics_scores_with_two_kinds(digits, tmp_path):
    """Bundles written before the statistics hold two evidence scales and no statistics: they load
    and score with the patch and pooled evidence alone, as they did."""
    import torch

    from anomalib_lite.numeric import combined

    x7, sevens = digits[0], np.asarray(digits[1][:20])
    det = al.LatentDistance(device="cpu").fit(x7[:200])
    z = det.evidence(sevens)
    assert "image statistics" in det.summary()
    det.evidence_scale_ = det.evidence_scale_[:2]  # what such a bundle holds
    det.bank_.set("stats_mean", None)
    det.bank_.set("stats_precision", None)
    det.save(tmp_path / "old.anomaly")
    back = al.load(tmp_path / "old.anomaly")
    two = combined(torch.as_tensor(z["patch"]), torch.as_tensor(z["pooled"])).numpy()
    np.testing.assert_allclose(back.decision_function(sevens), two, rtol=1e-5)
    assert sorted(back.evidence(sevens)) == ["decided", "patch", "pooled", "score"]
    assert "image statistics" not in back.summary()
