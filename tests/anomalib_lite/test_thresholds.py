import numpy as np
import pytest

from anomalib_lite import AnomalyError, fpr_threshold, p_values


def test_fpr_threshold_holds_the_false_positive_rate_on_fresh_normals():
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(200):
        cal = rng.normal(size=999)
        fresh = rng.normal(size=5000)
        rates.append((fresh > fpr_threshold(cal, fpr=0.05)).mean())
    # conformal guarantee: expected FPR <= 0.05 (and close to it)
    assert 0.04 < np.mean(rates) <= 0.0505


def test_flagged_exactly_when_p_value_at_most_fpr():
    rng = np.random.default_rng(1)
    cal = rng.normal(size=300)
    t = fpr_threshold(cal, fpr=0.1)
    s = np.concatenate([cal, rng.normal(size=1000) * 2])
    assert np.array_equal(s > t, p_values(s, cal) <= 0.1)


def test_p_values_formula():
    cal = np.array([1.0, 2.0, 3.0, 4.0])
    assert p_values([0.0, 2.0, 2.5, 9.0], cal).tolist() == [1.0, 4 / 5, 3 / 5, 1 / 5]


def test_too_few_calibration_scores_warns_and_uses_the_maximum():
    # one warning naming the smallest rate 3 scores can certify: 1/(3+1)
    with pytest.warns(UserWarning, match=r"below what 3 calibration scores can certify: the smallest is 1/4 = 0\.25"):
        assert fpr_threshold([1.0, 5.0, 2.0], fpr=0.01) == 5.0


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1, "0.1", None, True])
def test_bad_fpr(fpr):
    with pytest.raises(AnomalyError, match="fpr: must be a number in"):
        fpr_threshold([1.0, 2.0], fpr=fpr)


def test_a_bad_fpr_is_refused_before_the_scoring():
    """(a string from a config raised a TypeError from '<', after scoring the calibration data)"""
    import anomalib_lite as al

    det = al.LatentDistance(device="cpu").fit(np.random.default_rng(0).random((30, 4)))
    det.decision_function = lambda X: (_ for _ in ()).throw(AssertionError("scored before the check"))
    for call in (lambda: det.calibrate(np.zeros((5, 4)), fpr="0.1"), lambda: det.cross_calibrate(np.zeros((30, 4)), fpr=0)):
        with pytest.raises(AnomalyError, match="fpr: must be a number in"):
            call()


def test_non_finite_scores_are_rejected():
    with pytest.raises(AnomalyError, match="score 1 is not finite"):
        fpr_threshold([1.0, np.nan], fpr=0.5)


def test_scores_that_are_not_numbers_are_one_clear_error():
    """p_values, flag and the streaming helpers took any input to numpy's float(): text, a dict
    or ragged lists raised ValueError or TypeError."""
    import anomalib_lite as al
    from anomalib_lite.scoring.thresholds import MovingThreshold, p_values

    det = al.LatentDistance(device="cpu").fit(np.random.default_rng(0).random((30, 4)))
    det.calibrate(np.random.default_rng(1).random((20, 4)), fpr=0.1)
    for bad in ("x", {"a": 1}, [[1.0], [1.0, 2.0]], ["high"]):
        for call in (det.p_values, lambda s: p_values(s, [1.0, 2.0]), lambda s: MovingThreshold(window=5).update(s)):
            with pytest.raises(AnomalyError, match="not numbers"):
                call(bad)
    assert np.isnan(p_values([np.nan, 1.5], [1.0, 2.0])[0])  # (NaN stays a score: a series' warm-up)
