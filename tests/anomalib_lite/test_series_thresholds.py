"""Streaming smoothing and thresholds (EWMA, moving windows, Telemanom) and the series metrics."""
import numpy as np
import pytest

from anomalib_lite.scoring import metrics
from anomalib_lite import p_values
from anomalib_lite.components.streaming import Ewma, MovingWindow
from anomalib_lite.scoring.thresholds import MovingThreshold, dynamic_threshold


def _chunks(x, sizes):
    out, i = [], 0
    for s in sizes:
        out.append(x[i : i + s])
        i += s
    out.append(x[i:])
    return out


def test_ewma_matches_the_recursion_and_chunking():
    x = np.array([np.nan, np.nan, 1.0, 3.0, np.nan, 2.0])
    e = Ewma(3).update(x)  # alpha = 0.5, started at the first value
    assert np.isnan(e[:2]).all() and np.isnan(e[4])
    assert e[2:4].tolist() == [1.0, 2.0] and e[5] == 2.0
    z = np.random.default_rng(0).normal(size=500)
    whole = Ewma(10).update(z)
    s = Ewma(10)
    assert np.array_equal(whole, np.concatenate([s.update(c) for c in _chunks(z, [1, 7, 100, 3])]))


def test_moving_window_statistics_over_the_last_values():
    z = np.random.default_rng(1).normal(size=3000) * 5 + 100
    w = MovingWindow(250)
    for i, v in enumerate(z):
        w.push(v)
        if i in (10, 249, 1234, 2999):
            ref = z[max(0, i - 249) : i + 1]
            assert len(w) == len(ref)
            assert w.mean() == pytest.approx(ref.mean(), rel=1e-12)
            assert w.std() == pytest.approx(ref.std(), rel=1e-9)
            assert w.quantile(0.9) == pytest.approx(np.quantile(ref, 0.9), rel=1e-12)


@pytest.mark.parametrize("method", ["std", "quantile"])
def test_moving_threshold_judges_each_score_by_the_ones_before(method):
    rng = np.random.default_rng(2)
    s = rng.normal(size=2000)
    s[[700, 1500]] = 8.0
    s[:5] = np.nan
    flags = MovingThreshold(method, window=300, k=4.0, q=0.999).update(s)
    # brute force: the threshold of step i comes from the finite scores before i (last 300)
    expected = np.zeros_like(flags)
    for i in range(len(s)):
        past = s[:i][np.isfinite(s[:i])][-300:]
        if np.isnan(s[i]) or len(past) < 30:
            continue
        t = past.mean() + 4 * past.std() if method == "std" else np.quantile(past, 0.999)
        expected[i] = s[i] > t
    assert np.array_equal(flags, expected)
    assert flags[700] and flags[1500] and not flags[:5].any()
    if method == "std":
        assert flags.sum() <= 4
    again = MovingThreshold(method, window=300, k=4.0, q=0.999)
    assert np.array_equal(flags, np.concatenate([again.update(c) for c in _chunks(s, [3, 400, 1])]))


def test_moving_threshold_floor_keeps_noise_unflagged():
    noise = np.abs(np.random.default_rng(3).normal(size=500)) * 1e-4
    assert MovingThreshold("std", 100, k=1.0).update(noise).any()
    assert not MovingThreshold("std", 100, k=1.0, floor=1.0).update(noise).any()


def test_dynamic_threshold_finds_anomalies_and_prunes_small_bumps():
    rng = np.random.default_rng(4)
    e = np.abs(rng.normal(size=3000)) * 0.1
    e[1000:1010] += 3.0  # a clear anomaly
    e[2000:2005] += 2.5  # another
    e[:50] = np.nan
    eps, flags = dynamic_threshold(e)
    assert np.isfinite(eps) and (e[flags] > eps).all()
    assert flags[1000:1010].any() and flags[2000:2005].any()
    assert not flags[:50].any() and flags[:1000].sum() == 0 and flags[1010:2000].sum() == 0
    # pruning: a bump whose peak is within 13 % of the normal maximum is dropped
    e2 = np.abs(rng.normal(size=3000)) * 0.1
    e2[500:505] += 3.0
    top_normal = e2[np.r_[0:500, 505:3000]].max()
    e2[2500] = top_normal * 1.05  # a lone point barely above the others
    _, flags2 = dynamic_threshold(e2)
    assert flags2[500:505].any() and not flags2[2500]
    assert dynamic_threshold(np.ones(100))[1].sum() == 0  # constant errors: nothing to flag


def test_p_values_of_nan_scores_are_nan():
    p = p_values([np.nan, 0.5, 10.0], [0.0, 1.0, 2.0])
    assert np.isnan(p[0]) and p[1] == 0.75 and p[2] == 0.25


def test_window_metrics_recall_false_alarms_and_lead():
    flags = np.zeros(1000, dtype=bool)
    flags[[95, 105, 500, 501, 900]] = True  # 95: 5 before the reference at 100; 500, 501, 900: outside
    m = metrics.window_metrics(flags, [(90, 120), (300, 320)], references=[100, 310])
    assert m["recall"] == 0.5 and m["detected"] == 1 and m["leads"] == [5]
    assert m["false_alarms"] == 3 and m["false_alarms_per_1k"] == pytest.approx(3000 / (1000 - 31 - 21))


def test_early_warning_labels_onsets_and_lead_times():
    y = np.zeros(40, dtype=int)
    y[[10, 11, 12, 30, 31]] = 1
    assert metrics.onsets(y).tolist() == [10, 30]
    w = metrics.early_warning_labels(y, 3)
    assert np.flatnonzero(w).tolist() == [7, 8, 9, 27, 28, 29]  # onset within (t, t + 3]
    assert np.flatnonzero(metrics.early_warning_labels(y, 0)).tolist() == [10, 30]
    alarms = np.zeros(40, dtype=bool)
    alarms[[8, 11, 20]] = True  # 8 warns of 10 (lead 2); 11 is inside the anomaly; 20 is false
    m = metrics.lead_times(alarms, y, 3)
    assert m["onsets"] == 2 and m["warned"] == 0.5 and m["mean_lead"] == 2.0
    assert m["false_alarms_per_1k"] == pytest.approx(1000 / (40 - 5 - 6))


def test_metrics_leave_out_nan_scores():
    assert metrics.roc_auc([0, 0, 1, 1], [np.nan, 0.1, np.nan, 0.9]) == 1.0


def test_a_held_out_end_shorter_than_the_season_is_completed_to_one_period(tmp_path):
    """Errors that differ by phase (noisy days, quiet nights) and a held-out end of 12 steps that
    sees only the quiet phase: the training steps' last scores complete the calibration set to
    one period, so on a clean continuation the threshold flags about its target rate (0 %; the
    held-out end alone: 7.1 %). The held-out end's own scores stay apart (the surprise's prior),
    and both survive a bundle."""
    import anomalib_lite as al

    rng = np.random.default_rng(0)
    t = np.arange(3000)
    loud = (t % 48) < 24
    x = np.sin(2 * np.pi * t / 48) + np.where(loud, 0.3, 0.03) * rng.normal(size=len(t))
    assert not loud[408:420].any()  # the held-out end: quiet
    det = al.Continuation(window=24, horizon=1, hidden=16, num_layers=1, epochs=5, season=48, smoothing=1.0,
                          device="cpu", verbose=False).fit(x[:400])
    det.calibrate(x[408:420], fpr=0.01, context=x[:408])
    assert len(det.calibration_scores_) == 48 and len(det.holdout_scores_) == 12
    det.reset()
    s = det.decision_function(x)[420:]
    rate = float(np.mean(s[np.isfinite(s)] > det.threshold_))
    assert rate <= 0.03, rate
    det.save(tmp_path / "m.anomaly")
    back = al.load(tmp_path / "m.anomaly")
    assert np.array_equal(back.holdout_scores_, det.holdout_scores_)
    assert np.array_equal(back.calibration_scores_, det.calibration_scores_)
    det.reset()
    assert np.allclose(back.unit_scores(back.decision_function(x[:1000])), det.unit_scores(det.decision_function(x[:1000])),
                       equal_nan=True)
