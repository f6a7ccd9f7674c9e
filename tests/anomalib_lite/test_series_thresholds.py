"""Streaming smoothing and thresholds (EWMA, moving windows, Telemanom) and the series metrics."""
import numpy as np
import pytest
import torch

from anomalib_lite.errors import AnomalyError
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


def test_label_events_extend_each_run_by_the_window_and_merge_what_then_overlaps():
    y = np.zeros(60, dtype=int)
    y[[5, 6, 7, 20, 24, 58, 59]] = 1
    assert metrics.label_events(y) == ([(5, 7), (20, 20), (24, 24), (58, 59)], [5, 20, 24, 58])
    # 5 steps after each: the runs at 20 and 24 become one anomaly; the last is cut at the end
    assert metrics.label_events(y, after=5) == ([(5, 12), (20, 29), (58, 59)], [5, 20, 58])
    assert metrics.label_events(np.zeros(9)) == ([], [])


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


def _phased(seed: int = 0, n: int = 3000) -> np.ndarray:
    """A daily-like rhythm of 48 steps whose errors differ by phase: loud half, quiet half."""
    t = np.arange(n)
    loud = (t % 48) < 24
    return np.sin(2 * np.pi * t / 48) + np.where(loud, 0.3, 0.03) * np.random.default_rng(seed).normal(size=n)


def _small(**kw):
    import anomalib_lite as al

    return al.Continuation(**{"window": 24, "horizon": 1, "hidden": 16, "num_layers": 1, "epochs": 30, "season": 48,
                              "smoothing": 1.0, "device": "cpu", "verbose": False, **kw})


def test_time_blocked_cross_fitting_scores_every_training_step_and_keeps_the_rate(tmp_path):
    """The training steps, each scored by a model fitted without a target in its block, join the
    held-out end: every phase of the rhythm counts, and on the clean continuation the threshold
    flags about its target (5 %; measured 2.3 % to 4.9 % over seeds 0 to 2). The held-out end's own
    scores stay the surprise's prior, and the bundle keeps both."""
    import anomalib_lite as al

    x = _phased()
    det = _small().fit(x[:400])
    det.cross_calibrate(x[:400], fpr=0.05, folds=3, after=x[400:420])
    oof = len(det.calibration_scores_) - 20
    assert oof >= 400 - 48 - 24 and len(det.holdout_scores_) == 20  # every step with a window and a period behind it
    kept = det._stream_scores(x[:400], x[400:420])[1]
    assert np.allclose(det.holdout_scores_, np.sort(kept))  # this detector's own scores of the held-out end
    det.reset()
    s = det.decision_function(x)[420:]
    rate = float(np.mean(s[np.isfinite(s)] > det.threshold_))
    assert 0.02 <= rate <= 0.10, rate
    det.save(tmp_path / "m.anomaly")
    back = al.load(tmp_path / "m.anomaly")
    assert back.threshold_ == det.threshold_ and np.array_equal(back.calibration_scores_, det.calibration_scores_)


def test_a_cross_fitting_fold_never_learns_its_block():
    """A fold's training targets: none reaches into its block (the steps just before it predict
    the block's steps, so they go too), every other one is kept, and the error scale is measured
    on the steps it learned."""
    x = _phased(n=600)
    det = _small(epochs=1)
    skip = np.zeros(600, bool)
    skip[200:400] = True
    z = x[:, None]
    y = det._targets(z, skip)
    assert np.isnan(y[199:400]).all() and np.isfinite(y[:199]).all() and np.isfinite(y[400:-1]).all()
    det._skip = skip
    det.fit(x)  # (the fold's own fit: trains on the rest)
    assert np.isfinite(det.err_scale_).all()
    wide = _small(epochs=1, horizon=3)  # every target t -> t + k, k <= 3, that touches a skipped step goes
    skip = np.zeros(600, bool)
    skip[[100, 300, 301]] = True
    y = wide._targets(z, skip).reshape(600, 3)
    gone = np.isnan(y).all(1)
    assert np.flatnonzero(gone[:-3]).tolist() == [97, 98, 99, 100, 297, 298, 299, 300, 301]


def test_cross_fitting_a_series_refuses_what_it_cannot_cut():
    x = _phased(n=600)
    det = _small(epochs=1).fit(x)
    with pytest.raises(AnomalyError, match=r"a series of 600 steps cannot make 300 blocks of more than horizon = 1 "
                       r"steps after its first 72 \(window \+ season, which have no score"):
        det.cross_calibrate(x, folds=300)
    with pytest.raises(AnomalyError, match="folds >= 2"):
        det.cross_calibrate(x, folds=1)
    with pytest.raises(AnomalyError, match="not a one-shot iterator"):
        det.cross_calibrate(iter([x[:300], x[300:]]))
    with pytest.raises(AnomalyError, match=r"normal= holds 599 steps for the 500 of the series and the 100 after it"):
        det.cross_calibrate(x[:500], after=x[500:], normal=np.ones(599, bool))


def test_steps_that_may_not_calibrate_are_left_out_of_the_threshold_not_of_the_prior():
    """``normal=`` (what ``fit`` gives from a series' labels) removes steps from the calibration
    scores; the held-out end's scores stay NAB's prior whole."""
    x = _phased(n=600)
    det = _small(epochs=1).fit(x[:500])
    det.cross_calibrate(x[:500], fpr=0.05, folds=3, after=x[500:])
    every, prior = det.calibration_scores_.copy(), det.holdout_scores_.copy()
    normal = np.ones(600, bool)
    normal[300:340] = normal[550:560] = False
    det.cross_calibrate(x[:500], fpr=0.05, folds=3, after=x[500:], normal=normal)
    assert det.calibration_scores_.size == every.size - 50 and np.array_equal(det.holdout_scores_, prior)


def _spiked(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """``_phased`` with 12 labelled spikes of +12 (a step each) at fixed places."""
    x, y = _phased(n=n), np.zeros(n, int)
    at = np.arange(75, n - 20, 43)[:12]
    x[at] += 12.0
    y[at] = 1
    return x, y


def test_a_labelled_fit_does_not_learn_its_anomalies():
    """A series with labels (an ``(X, y)`` pair): no training target reaches a step labelled 1
    and the error scale is the normal steps' (unlabelled, the spikes inflate it, and every score
    shrinks); a series source with a label column gives the same fit; ``fit(X, y)`` ignores
    ``y``, as scikit-learn's unsupervised estimators do."""
    from anomalib_lite.data.series_sources import SeriesSource

    x, y = _spiked()
    plain = _small(epochs=2).fit(x)
    labelled = _small(epochs=2).fit((x, y))
    assert labelled.err_scale_[0] < 0.8 * plain.err_scale_[0], (labelled.err_scale_, plain.err_scale_)
    assert np.array_equal(_small(epochs=2).fit(x, y).err_scale_, plain.err_scale_)
    source = SeriesSource("spiked", x[:, None], ["v"], labels=y)
    again = _small(epochs=2).fit(source)
    assert np.allclose(again.err_scale_, labelled.err_scale_, rtol=1e-6)
    clean = _small(epochs=2)
    clean._skip = y.astype(bool)  # what the labels do, set by hand: the same network
    clean.fit(x)
    for a, b in zip(clean.model_.parameters(), labelled.model_.parameters()):
        assert torch.allclose(a, b)


def test_labels_that_leave_nothing_normal_to_learn_are_one_error():
    x = _phased(n=600)
    y = np.zeros(600, int)
    y[::3] = y[-1] = 1  # with horizon 2, every target t -> t + 1, t + 2 reaches a labelled step
    with pytest.raises(AnomalyError, match=r"data: every step's forecast target reaches a step labelled anomalous "
                       r"\(201 of 600 steps labelled; a target spans the 3 steps from t to t \+ horizon\)"):
        _small(epochs=1, horizon=2).fit((x, y))


def test_cross_fitting_a_labelled_series_leaves_its_anomalies_out_of_folds_and_threshold():
    """``cross_calibrate`` on labelled steps (a source's label column, or ``(X, y)``): the folds
    do not learn them, and the calibration scores leave out each and the window after it, as an
    explicit ``normal=`` would."""
    from anomalib_lite.scoring.metrics import in_spans, label_events

    x, y = _spiked()
    det = _small(epochs=2).fit((x[:500], y[:500]))
    det.cross_calibrate((x[:500], y[:500]), fpr=0.05, folds=3, after=(x[500:], y[500:]))
    derived = det.calibration_scores_.copy()
    normal = ~in_spans(label_events(y, after=det.window)[0], 600)
    det.cross_calibrate((x[:500], y[:500]), fpr=0.05, folds=3, after=(x[500:], y[500:]), normal=normal)
    assert np.array_equal(det.calibration_scores_, derived)
    blind = det.calibration_scores_
    det.cross_calibrate(x[:500], fpr=0.05, folds=3, after=x[500:])  # no labels: every step calibrates
    assert blind.size < det.calibration_scores_.size and blind.max() < det.calibration_scores_.max()


def test_calibrating_on_a_labelled_stretch_leaves_its_anomalies_out_not_of_the_prior():
    """``calibrate(normal, context=)`` (a series too short for cross-fitting): labelled steps of
    either part, and the window after each, set no threshold; ``holdout_scores_`` keeps them."""
    x, y = _spiked()
    det = _small(epochs=2, season=0).fit((x[:400], y[:400]))
    det.calibrate((x[400:], y[400:]), fpr=0.05, context=(x[:400], y[:400]))
    ok = det.calibrating_steps(y)[400:]
    assert det.calibration_scores_.size == ok.sum() < 200 and det.holdout_scores_.size == 200
    left = det.calibration_scores_.max()
    det.calibrate(x[400:], fpr=0.05, context=x[:400])
    assert det.calibration_scores_.size == 200 and det.calibration_scores_.max() > 2 * left


def test_labels_that_cleared_the_calibration_scores_let_the_counts_set_the_threshold(tmp_path):
    """Calibrated on steps the labels cleared of anomalies, the threshold and p-values are
    conformal where the counts decide (``fit_tail(start=None)``), not the robust tail kept for
    unlabelled series; the bundle keeps which, and a bundle written before it reads as robust."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    import anomalib_lite as al
    from anomalib_lite.bundles.bundle import _checksum
    from anomalib_lite.detectors.series import TAIL_START
    from anomalib_lite.scoring.thresholds import tail_threshold

    x, y = _spiked()
    det = _small(epochs=2).fit((x[:500], y[:500]))
    det.cross_calibrate((x[:500], y[:500]), fpr=0.05, folds=3, after=(x[500:], y[500:]))
    cal = det.calibration_scores_
    assert det.clean_calibration_ and det.threshold_ == tail_threshold(cal, 0.05)
    assert det.threshold_ != tail_threshold(cal, 0.05, start=TAIL_START)
    grid = np.linspace(cal.min(), 2 * cal.max(), 500)
    assert np.array_equal(det.p_values(grid) <= 0.05, grid > det.threshold_)
    assert (cal > det.threshold_).mean() <= 0.05 < (cal >= det.threshold_).mean() + 1 / len(cal)  # the count's
    det.save(tmp_path / "m.anomaly")
    back = al.load(tmp_path / "m.anomaly")
    assert back.clean_calibration_ and np.array_equal(back.p_values(grid), det.p_values(grid))
    with safe_open(str(tmp_path / "m.anomaly"), "pt") as f:  # a bundle written before the field
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        header = json.loads(f.metadata()["anomalib_lite"])
    del header["fitted"]["clean_calibration_"]
    header["checksum"] = _checksum(header, tensors)
    save_file(tensors, str(tmp_path / "old.anomaly"), metadata={"anomalib_lite": json.dumps(header)})
    old = al.load(tmp_path / "old.anomaly")
    assert np.array_equal(old.p_values(grid) <= 0.05, grid > tail_threshold(cal, 0.05, start=TAIL_START))
    det.cross_calibrate(x[:500], fpr=0.05, folds=3, after=x[500:])  # no labels: the robust tail
    assert not det.clean_calibration_ and det.threshold_ == tail_threshold(det.calibration_scores_, 0.05,
                                                                           start=TAIL_START)


@pytest.mark.parametrize("rhythm", [True, False])  # a season found (48), and none (noise)
def test_each_fold_is_given_the_detectors_season(monkeypatch, rhythm):
    """A fold refits the fitted detector's structure: its season (or none), never one found
    again on the fold's steps (a season the full fit dropped, found on a fold's steps, moved the
    fold's first scored step past its block: "no samples to train on", on NAB's occupancy_6005)."""
    from anomalib_lite.detectors.continuation import Continuation

    x = rhythm * np.sin(2 * np.pi * np.arange(600) / 48) + 0.01 * np.random.default_rng(0).normal(size=600)
    det = _small(epochs=1, season="auto").fit(x)
    assert det.season_ == (48 if rhythm else 0)
    asked, fit = [], Continuation.fit
    monkeypatch.setattr(Continuation, "fit", lambda self, X, y=None: asked.append(self.season) or fit(self, X, y))
    det.cross_calibrate(x, folds=3)
    assert asked == [det.season_] * 3


def test_anomalies_in_the_training_series_do_not_raise_its_threshold():
    """The training series holds bursts (5 % of its steps); scored out of fold, they are among
    the calibration scores, yet the 1 % threshold stays near the clean series' (the top tenth's
    mean excess, the tail before, put it among the bursts), and a burst of the same kind later
    is flagged."""
    rng = np.random.default_rng(0)
    x = _phased()
    dirty = x.copy()
    for start in (120, 200, 300, 360):  # 4 bursts of 5 steps in the 400 training steps
        dirty[start : start + 5] += rng.normal(0, 3, 5)
    clean = _small().fit(x[:400]).cross_calibrate(x[:400], fpr=0.01, after=x[400:420])
    det = _small().fit(dirty[:400]).cross_calibrate(dirty[:400], fpr=0.01, after=x[400:420])
    assert det.threshold_ < 1.5 * clean.threshold_, (det.threshold_, clean.threshold_)
    later = x.copy()
    later[1000:1005] += rng.normal(0, 3, 5)
    det.reset()
    s = det.decision_function(later)
    assert (s[1000:1010] > det.threshold_).any()
