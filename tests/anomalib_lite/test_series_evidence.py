"""The kinds of evidence behind NAB's score (anomalib_lite.scoring.evidence): each finds what it exists for
on a synthetic series and stays quiet on an unchanged one; the combined score does not depend on
how the stream is chunked; one-step and batch scoring agree."""
import numpy as np
import pytest

import anomalib_lite as al
from anomalib_lite.evaluation import nab
from anomalib_lite.scoring.evidence import Change, Cycle, Likelihood, Neighbours
from anomalib_lite.detectors.series import TOLERANCE
from anomalib_lite.scoring.thresholds import SurpriseScore

ALARM = 5.0  # SurpriseScore's alarm: p <= 1e-5


def _wave(n: int = 2000, seed: int = 0) -> np.ndarray:
    """A rhythm of 50 steps with noise: the unchanged series."""
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 50) + 0.1 * np.random.default_rng(seed).normal(size=n)


def _surprise(kind, values) -> np.ndarray:
    """Each step's surprise of a kind's statistic on its own history."""
    like = Likelihood()
    return np.array([like.update(float(s)) for s in kind.stats(values)])


def _events():
    """name -> (the unchanged series, the series with the event, its first step): what each kind
    exists for, on a rhythm (spike, level shift, new shape) or on noise around a level (variance)."""
    at, rng = 1500, np.random.default_rng(1)
    wave, flat = _wave(), 0.2 * rng.normal(size=2000)
    spike, shift, spread, shape = wave.copy(), wave.copy(), flat.copy(), wave.copy()
    spike[at] += 3.0
    shift[at:] += 1.5
    spread[at:] *= 3.0
    t = np.arange(len(shape) - at)
    shape[at:] = np.sign(np.sin(2 * np.pi * t / 50)) + 0.1 * rng.normal(size=len(t))  # a square wave
    return {"spike": (wave, spike, at), "level shift": (wave, shift, at), "variance change": (flat, spread, at),
            "new shape": (wave, shape, at)}


@pytest.mark.parametrize("kind, finds", [
    (lambda: Neighbours(8, 1000), ("spike", "level shift", "new shape")),
    (lambda: Change(64, 512), ("level shift", "variance change")),
])
def test_each_kind_finds_what_it_exists_for_and_is_quiet_on_an_unchanged_series(kind, finds):
    for name, (unchanged, x, at) in _events().items():
        assert _surprise(kind(), unchanged)[600:].max() < ALARM, name  # never p <= 1e-5
        s = _surprise(kind(), x)
        assert s[600:at].max() < ALARM, name  # quiet before the event
        if name in finds:
            assert s[at : at + 80].max() >= ALARM, name  # found within 80 steps


def test_neighbours_see_a_new_pattern_once_and_a_recurring_one_never():
    """A spike is news; the same spike 300 steps later has a near neighbour (the first one)."""
    x = _wave()
    x[[1200, 1500]] += 3.0
    s = _surprise(Neighbours(8, 1000), x)
    assert s[1200:1208].max() >= ALARM and s[1500:1508].max() < 3.0
    assert np.isnan(Neighbours(8, 100).stats(x[:15])).all()  # a subsequence needs one 8 steps before it


def test_change_is_a_likelihood_ratio_of_standard_size_without_change():
    rng = np.random.default_rng(3)
    stat = Change(64, 512).stats(rng.normal(size=(20000, 1)))
    assert np.isnan(stat[:575]).all() and np.isfinite(stat[575:]).all()
    assert 0.8 < np.median(stat[575:]) < 2.0  # sqrt of a 2-degree likelihood-ratio statistic: about 1.2
    two = Change(64, 512).stats(np.c_[rng.normal(size=1000), 5 + 3 * rng.normal(size=1000)])
    assert np.isfinite(two[575:]).all()


def test_likelihood_tests_then_learns():
    like = Likelihood(history=100, min_count=10, prior=np.zeros(5))
    assert like.update(50.0) == 0.0  # 5 + 0 values: fewer than min_count
    for v in np.random.default_rng(4).normal(size=20):
        like.update(float(v))
    assert like.surprise(10.0) > like.surprise(3.0) > like.surprise(0.0) and like.update(float("nan")) == 0.0
    warm = Likelihood(min_count=1, warm=3)
    assert [warm.update(v) for v in (0.0, 1.0, 100.0)] == [0.0, 0.0, 0.0] and warm.update(100.0) > 0


def test_the_combined_score_finds_a_shape_the_forecaster_follows_and_does_not_depend_on_chunking():
    """A forecaster that follows the new shape (its scores: noise) sees nothing; with the neighbours
    the square wave alarms once. All kinds on: chunked = whole, exactly."""
    _, x, at = _events()["new shape"]
    scores = 1 + 0.05 * np.random.default_rng(5).normal(size=len(x))
    level = SurpriseScore().alarm_level
    kw = dict(refractory=200, settle=600, extremes=False)
    assert SurpriseScore(**kw).update(scores, x).max() < level
    found = SurpriseScore(neighbours=8, **kw).update(scores, x)
    assert np.flatnonzero(found >= level).tolist() and at <= np.flatnonzero(found >= level)[0] < at + 80
    everything = dict(neighbours=8, memory=600, change=32, cycle=100, cycle_warm=50, season=50, reach=5, refractory=20)
    s = np.r_[[np.nan] * 5, scores]
    v = np.r_[np.zeros(5), x]
    whole = SurpriseScore(**everything).update(s, v)
    chunked = SurpriseScore(**everything)
    cuts = [1, 7, 100, 101, 333, 1500, 1501]
    parts = [chunked.update(a, b) for a, b in zip(np.split(s, cuts), np.split(v, cuts))]
    assert np.array_equal(np.concatenate(parts), whole, equal_nan=True)
    assert set(chunked.last_levels) == set(SurpriseScore.KINDS)
    with pytest.raises(al.AnomalyError, match="neighbours"):
        SurpriseScore(neighbours=-1)
    with pytest.raises(al.AnomalyError, match="change"):
        SurpriseScore(change=1)


def test_cycle_is_the_distance_to_the_median_of_the_last_cycles():
    x = np.tile(np.arange(10.0), 5)[:, None]
    x[35] = 100.0
    d = Cycle(10, depth=3, span=1).stats(x)
    assert np.isnan(d[:10]).all() and np.allclose(np.delete(d[10:], 25), 0) and d[35] == 95.0
    assert d[45] == 0.0  # the median of three cycles ignores the one that held the anomaly


def test_one_step_and_batch_scoring_give_the_same_nab_score():
    """The detector's scores one step at a time agree with the batch pass within TOLERANCE, and
    NAB's score built on either agrees as closely (the same alarms)."""
    x = _wave(1200)
    x[1000:1004] += 3.0
    det = al.Continuation(window=16, horizon=3, hidden=8, num_layers=1, season=0, epochs=3, device="cpu").fit(x[:600])
    det.calibrate(x[600:700], context=x[:600])
    batch = det.reset().decision_function(x)
    det.reset()
    steps = np.concatenate([det.decision_function(x[i : i + 1]) for i in range(len(x))])
    assert np.allclose(steps, batch, equal_nan=True, **TOLERANCE)
    u_batch = nab.results_scores(det, batch, values=x)
    u_steps = nab.results_scores(det, steps, values=x)
    level = SurpriseScore().alarm_level
    assert np.array_equal(u_batch >= level, u_steps >= level) and (u_batch[1000:1010] >= level).any()
    assert np.allclose(u_batch, u_steps, rtol=1e-3, atol=1e-4)


def _direct(kind: str, x: np.ndarray, **kw) -> np.ndarray:
    """A kind's statistic computed from its definition, step by step over the whole past (slow)."""
    n, out = len(x), np.full(len(x), np.nan)
    for t in range(n):
        if kind == "neighbours":
            m, memory = kw["length"], kw["memory"]
            cur = x[t - m + 1 : t + 1]
            if t - m + 1 < 0 or not np.isfinite(cur).all():
                continue
            d = [np.sqrt(((x[t - lag - m + 1 : t - lag + 1] - cur) ** 2).mean()) for lag in range(m, memory + 1)
                 if t - lag - m + 1 >= 0 and np.isfinite(x[t - lag - m + 1 : t - lag + 1]).all()]
            out[t] = min(d) if d else np.nan
        elif kind == "change":
            s, r = kw["short"], kw["long"]
            if t + 1 < s + r:
                continue
            ref, recent = x[t + 1 - s - r : t + 1 - s], x[t + 1 - s : t + 1]
            if not (np.isfinite(ref).all() and np.isfinite(recent).all()):
                continue
            v0, v1 = np.maximum(ref.var(0), 1e-4), np.maximum(recent.var(0), 1e-4)
            kl = 0.5 * (np.log(v0 / v1) + (v1 + (recent.mean(0) - ref.mean(0)) ** 2) / v0 - 1.0)
            out[t] = np.sqrt(max(2 * s * kl.sum(), 0.0))
    return out


@pytest.mark.parametrize("kind, make, kw", [
    ("neighbours", Neighbours, dict(length=4, memory=40)),
    ("change", Change, dict(short=8, long=32)),
])
def test_each_kind_is_its_definition_however_the_stream_is_cut(kind, make, kw):
    """The streaming recursions (products and sums moved by the steps that enter and leave, recomputed
    afresh now and then) give the statistic as defined, with gaps and two channels, in any chunking."""
    rng = np.random.default_rng(6)
    x = np.c_[np.sin(np.arange(300) / 5), rng.normal(size=300)]
    x[[50, 51, 200]] = np.nan
    x[120, 1] = np.inf
    for values in (x[:, :1], x):
        want = _direct(kind, values, **kw)
        got = make(**kw).stats(values)
        assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(got).sum() < 200
        assert np.allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True)
        cut = make(**kw)
        parts = np.concatenate([cut.stats(p) for p in np.split(values, [1, 2, 39, 41, 100, 233])])
        assert np.array_equal(parts, got, equal_nan=True)


def test_change_keeps_small_variances_of_a_series_far_from_zero():
    """Its moving sums are of values less a recent mean: a level of 10^7 with noise of 0.01 reads
    the same statistics as the noise alone (no cancellation of two sums of 10^17)."""
    rng = np.random.default_rng(7)
    z = 0.01 * rng.normal(size=(3000, 1))
    z[2000:] *= 3.0  # a variance change
    near, far = Change(64, 512).stats(z), Change(64, 512).stats(z + 1e7)
    assert np.nanmax(near[2000:2100]) > 10 and np.allclose(far, near, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_the_nab_score_takes_an_empty_chunk_and_refuses_other_channels_in_one_line():
    kw = dict(neighbours=8, memory=100, change=8, cycle=20)
    sc = SurpriseScore(**kw)
    assert sc.update(np.array([]), np.zeros((0, 2))).shape == (0,)
    assert np.isfinite(sc.update(np.ones(300), np.random.default_rng(8).normal(size=(300, 2)))).all()
    with pytest.raises(al.AnomalyError, match="3 channel.*had 2"):
        sc.update(np.ones(3), np.zeros((3, 3)))
    with pytest.raises(al.AnomalyError, match="7 values for 3 scores"):
        sc.update(np.ones(3), np.zeros(7))
    det = al.Continuation(window=16, horizon=2, hidden=4, num_layers=1, epochs=1, season=0, device="cpu")
    x = _wave(400)
    det.fit(x[:300]).calibrate(x[300:], context=x[:300])
    s = det.reset().decision_function(x)
    with pytest.raises(al.AnomalyError, match="800 values for 400 scores of a series of 1 channel"):
        det.unit_scores(s, values=np.c_[x, x])  # not broadcast into a second channel
