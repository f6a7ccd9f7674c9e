"""The habits of neighbouring tools: PyOD's fitted attributes after fit (decision_scores_, labels_,
threshold_) and River's one-step API (learn_one, score_one) around the series detectors."""
import copy

import numpy as np
import pytest

import anomalib_lite as al
from anomalib_lite.detectors.series import TOLERANCE


def test_pyod_attributes_after_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    far = rng.normal(size=(10, 6))
    x[:10] = 8 * far / np.linalg.norm(far, axis=1, keepdims=True)  # ten scattered outliers in the training data
    det = al.LatentDistance(k=3, contamination=0.05, device="cpu").fit(x)
    assert det.decision_scores_.shape == (200,)
    # leave-one-out: a training sample's own bank entry does not count, so scores are not zero
    assert det.decision_scores_.min() > 0
    assert np.allclose(det.decision_scores_, det.decision_function(x, leave_one_out=True))
    assert det.labels_.dtype == np.int64 and det.labels_.sum() == pytest.approx(10, abs=2)
    assert set(np.flatnonzero(det.labels_)) <= set(range(10))  # those labelled 1 are planted outliers
    assert np.array_equal(det.labels_, (det.decision_scores_ > det.threshold_).astype(int))
    plain = al.LatentDistance(k=3, device="cpu").fit(x)  # no contamination: no threshold, no labels yet
    assert plain.threshold_ is None and plain.labels_ is None and plain.decision_scores_.shape == (200,)
    plain.calibrate(x[100:], fpr=0.1)
    assert np.array_equal(plain.labels_, (plain.decision_scores_ > plain.threshold_).astype(int))


def test_series_training_scores_are_a_stream_of_their_own():
    t = np.arange(600)
    x = np.sin(2 * np.pi * t / 25)
    det = al.Continuation(window=16, hidden=8, num_layers=1, epochs=2, season=0, device="cpu").fit(x)
    s = det.decision_scores_
    assert s.shape == (600,) and np.isnan(s[:16]).all() and np.isfinite(s[16:]).all()
    det.reset()
    assert np.allclose(det.decision_function(x), s, equal_nan=True, **TOLERANCE)


@pytest.fixture(scope="module")
def wave():
    t = np.arange(1400)
    x = np.sin(2 * np.pi * t / 30) + 0.05 * np.random.default_rng(1).normal(size=t.size)
    x[1200:1205] += 2.5  # an anomaly in the part streamed
    return x


def test_river_score_one_then_learn_one_equals_test_then_train(wave):
    det = al.Continuation(window=16, hidden=8, num_layers=1, epochs=2, season=0, learn_every=16, device="cpu")
    det.fit(wave[:800]).calibrate(wave[800:1000], fpr=0.01, context=wave[:800])
    twin = copy.deepcopy(det)
    scorer = al.StreamScorer(det)
    river = []
    for v in wave[1000:]:
        river.append(scorer.score_one({"value": v}))
        scorer.learn_one({"value": v})
    expected = np.concatenate([twin.partial_fit(np.array([v])).last_scores_ for v in wave[1000:]])
    assert det.n_updates_ == twin.n_updates_ > 0  # it learned as it went, the same number of times
    assert np.allclose(river, np.nan_to_num(expected, nan=0.0), **TOLERANCE)
    assert 195 <= int(np.argmax(river)) <= 215  # the anomaly scores highest


def test_river_from_scratch_learns_then_scores_and_refuses_bad_samples(wave):
    scorer = al.StreamScorer(al.Continuation(window=16, hidden=8, num_layers=1, epochs=2, season=0, warm_up=400,
                                             device="cpu"))
    scores = []
    for v in wave[:700]:
        scores.append(scorer.score_one({"value": v}))
        scorer.learn_one({"value": v})
    assert scores[:400] == [0.0] * 400 and np.count_nonzero(scores[420:]) > 200
    with pytest.raises(al.AnomalyError, match="no 'value'"):
        scorer.score_one({"cpu": 1.0})
    with pytest.raises(al.AnomalyError, match="NaN"):
        scorer.learn_one({"value": float("nan")})
    for bad in ({"value": None}, {"value": "high"}, None, "abc"):  # (a ValueError or "holds NaN" before)
        with pytest.raises(al.AnomalyError, match="the sample is not a number or numbers"):
            scorer.score_one(bad)
    with pytest.raises(al.AnomalyError, match="not a series detector"):
        al.StreamScorer(al.LatentDistance())
