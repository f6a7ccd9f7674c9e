"""SupervisedRNN: early warning before onsets on a series with precursors; labels, splits, bundles."""
import warnings

import numpy as np
import pytest
import torch

import anomalib_lite as al
from anomalib_lite import AnomalyError, SupervisedRNN
from anomalib_lite.scoring import metrics
from anomalib_lite.detectors.series import TOLERANCE
from anomalib_lite.training.loop import TrainConfig, fit_model


pytestmark = pytest.mark.usefixtures("one_thread")


def precursors(n, seed):
    """Noise; each anomaly (a +4 level for 20 steps) is announced by a ramp over the 15 steps before it."""
    rng = np.random.default_rng(seed)
    x, y = 0.3 * rng.normal(size=n), np.zeros(n, dtype=np.int64)
    onset = 100
    while onset < n - 60:
        x[onset - 15 : onset] += np.linspace(0, 1.5, 15)
        x[onset : onset + 20] += 4.0
        y[onset : onset + 20] = 1
        onset += int(rng.integers(150, 300))
    return x, y


@pytest.fixture(scope="module")
def trained():
    x, y = precursors(5000, 1)
    return SupervisedRNN(window=32, horizon=10, hidden=16, epochs=20, lr=3e-3, device="cpu").fit((x, y))


def test_alarms_come_before_onsets(trained):
    x, y = precursors(2000, 2)  # a later stretch of the same process
    alarms = trained.reset().predict(x)
    m = metrics.lead_times(alarms, y, horizon=10)
    assert m["onsets"] >= 6 and m["warned"] >= 0.8
    assert m["mean_lead"] >= 5  # well before the onset, not at it
    assert m["false_alarms_per_1k"] < 60
    ap = metrics.average_precision(trained.targets(y), trained.reset().decision_function(x))
    base_rate = trained.targets(y).mean()
    assert ap > 0.7 and ap > 10 * base_rate
    # the last value's z-score (no precursor knowledge) does far worse
    z = np.abs((x - x.mean()) / x.std())
    assert ap > 2 * metrics.average_precision(trained.targets(y), z)


def test_chunked_scores_equal_whole_and_bundle_round_trip(tmp_path, trained):
    x, _ = precursors(600, 3)
    whole = trained.reset().decision_function(x)
    trained.reset()
    parts = np.concatenate([trained.decision_function(c) for c in np.split(x, [1, 5, 40, 41, 300])])
    assert np.allclose(parts, whole, equal_nan=True, **TOLERANCE)
    assert np.isnan(whole[:31]).all() and np.isfinite(whole[31:]).all()
    assert ((whole[31:] >= 0) & (whole[31:] <= 1)).all() and trained.threshold_ == 0.5
    trained.save(tmp_path / "r.anomaly")
    back = al.load(tmp_path / "r.anomaly")
    assert type(back) is SupervisedRNN and np.array_equal(back.decision_function(x), whole, equal_nan=True)
    assert np.array_equal(back.reset().predict(x), trained.reset().predict(x))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_step_scores_equal_the_whole_series(cell):
    x, y = precursors(1500, 4)
    det = SupervisedRNN(window=16, horizon=5, network=cell, hidden=8, num_layers=2, epochs=2, device="cpu").fit((x, y))
    whole = det.reset().decision_function(x[:400])  # one torch pass
    det.reset()
    one = np.concatenate([det.decision_function(x[i : i + 1]) for i in range(400)])  # numpy, one step at a time
    assert np.allclose(one, whole, equal_nan=True, **TOLERANCE) and np.isfinite(whole[15:]).all()


def test_early_stopping_holds_out_the_end_of_the_series_not_a_random_share():
    seen = []

    def loss(model, step):
        if step.train:
            seen.append(step.index)
        return model(step.x).pow(2).mean()

    fit_model(torch.nn.Linear(1, 1), loss, torch.zeros(100, 1), None,
              TrainConfig(epochs=1, val_fraction=0.2, val_split="tail", batch_size=7))
    assert sorted(torch.cat(seen).tolist()) == list(range(80))


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros(300), "needs 0/1 labels per step"),
        ((np.zeros(300), np.zeros(300)), "no anomaly starts in the labels"),
        ((np.zeros(300), np.full(300, 2)), "label 2 at time step 0 is not 0 or 1"),
        ((np.zeros(30), np.r_[np.zeros(20), np.ones(10)]), "too short for window \\+ horizon = 42"),
    ],
)
def test_bad_labels_and_short_series(data, message):
    with pytest.raises(AnomalyError, match=message):
        SupervisedRNN(window=32, horizon=10, epochs=1, device="cpu").fit(data)


def test_partial_fit_is_refused():
    with pytest.raises(AnomalyError, match="use fit\\(\\), not partial_fit"):
        SupervisedRNN(device="cpu").partial_fit((np.zeros(100), np.zeros(100)))


def jitter_precursors(n, seed):
    """A daily-like rhythm of span 8 and noise of 0.3; each anomaly (+4 for 10 steps) is announced
    by 20 steps of growing jitter, with no change of level: only the step changes show it."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x, y = 4 * np.sin(2 * np.pi * t / 288) + 0.3 * rng.normal(size=n), np.zeros(n, dtype=np.int64)
    onset = 120
    while onset < n - 40:
        x[onset - 20 : onset] += rng.normal(size=20) * np.linspace(0, 1.5, 20)
        x[onset : onset + 10] += 4.0
        y[onset : onset + 10] = 1
        onset += int(rng.integers(120, 200))
    return x, y


def test_a_precursor_in_the_step_changes_is_learned_from_them():
    x, y = jitter_precursors(4000, 5)
    test_x, test_y = jitter_precursors(2000, 6)
    ap = {}
    for changes in (False, True):
        det = SupervisedRNN(window=32, horizon=10, hidden=16, epochs=15, lr=3e-3, changes=changes, device="cpu").fit(x, y)
        assert det.model_.encoder.d_in == (2 if changes else 1)
        s = det.reset().decision_function(test_x)
        ok = np.isfinite(s)
        ap[changes] = metrics.average_precision(det.targets(test_y)[ok], s[ok])
    base_rate = det.targets(test_y).mean()
    assert ap[True] > 4 * base_rate and ap[True] > ap[False] + 0.15, (ap, base_rate)


def test_a_bundle_written_before_changes_existed_reads_values_only():
    """tests/data/rnn_values_only.anomaly was written by the code before ``changes`` (commit 6d89ddd)."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data"
    assert "changes" not in al.read_header(data / "rnn_values_only.anomaly")["params"]
    det = al.load(data / "rnn_values_only.anomaly")
    expected = np.load(data / "rnn_values_only_expected.npz")
    assert det.changes is False and det.scaler_mean_.shape == (1,)
    np.testing.assert_array_equal(det.reset().decision_function(expected["x"]), expected["scores"])


def test_a_tail_past_the_largest_probability_stays_below_one(monkeypatch):
    """``fpr`` below what the calibration scores certify extrapolates a tail past the largest of
    them; fitted to the logits it stays below 1 (fitted to probabilities crowding 1 it passed it,
    and nothing was ever flagged), and the p-values agree with the threshold. Only scores that
    sit at 1 itself leave nothing to flag: one warning."""
    x, y = jitter_precursors(1500, 5)
    kw = dict(window=16, horizon=10, hidden=8, epochs=1, device="cpu")
    high = np.random.default_rng(0).uniform(0.5, 0.999, len(x))  # probabilities crowding the bound
    monkeypatch.setattr(SupervisedRNN, "_score_steps", lambda self, v: high[: len(v)].copy())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="fpr=0.005: the threshold")
        det = SupervisedRNN(**kw, fpr=0.005).fit(x, y)  # (255 scores certify 1/256: the tail decides)
    cal = det.calibration_scores_
    assert cal.size == 255 and cal.max() < det.threshold_ < 1.0
    t = det.threshold_
    p = det.p_values(np.array([t - 1e-9, t + 1e-9, np.nan]))
    assert p[0] > 0.005 >= p[1] and np.isnan(p[2])
    assert det.flag(np.array([t - 1e-9, t + 1e-9])).tolist() == [False, True]
    monkeypatch.setattr(SupervisedRNN, "_score_steps", lambda self, v: np.ones(len(v)))
    with pytest.warns(UserWarning, match=r"fpr=0.005: the threshold lies at a probability of 1, so nothing will be "
                      r"flagged"):
        assert SupervisedRNN(**kw, fpr=0.005).fit(x, y).threshold_ == 1.0


def test_fpr_sets_the_threshold_on_the_normal_steps_of_the_validation_tail(tmp_path):
    x, y = jitter_precursors(4000, 5)
    kw = dict(window=32, horizon=10, hidden=16, epochs=8, lr=3e-3, device="cpu")
    plain = SupervisedRNN(**kw).fit(x, y)
    assert plain.threshold_ == 0.5 and plain.calibration_scores_ is None
    det = SupervisedRNN(**kw, fpr=0.02).fit(x, y)
    # the same network (the threshold is set after training), calibrated on the tail's normal steps
    np.testing.assert_array_equal(det.reset().decision_function(x), plain.reset().decision_function(x))
    scores = det.reset().decision_function(x)
    target = det.targets(y)
    start = len(x) - int(round(0.2 * (len(x) - 10 - 31)))  # the last val_fraction of the known steps
    tail = np.arange(len(x)) >= start - 10
    normal = tail & (target == 0) & (y == 0) & np.isfinite(scores)
    assert abs(len(det.calibration_scores_) - normal.sum()) <= 12  # the tail's normal steps
    assert np.mean(scores[normal] > det.threshold_) <= 0.02 + 1e-9
    assert "at fpr 0.02 on" in det.summary()
    # on a later stretch of the same process the rate holds, and p-values come with the scores
    later_x, later_y = jitter_precursors(3000, 7)
    s = det.reset().decision_function(later_x)
    later_normal = np.isfinite(s) & (det.targets(later_y) == 0) & (later_y == 0)
    assert np.mean(s[later_normal] > det.threshold_) < 0.06
    p = det.p_values(s[np.isfinite(s)])
    assert ((p > 0) & (p <= 1)).all()
    det.save(tmp_path / "r.anomaly")
    back = al.load(tmp_path / "r.anomaly")
    assert back.threshold_ == det.threshold_ and back.fpr == 0.02
    np.testing.assert_array_equal(back.calibration_scores_, det.calibration_scores_)


@pytest.mark.parametrize("params, message", [
    (dict(fpr=0.01, contamination=0.1), "fpr and contamination both set the threshold"),
    (dict(fpr=0.01, val_fraction=0.0), "needs val_fraction > 0"),
    (dict(fpr=1.5), "fpr"),
])
def test_fpr_with_what_it_cannot_work_with_is_one_error(params, message):
    x, y = jitter_precursors(600, 1)
    with pytest.raises(AnomalyError, match=message):
        SupervisedRNN(window=16, horizon=5, epochs=1, device="cpu", **params).fit(x, y)
