"""One contract, five detectors (issue 12): the scikit-learn protocol, bundles that score the same
after loading, one error class, the caller's random state untouched, series scored in chunks of
any length, predict consistent with decision_function and the threshold."""
import inspect
import random

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

import anomalib_lite as al
from anomalib_lite import AnomalyError
from anomalib_lite.errors import NotFittedError
from anomalib_lite.data import sample_data
from anomalib_lite.detectors.series import TOLERANCE


_images = sample_data.toy_images
_series = sample_data.toy_series
_labelled = sample_data.toy_labelled_series


def _labelled_kind(cls) -> bool:
    """Learns from 0/1 labels per step: the detectors that set their own threshold."""
    return not cls.capabilities.calibrates


def case(cls):
    """(make, train, test) for a detector class, from its ``quick_params``, ``input_kind`` and
    capabilities: images for image (and any-kind) detectors, a series for series detectors, a
    labelled series for those that learn from labels."""
    def make():
        return cls(**{**cls.quick_params, "device": "cpu"})

    if cls.input_kind != "series":
        return make, lambda: _images(60, 0), lambda: _images(10, 1, True)
    return make, (lambda: _labelled(400, 0)) if _labelled_kind(cls) else (lambda: _series(300, 0)), lambda: _series(120, 1)


#: every registered detector (a new one is covered by registering it)
CASES = {name: case(cls) for name, cls in al.DETECTORS.items()}


def _fit(name):
    make, train, _ = CASES[name]
    det = make()
    data = train()
    if _labelled_kind(type(det)):
        return det.fit(*data), data[0]
    det.fit(data)
    if det.input_kind == "series":
        return det.calibrate(data[200:], fpr=0.1, context=data[:200]), data
    return det.calibrate(data, fpr=0.1), data


@pytest.fixture(scope="module", params=list(CASES))
def fitted(request):
    return request.param, *_fit(request.param)


def _rng_state():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()


def test_scikit_learn_protocol(fitted):
    name, det, train = fitted
    params = det.get_params(deep=True)
    twin = clone(det)
    assert twin.get_params() == params and not twin.__sklearn_is_fitted__()
    with pytest.raises(SkNotFittedError):
        check_is_fitted(twin)
    check_is_fitted(det)
    assert det.set_params(verbose=True) is det and det.verbose is True
    det.set_params(verbose=False)
    with pytest.raises(AnomalyError, match="unknown parameter 'colour'"):
        det.set_params(colour="red")
    assert name in repr(twin) and det.n_features_in_ == int(np.prod(det.input_shape_))


def test_bundle_scores_identically_after_loading(fitted, tmp_path):
    name, det, _ = fitted
    test = CASES[name][2]()
    det.save(tmp_path / "m.anomaly")
    back = al.load(tmp_path / "m.anomaly")
    if det.input_kind == "series":
        det.reset()
    a, b = det.decision_function(test), back.decision_function(test)
    assert np.array_equal(a, b, equal_nan=True)
    assert back.get_params(deep=False) == det.get_params(deep=False)
    assert back.threshold_ == det.threshold_


def test_predict_agrees_with_decision_function_and_threshold(fitted):
    name, det, _ = fitted
    test = CASES[name][2]()
    if det.input_kind == "series":
        det.reset()
        scores = det.decision_function(test)
        det.reset()
    else:
        scores = det.decision_function(test)
    flags = det.predict(test)
    assert flags.dtype.kind == "i" and set(np.unique(flags)) <= {0, 1}
    expected = np.nan_to_num(scores, nan=-np.inf) > det.threshold_
    assert np.array_equal(flags.astype(bool), expected)
    assert np.allclose(det.score_samples(test) if det.input_kind != "series" else -scores,
                       -scores if det.input_kind != "series" else det.reset().score_samples(test), equal_nan=True)


def test_errors_are_the_package_error(fitted):
    name, det, _ = fitted
    make = CASES[name][0]
    for bad in ({"device": "tpu"}, {"batch_size": 0}, {"seed": -1}):
        with pytest.raises(AnomalyError) as info:
            data = CASES[name][1]()
            make().set_params(**bad).fit(data[0] if _labelled_kind(type(det)) else data)
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    with pytest.raises(NotFittedError) as info:  # ours, and scikit-learn's
        make().decision_function(CASES[name][2]())
    assert isinstance(info.value, (AnomalyError, SkNotFittedError))
    with pytest.raises(AnomalyError):
        det.decision_function(np.zeros((4, 3, 5, 5), np.float32) if det.input_kind != "series" else np.zeros((20, 3)))


def test_fit_leaves_the_callers_random_state_alone(fitted):
    name = fitted[0]
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = _rng_state()
    det, _ = _fit(name)
    det.decision_function(CASES[name][2]())
    after = _rng_state()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


@pytest.mark.parametrize("name", [n for n, cls in al.DETECTORS.items() if cls.input_kind == "series"])
def test_series_scored_in_chunks_of_odd_lengths_match(name):
    det, _ = _fit(name)
    test = _series(157, 3)
    whole = det.reset().decision_function(test)
    det.reset()
    parts, i = [], 0
    for size in (1, 7, 13, 3, 29, 1, 50, 100):
        parts.append(det.decision_function(test[i : i + size]))
        i += size
    chunked = np.concatenate(parts)
    assert chunked.shape == whole.shape
    assert np.allclose(chunked, whole, equal_nan=True, **TOLERANCE)


def test_pipeline_and_contamination():
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, (300, 4))
    pipe = make_pipeline(StandardScaler(), al.LatentDistance(device="cpu", contamination=0.05)).fit(x)
    flags = pipe.predict(np.vstack([x[:50], x[:5] + 40]))
    assert flags[-5:].all() and flags[:50].mean() < 0.2
    assert pipe.score(np.vstack([x[:50], x[:5] + 40]), np.r_[np.zeros(50), np.ones(5)]) > 0.99
    det = al.LatentDistance(device="cpu").fit(x)
    assert isinstance(det.score(x), float)
    labels = det.fit_predict(x, fpr=0.1)
    assert 0 < labels.mean() <= 0.1 + 1e-9
    series = make_pipeline(StandardScaler(), al.Continuation(window=8, horizon=2, hidden=8, num_layers=1, epochs=1,
                                                             season=0, device="cpu"))
    assert series.fit(_series(300, 0).reshape(-1, 1)).decision_function(_series(50, 1).reshape(-1, 1)).shape == (50,)


#: the checks every detector passes, by a fitted (name, detector, training data) triple
CONTRACT = [test_scikit_learn_protocol, test_bundle_scores_identically_after_loading,
            test_predict_agrees_with_decision_function_and_threshold, test_errors_are_the_package_error,
            test_fit_leaves_the_callers_random_state_alone]


def run_contract(cls, tmp_path) -> None:
    """The whole contract on a detector class that is not one of the package's (a plugin's)."""
    CASES[cls.__name__] = case(cls)
    try:
        fitted = (cls.__name__, *_fit(cls.__name__))
        fixtures = {"fitted": fitted, "tmp_path": tmp_path}
        for check in CONTRACT:  # each given the fixtures it names, as pytest would
            check(**{name: fixtures[name] for name in inspect.signature(check).parameters})
    finally:
        del CASES[cls.__name__]


@pytest.mark.parametrize("name", sorted(al.DETECTORS))
def test_a_parameter_of_the_wrong_type_is_one_clear_error(name):
    """Every parameter set to text ("x") fails fit with an AnomalyError that names it, not a
    TypeError from deep inside (the series networks were sized from hidden, window and
    num_layers before the parameters were checked)."""
    import numpy as np

    cls = al.DETECTORS[name]
    rng = np.random.default_rng(0)
    series = np.sin(np.arange(300) / 5) + 0.05 * rng.normal(size=300)
    labels = np.zeros(300, int)
    labels[[150, 250]] = 1
    data = {"Continuation": series, "SupervisedRNN": (series, labels)}.get(name, rng.random((8, 1, 16, 16)))
    with_backbone = {"layers": dict(backbone="resnet18", weights="random"), "weights": dict(backbone="resnet18")}
    for param in cls().get_params():
        if param == "verbose":
            continue
        extra = with_backbone.get(param, {}) if name in ("LatentDistance", "Reconstruction") else {}  # (else ignored)
        x = rng.random((8, 3, 32, 32)) if extra else data
        with pytest.raises(al.AnomalyError, match=param):
            cls(**{"device": "cpu", **extra, param: "x"}).fit(x)
