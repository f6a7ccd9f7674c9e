"""Thresholds that keep their promise: cross-fitted calibration uses every normal sample."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone

import anomalib_lite as al
from anomalib_lite.app import workflows


def _normals(n, seed=0, d=6):
    return np.random.default_rng(seed).normal(size=(n, d)).astype("float32")


def test_cross_fitting_gives_one_out_of_fold_score_per_sample():
    x = _normals(60)
    det = al.LatentDistance(k=3, device="cpu").fit(x).cross_calibrate(x, fpr=0.05, folds=5, seed=1)
    assert det.calibration_scores_.shape == (60,)
    # the scores of one fold are those of a model fitted without it
    order = np.random.default_rng(1).permutation(60)
    held = np.sort(order[2::5])
    rest = np.setdiff1d(np.arange(60), held)
    expect = clone(det).fit(x[rest]).decision_function(x[held])
    assert np.isin(np.round(expect, 6), np.round(det.calibration_scores_, 6)).all()


def test_a_data_warning_is_given_once_by_the_fit_not_again_by_every_fold():
    x = _normals(60) * np.r_[1.0, 1.0, 1.0, 1.0, 1.0, 500.0].astype("float32")  # spreads 500-fold apart
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        det = al.LatentDistance(k=3, device="cpu").fit(x)
        det.cross_calibrate(x, fpr=0.05, folds=5)
    assert [str(w.message)[:32] for w in said] == ["data: the features' spreads diff"]


def test_cross_fitted_threshold_keeps_its_rate_where_in_sample_scores_do_not():
    train, new = _normals(200), _normals(6000, seed=1)
    det = al.LatentDistance(k=1, device="cpu").fit(train)
    rate = lambda d: float(np.mean(d.predict(new)))  # noqa: E731
    assert rate(clone(det).fit(train).calibrate(train, fpr=0.05)) > 0.5  # its own scores are 0: everything flags
    det.cross_calibrate(train, fpr=0.05)
    assert 0.02 <= rate(det) <= 0.10


def test_cross_fitting_refuses_data_it_cannot_cut():
    det = al.LatentDistance(device="cpu").fit(_normals(20))
    with pytest.raises(al.AnomalyError, match="random access"):
        det.cross_calibrate(iter([_normals(20)]))
    with pytest.raises(al.AnomalyError, match="cannot make 5 folds"):
        det.cross_calibrate(_normals(6))


def test_fit_cross_fits_when_the_hold_out_cannot_certify_the_rate(tmp_path):
    np.save(tmp_path / "x.npy", _normals(40))
    out = tmp_path / "m.anomaly"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 40 out-of-fold scores certify 0.05: no warning
        line = workflows.fit_and_save(al.LatentDistance(device="cpu"), str(tmp_path / "x.npy"), out, fpr=0.05)
    assert "5-fold cross-fitting on all 40 samples" in line
    assert al.load(out).calibration_scores_.shape == (40,)
    # a held-out share that certifies the rate is used as before
    line = workflows.fit_and_save(al.LatentDistance(device="cpu"), str(tmp_path / "x.npy"), out, fpr=0.3)
    assert "calibrated on 4 held-out samples" in line
    # a target below what all of them can certify is one warning naming the smallest rate
    with pytest.warns(UserWarning, match=r"smallest is 1/41 = 0\.0244"):
        workflows.fit_and_save(al.LatentDistance(device="cpu"), str(tmp_path / "x.npy"), out, fpr=0.001)


def test_fit_calibrates_a_handful_of_samples_with_fewer_folds(tmp_path):
    # 6 samples: the 10 % hold-out would be 1 sample (and split() could not make even that of 5);
    # cross-fitting cuts 3 folds of 2, each scored by a model fitted on the other 4
    np.save(tmp_path / "six.npy", _normals(6))
    out = tmp_path / "m.anomaly"
    with pytest.warns(UserWarning, match=r"smallest is 1/7"):
        line = workflows.fit_and_save(al.LatentDistance(k=1, device="cpu"), str(tmp_path / "six.npy"), out, fpr=0.05)
    assert "3-fold cross-fitting on all 6 samples" in line
    assert al.load(out).calibration_scores_.shape == (6,)
    np.save(tmp_path / "three.npy", _normals(3))
    with pytest.raises(al.AnomalyError, match=r"three\.npy: cannot fit .* on 3 samples; give at least 4"):
        workflows.fit_and_save(al.LatentDistance(k=1, device="cpu"), str(tmp_path / "three.npy"), tmp_path / "t.anomaly")
    assert not (tmp_path / "t.anomaly").exists()


def test_drift_is_rare_on_exchangeable_batches_and_seen_on_a_shifted_one():
    from anomalib_lite.scoring.thresholds import drift, p_values

    rng = np.random.default_rng(0)
    cal = rng.normal(size=100)
    warned = sum(drift(p_values(rng.normal(size=20), cal)) is not None for _ in range(500))
    assert warned <= 10  # the docstring's bound: under 0.6 % against 100 calibration scores, 2 % allowed
    shifted = drift(p_values(rng.normal(size=40) + 1.5, cal))
    assert shifted is not None and shifted["n"] == 40 and shifted["share"] > 0.5
    # a third anomalous is not drift; too few samples, or only NaN (a series warming up), judge nothing
    assert drift(p_values(np.r_[rng.normal(size=40), np.full(20, 9.0)], cal)) is None
    assert drift(p_values(np.full(19, 9.0), cal)) is None
    assert drift(np.r_[np.full(30, np.nan), np.full(19, 0.01)]) is None


def test_scoring_drifted_normals_warns_in_one_line_and_same_normals_do_not(tmp_path):
    x = _normals(140)
    np.save(tmp_path / "x.npy", x[:100])
    np.save(tmp_path / "same.npy", x[100:])
    np.save(tmp_path / "drifted.npy", x[100:] * 1.5 + 1.0)  # other light: every value scaled and offset
    out = tmp_path / "m.anomaly"
    workflows.fit_and_save(al.LatentDistance(device="cpu"), str(tmp_path / "x.npy"), out, fpr=0.05)
    det = al.load(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workflows.score_and_write(det, str(tmp_path / "same.npy"), out=tmp_path / "same.csv")
    with pytest.warns(UserWarning, match=r"^\d\d of 40 samples score above three quarters .* 5 % false-positive rate "
                                         r"is no longer guaranteed") as got:
        line = workflows.score_and_write(det, str(tmp_path / "drifted.npy"), out=tmp_path / "drifted.csv")
    assert len(got) == 1 and "\n" not in str(got[0].message)
    assert "flagged as anomalous" in line and (tmp_path / "drifted.csv").exists()  # the warning stops nothing


def test_calibrate_on_too_few_normals_names_cross_fitting_and_cross_fitting_reaches_the_rate():
    x = _normals(100)
    det = al.LatentDistance(device="cpu").fit(x[:90])
    with pytest.warns(UserWarning, match=r"smallest is 1/11 .*cross_calibrate\(training data, fpr\)"):
        det.calibrate(x[90:], fpr=0.05)  # 10 held-out samples cannot certify 5 %
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the remedy it names: 100 out-of-fold scores certify 5 %
        al.LatentDistance(device="cpu").fit(x).cross_calibrate(x, fpr=0.05)


def test_class_indices_as_labels_are_one_error_naming_the_0_1_labels():
    from anomalib_lite.scoring.metrics import roc_auc

    with pytest.raises(al.AnomalyError, match=r"got 0, 1, 2, 4; .*source\.anomaly_labels\(\)"):
        roc_auc([0, 1, 2, 4, 4], [0.1, 0.2, 0.3, 0.4, 0.5])


@pytest.mark.parametrize("kind", ["images", "series"])
def test_a_time_budget_is_shared_by_every_fit_of_the_calibration(tmp_path, monkeypatch, kind):
    """--max-time is the whole command's: with cross-fitting (5 folds of a small image set; a
    series' 3 time blocks) each of the fits gets an equal share, and the bundle keeps the budget
    asked (before, each fit had all of it: 6 and 4 times the budget)."""
    if kind == "images":
        np.save(tmp_path / "d.npy", np.random.default_rng(0).random((30, 1, 16, 16), dtype=np.float32))
        det, fits, data = al.Reconstruction(epochs=1, device="cpu", max_time=60.0), 6, tmp_path / "d.npy"
    else:
        v = np.sin(2 * np.pi * np.arange(400) / 20) + 0.05 * np.random.default_rng(0).normal(size=400)
        (tmp_path / "d.csv").write_text("value\n" + "".join(f"{a:.5f}\n" for a in v))
        data = tmp_path / "d.csv"
        det, fits = al.Continuation(window=16, hidden=8, num_layers=1, epochs=1, season=0, device="cpu",
                                    verbose=False, max_time=60.0), 4
    asked, cls = [], type(det)
    fit = cls.fit
    monkeypatch.setattr(cls, "fit", lambda self, X, y=None: asked.append(self.max_time) or fit(self, X, y))
    line = workflows.fit_and_save(det, str(data), tmp_path / "m.anomaly")
    assert ("cross-fitting" in line) if kind == "images" else ("each scored by one of 3 fits" in line)
    assert len(asked) == fits and all(b <= 60.0 / fits for b in asked), asked
    assert al.load(tmp_path / "m.anomaly").max_time == pytest.approx(60.0, abs=1.0)  # (less the reading time)
