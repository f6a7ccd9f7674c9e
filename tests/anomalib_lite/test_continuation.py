"""Continuation: forecasting, planted anomalies, streams that equal whole series, online learning,
bundles, and bad input."""
import copy

import numpy as np
import pytest
import torch

import anomalib_lite as al
from anomalib_lite import AnomalyError, Continuation
from anomalib_lite.detectors.series import TOLERANCE


def wave(n, seed, period=20.0):
    t = np.arange(n)
    noise = 0.05 * np.random.default_rng(seed).normal(size=n)
    return np.sin(2 * np.pi * t / period) + 0.5 * np.sin(4 * np.pi * t / period + 1) + noise


def frequency_change(n, seed, at, length, period=11.0):
    f = np.full(n, 1 / 20.0)
    f[at : at + length] = 1 / period
    phase = 2 * np.pi * np.cumsum(f)
    return np.sin(phase) + 0.5 * np.sin(2 * phase + 1) + 0.05 * np.random.default_rng(seed).normal(size=n)


SMALL = {"window": 24, "horizon": 3, "hidden": 16, "num_layers": 1, "season": 0, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted():
    det = Continuation(**SMALL, epochs=20, lr=3e-3, smoothing=3)
    return det.fit(wave(1500, 0)).calibrate(wave(1100, 1), fpr=0.001)


def test_forecast_error_falls_with_training():
    short = Continuation(**SMALL, epochs=1, lr=3e-3).fit(wave(1500, 0))
    long = Continuation(**SMALL, epochs=20, lr=3e-3).fit(wave(1500, 0))
    loss = long.history_.val_loss
    assert loss[-1] < 0.2 * loss[0]
    # err_scale_: mean absolute forecast error on the training series, in standard deviations
    assert long.err_scale_[0] < 0.5 * short.err_scale_[0] and long.err_scale_[0] < 0.15


@pytest.mark.parametrize("kind", ["spike", "level_shift", "frequency_change"])
def test_planted_anomalies_are_flagged_and_normal_surroundings_are_not(fitted, kind):
    x = wave(700, 2)
    if kind == "spike":
        x[300] += 3.0
    elif kind == "level_shift":
        x[300:] += 1.5  # the new level persists: only the change is anomalous
    else:
        x = frequency_change(700, 2, at=300, length=100)
    end = 420 if kind == "frequency_change" else 330
    flags = fitted.reset().predict(x)
    assert flags[300:end].sum() >= (30 if kind == "frequency_change" else 2)
    assert not flags[:300].any() and not flags[end:].any()
    assert not fitted.reset().predict(wave(700, 2)).any()


def test_a_series_far_from_zero_scores_as_its_changes_do():
    """A meter's running total (1e9 + a small signal): read in float32, its changes were rounded
    to steps of 64 and a planted bump scored as chance; read in float64 and standardised first,
    it scores as the same signal near 0 does."""
    x = wave(1400, 3)
    x[1200:1210] += 1.0
    scores = {}
    for offset in (0.0, 1e9):
        det = Continuation(**SMALL, epochs=3, lr=3e-3, smoothing=3).fit(x[:1000] + offset)
        det.reset().decision_function(x[:1000] + offset)
        scores[offset] = det.decision_function(x[1000:] + offset)
    np.testing.assert_allclose(scores[1e9], scores[0.0], rtol=1e-3, atol=1e-3)
    assert np.nanmax(scores[1e9][200:215]) > np.nanmax(scores[1e9][:190])  # the bump ranks above every normal step


def test_absolute_reading_keeps_a_new_level_anomalous():
    det = Continuation(**SMALL, epochs=20, lr=3e-3, smoothing=3, relative=False)
    det.fit(wave(1500, 0)).calibrate(wave(1100, 1), fpr=0.001)
    x = wave(700, 2)
    x[300:] += 1.5
    flags = det.reset().predict(x)
    assert not flags[:300].any() and flags[400:].mean() > 0.5  # relative=True flags only the change


def test_global_scaling_keeps_a_near_constant_channel_from_dominating():
    rng = np.random.default_rng(11)
    x = np.stack([wave(1300, 0), 1e-3 * rng.normal(size=1300)], axis=1)
    test = np.stack([wave(400, 2), 1e-3 * rng.normal(size=400)], axis=1)
    test[200, 1] = 0.05  # a blip far below the other channel's scale
    surprise = {}
    for scaling in ("channel", "global"):
        s = Continuation(**SMALL, epochs=10, lr=3e-3, smoothing=1, scaling=scaling).fit(x).decision_function(test)
        surprise[scaling] = s[200:203].max() / np.nanmedian(s)  # the blip's score, in typical scores
    assert surprise["channel"] > 10 and surprise["global"] < 3


def close(a, b):
    """Scores of one stream however it was cut: equal within the README's stated tolerance."""
    return np.allclose(a, b, equal_nan=True, **TOLERANCE)


@pytest.mark.parametrize("model, season", [("lstm", 0), ("tcn", 0), ("lstm", 20), ("tcn", 13)])
def test_one_step_and_chunked_scores_equal_the_whole_series(model, season):
    rng = np.random.default_rng(3)
    x = np.stack([wave(400, 4), wave(400, 5, period=13)], axis=1)
    det = Continuation(network=model, **{**SMALL, "horizon": 4, "season": season}, epochs=2, smoothing=5,
                       threshold_rule="moving", threshold_window=100, threshold_k=2.0).fit(x[:300])
    assert det.season_ == season
    whole = det.reset().decision_function(x)  # one torch pass
    flags_whole = det.reset().predict(x)
    det.reset()
    one = [det.decision_function(x[i : i + 1]) for i in range(len(x))]  # numpy, one step at a time
    assert all(s.shape == (1,) for s in one) and close(np.concatenate(one), whole)
    det.reset()
    cuts = np.sort(rng.choice(np.arange(1, 400), size=25, replace=False))
    parts, flags = [], []
    for chunk in np.split(x, cuts):  # chunks of 1 to ~40 steps: both paths, switching
        s = det.decision_function(chunk)
        parts.append(s)
        flags.append(det.flag(s))
    assert close(np.concatenate(parts), whole)
    assert (np.concatenate(flags) != flags_whole).sum() <= 1  # only a score within the tolerance of its threshold may differ
    first = 24 + season  # NaN until a window (after a period) is full
    assert np.isnan(whole[:first]).all() and np.isfinite(whole[first:]).all()
    assert flags_whole.any()  # the moving threshold (k=2) did flag something: the comparison is not vacuous


def test_a_daily_rhythm_longer_than_the_window_is_learned_as_a_season():
    t = np.arange(3000)
    day = np.where(t % 96 < 30, 1.0, 0.0) + 0.05 * np.random.default_rng(0).normal(size=3000)  # jumps every 96 steps
    x = day.copy()
    x[2400 + 10 : 2400 + 96] = 0.0  # one day without its jump (NAB's art_daily_nojump)
    scores = {}
    for season in ("auto", 0):
        det = Continuation(**{**SMALL, "season": season}, epochs=15, lr=3e-3, smoothing=1).fit(x[:1200])
        s = det.reset().decision_function(x)
        scores[season] = (det.season_, np.nanmax(s[2400:2500]) / np.nanmax(s[1300:2300]))
    assert scores["auto"][0] == 96 and scores[0][0] == 0
    assert scores["auto"][1] > 2  # the missing jump stands out above every normal day's jumps
    assert scores[0][1] < 1  # without the season, every normal jump surprises more than the missing one


def test_streams_continue_reset_starts_over_and_calibrate_leaves_the_stream(fitted):
    x = wave(200, 6)
    first = fitted.reset().decision_function(x)
    cont = fitted.decision_function(x)  # continues: the previous chunk supplies the window
    assert np.isfinite(cont).all() and not np.array_equal(cont, first, equal_nan=True)
    assert np.array_equal(fitted.reset().decision_function(x), first, equal_nan=True)
    fitted.reset().decision_function(x[:100])
    kept = copy.deepcopy(fitted)
    fitted.calibrate(wave(1100, 1), fpr=0.001)  # scores its own stream
    assert np.array_equal(fitted.decision_function(x[100:]), kept.decision_function(x[100:]))


def test_calibration_continues_the_training_series_and_fits_a_short_probation_period():
    """NAB's probationary period: 15 % of a 4,032-step file; the defaults fit it, and the held-out
    10 % (60 steps, shorter than the window) is scored as the training steps' continuation."""
    src = al.load_data("nab:realKnownCause/ec2_request_latency_system_failure.csv?stop=0.15")
    train, held = src.split(0.1)
    assert len(src) == 605 and len(held) == 60 < Continuation().window
    det = Continuation(epochs=3)  # every default but the epochs (the test stays light)
    det.fit(train)
    with pytest.raises(AnomalyError, match="gives no score"):
        det.calibrate(held)  # as a fresh stream: too short for the window
    det.calibrate(held, context=train)
    assert len(det.calibration_scores_) == 60 and np.isfinite(det.threshold_)
    fresh = copy.deepcopy(det).reset()
    fresh.decision_function(train.values)
    assert np.allclose(np.sort(fresh.decision_function(held.values)), det.calibration_scores_, **TOLERANCE)


def test_p_values_follow_a_new_calibration(fitted):
    """p-values keep the tail they fitted while the calibration scores stay; a new calibration
    refits it (a stream asks one step at a time; the answer is never stale)."""
    from anomalib_lite.detectors.series import TAIL_START
    from anomalib_lite.scoring.thresholds import fit_tail, tail_p_values

    det = copy.deepcopy(fitted)
    s = det.reset().decision_function(wave(300, 8))
    first = det.p_values(s)
    robust = lambda cal: tail_p_values(s, cal, tail=fit_tail(cal, start=TAIL_START))  # noqa: E731  (the series' tail)
    assert np.array_equal(first, robust(det.calibration_scores_), equal_nan=True)
    assert np.array_equal(np.concatenate([det.p_values(s[i : i + 1]) for i in range(len(s))]), first, equal_nan=True)
    det.calibration_scores_ = det.calibration_scores_ * 3.0  # a wider calibration: every score less surprising
    second = det.p_values(s)
    assert np.array_equal(second, robust(det.calibration_scores_), equal_nan=True)
    assert (second[np.isfinite(first)] >= first[np.isfinite(first)]).all() and not np.array_equal(second, first, equal_nan=True)


def test_nan_warm_up_has_nan_p_values_and_is_never_flagged(fitted):
    x = wave(100, 7)
    s = fitted.reset().decision_function(x)
    p = fitted.p_values(s)
    assert np.isnan(s[:24]).all() and np.isnan(p[:24]).all() and np.isfinite(p[24:]).all()
    fitted.threshold_, kept = -1.0, fitted.threshold_  # flag every finite score
    try:
        flags = fitted.reset().predict(x)
    finally:
        fitted.threshold_ = kept
    assert not flags[:24].any() and flags[24:].all()


@pytest.mark.parametrize("threshold", ["calibrated", "dynamic", "quantile"])
def test_bundle_round_trip_scores_identically(tmp_path, fitted, threshold):
    fitted.set_params(threshold_rule=threshold)
    try:
        x = wave(300, 8)
        x[150] += 3
        fitted.save(tmp_path / "c.anomaly")
        back = al.load(tmp_path / "c.anomaly")
        assert type(back) is Continuation and back.get_params() == fitted.get_params()
        assert np.array_equal(back.decision_function(x), fitted.reset().decision_function(x), equal_nan=True)  # loaded: a reset stream
        assert np.array_equal(back.reset().predict(x), fitted.reset().predict(x))
        assert back.threshold_ == fitted.threshold_
        assert np.array_equal(back.p_values(back.reset().decision_function(x)), fitted.p_values(fitted.reset().decision_function(x)), equal_nan=True)
    finally:
        fitted.set_params(threshold_rule="calibrated")
    header = al.read_header(tmp_path / "c.anomaly")
    assert header["fitted"]["input_shape_"] == [1] and header["fitted"]["season_"] == fitted.season_


def test_partial_fit_is_test_then_train():
    det = Continuation(**SMALL, epochs=10, lr=3e-3, smoothing=1, learn_every=32, online_lr=0.05).fit(wave(800, 0))
    frozen = copy.deepcopy(det.reset())
    new = wave(3000, 9, period=31.0)  # a slower rhythm than the one it was fitted on
    before = copy.deepcopy(det).decision_function(new[:60])
    det.partial_fit(new[:60])  # one batch (batch_size=64): scored, then learned from
    assert np.array_equal(det.last_scores_, before, equal_nan=True) and det.n_updates_ == 1
    for i in range(60, 2800, 100):
        det.partial_fit(new[i : i + 100])
    assert det.n_updates_ > 40
    later = new[2800:]
    assert np.nanmean(det.reset().decision_function(later)) < 0.5 * np.nanmean(frozen.decision_function(later))  # it learned


@pytest.mark.parametrize("learn_flagged", [True, False])
def test_partial_fit_can_skip_flagged_points(learn_flagged):
    det = Continuation(**SMALL, epochs=2, learn_every=8, learn_flagged=learn_flagged).fit(wave(300, 0))
    det.threshold_ = -1.0  # every scored step is flagged
    weights = [p.detach().clone() for p in det.model_.parameters()]
    det.reset().partial_fit(wave(200, 1))
    assert det.last_flags_[24:].all()
    same = all(torch.equal(a, b) for a, b in zip(weights, det.model_.parameters()))
    assert same is (not learn_flagged)


def test_partial_fit_does_not_learn_labelled_steps():
    """Test-then-train with labels (an ``(X, labels)`` pair, or a source's label column): a chunk
    labelled anomalous throughout teaches nothing; the same chunk unlabelled does."""
    det = Continuation(**SMALL, epochs=2, learn_every=8).fit(wave(300, 0))
    weights = [p.detach().clone() for p in det.model_.parameters()]
    chunk = wave(200, 1)
    det.reset().partial_fit((chunk, np.ones(200, int)))
    assert all(torch.equal(a, b) for a, b in zip(weights, det.model_.parameters()))
    labels = np.zeros(200, int)
    labels[100:] = 1
    det.reset().partial_fit((chunk, labels))  # the first half is learned
    assert not all(torch.equal(a, b) for a, b in zip(weights, det.model_.parameters()))


def test_partial_fit_from_scratch_warms_up_then_goes_on_streaming():
    det = Continuation(**SMALL, epochs=10, lr=3e-3, smoothing=1, threshold_rule="moving", threshold_k=6.0, warm_up=400)
    x = wave(1500, 10)
    x[1200] += 3.0
    scores, flags = [], []
    for i in range(0, 1500, 50):
        det.partial_fit(x[i : i + 50])
        scores.append(det.last_scores_)
        flags.append(det.last_flags_)
    s, f = np.concatenate(scores), np.concatenate(flags)
    assert len(s) == 1500 and np.isnan(s[:400]).all() and np.isfinite(s[400:]).all()
    assert np.nanmean(s[400:1150]) < 2.0  # in units of the warm-up's training error
    assert f[1200:1210].any() and not f[:1200].any()


def test_bad_input_and_parameters():
    with pytest.raises(AnomalyError, match="a series of 20 steps is too short for window \\+ horizon = 27"):
        Continuation(**SMALL).fit(np.zeros(20))
    det = Continuation(**SMALL, epochs=1).fit(wave(200, 0))
    with pytest.raises(AnomalyError, match="calibration data: a series of 20 steps gives no score"):
        det.calibrate(wave(20, 1))
    with pytest.raises(AnomalyError, match="the series has 2 channel\\(s\\) but Continuation was fitted on 1"):
        det.decision_function(np.zeros((50, 2)))
    with pytest.raises(AnomalyError, match="not calibrated"):
        det.predict(wave(50, 1))
    for unfitted in (lambda d: d.reset().decision_function([1.0]), lambda d: d.calibrate(wave(100, 0)), lambda d: d.flag([1.0])):
        with pytest.raises(AnomalyError, match="Continuation is not fitted"):
            unfitted(Continuation())
    with pytest.raises(AnomalyError, match="network='gru'"):
        Continuation(network="gru").fit(wave(200, 0))
    with pytest.raises(AnomalyError, match="threshold_rule='fixed'"):
        Continuation(threshold_rule="fixed").fit(wave(200, 0))
    with pytest.raises(AnomalyError, match="season=3: must be 'auto', 0"):
        Continuation(season=3).fit(wave(200, 0))
    with pytest.raises(AnomalyError, match=r"threads=0: must be an integer in \[1, 1024\]"):
        Continuation(threads=0).fit(wave(200, 0))


def test_fit_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    np.random.seed(5)
    before = torch.get_rng_state(), np.random.get_state()[1].copy()
    Continuation(**SMALL, epochs=1).fit(wave(300, 0))
    assert torch.equal(torch.get_rng_state(), before[0]) and np.array_equal(np.random.get_state()[1], before[1])


def test_training_crops_of_a_long_series_cost_what_20000_steps_cost_and_cover_every_step():
    """Up to 20,000 steps a crop every step (each step a target in 8); a million steps: 20,000
    crops whose targets tile the series, not a million crops an epoch (30 min of fitting)."""
    from anomalib_lite.detectors.series import crop_plan, training_crops

    assert crop_plan(5) == (5, 1) and crop_plan(3_000) == (8, 1) and crop_plan(20_000) == (8, 1)
    assert crop_plan(1_000_000) == (50, 50) and crop_plan(20_001) == (8, 2)
    w, n = 4, 100_000
    span, stride = crop_plan(n)
    x, y = training_crops(np.zeros((n + w, 1)), np.arange(n + w, dtype=float)[:, None], w, span, stride)
    assert len(x) <= 20_000
    seen = np.unique(y[:, w:, 0].numpy().astype(int))  # the steps a loss falls on
    assert seen[0] == w and len(seen) > n - span - stride and np.all(np.diff(seen) == 1)  # (the last few may fall off)


def test_a_series_past_the_crop_limit_still_learns_and_flags(monkeypatch):
    """The long-series crops (fewer, longer) on a series 10 times past a lowered limit: the
    forecast still learns the wave, and a spike is flagged where the wave is not."""
    from anomalib_lite.detectors import series

    monkeypatch.setattr(series, "MAX_CROPS", 150)  # (3 batches an epoch: epochs enough for 20 of 23)
    det = Continuation(**SMALL, epochs=150, patience=None, lr=3e-3, smoothing=3).fit(wave(1500, 0))
    det.calibrate(wave(1100, 1), fpr=0.001)
    assert det.history_.val_loss[-1] < 0.2 * det.history_.val_loss[0]
    x = wave(700, 2)
    x[300] += 3.0
    flags = det.reset().predict(x)
    assert flags[300:330].sum() >= 2 and not flags[:300].any()
