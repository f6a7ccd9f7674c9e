"""pandas objects, the input most users hold: fitted and scored like their arrays, a DataFrame's
column names kept (a stream of dicts and a CSV are read by name), a column of times refused in
one line, and no warning from torch about pandas' read-only views."""
import warnings

import numpy as np
import pytest

import anomalib_lite as al
from anomalib_lite.errors import AnomalyError

pd = pytest.importorskip("pandas")  # (in the dev extra: CI installs it)

FAST = dict(epochs=1, window=16, hidden=8, num_layers=1, season=0)


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    t = np.arange(400)
    return pd.DataFrame({"a": np.sin(t / 8) + rng.normal(0, 0.05, t.size), "b": rng.normal(0, 1, t.size)})


def test_a_dataframe_scores_as_its_array_and_keeps_its_columns(frame, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (torch warned on pandas' read-only arrays)
        det = al.Continuation(**FAST).fit(frame)
        from_frame = det.reset().decision_function(frame)
    from_array = det.reset().decision_function(frame.to_numpy())
    np.testing.assert_allclose(from_frame, from_array, equal_nan=True)
    assert det.data_info_["columns"] == ["a", "b"]
    det.save(tmp_path / "m.anomaly")
    assert al.load(tmp_path / "m.anomaly").data_info_["columns"] == ["a", "b"]  # (a bundle records them)
    # a named Series is one column
    assert al.Continuation(**FAST).fit(frame["a"]).data_info_["columns"] == ["a"]


def test_a_stream_of_dicts_is_read_by_the_frames_column_names(frame):
    det = al.Continuation(**FAST).fit(frame)
    expected = det.reset().decision_function(frame.iloc[:80])
    det.reset()
    stream = al.StreamScorer(det)
    # keys in another order, and one more key (a time stamp) that is not a channel
    got = [stream.score_one({"time": str(i), "b": row.b, "a": row.a}) for i, row in enumerate(frame.iloc[:80].itertuples())]
    assert stream.columns == ["a", "b"]
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(np.asarray(got)[ok], expected[ok], rtol=1e-4, atol=1e-5)


def test_a_frame_bundle_reads_a_csv_by_name(frame, tmp_path):
    det = al.Continuation(**FAST).fit(frame)
    det.save(tmp_path / "m.anomaly")
    path = tmp_path / "s.csv"
    with open(path, "w") as f:  # columns in another order, with a time column first
        f.write("timestamp,b,a\n")
        for i, row in enumerate(frame.itertuples()):
            f.write(f"{i},{row.b!r},{row.a!r}\n")
    from anomalib_lite.app import workflows

    out = tmp_path / "scores.csv"
    bundle = al.load(tmp_path / "m.anomaly")
    workflows.score_and_write(bundle, str(path), bundle=str(tmp_path / "m.anomaly"), out=str(out))
    got = np.genfromtxt(out, delimiter=",", names=True)
    np.testing.assert_allclose(got["score"], det.reset().decision_function(frame), rtol=1e-4, atol=1e-5, equal_nan=True)


def test_a_column_of_times_is_one_error_naming_it(frame):
    timed = frame.assign(when=pd.date_range("2026-01-01", periods=len(frame), freq="5min"))
    with pytest.raises(AnomalyError, match=r"column 'when' holds times.*df.set_index\('when'\)"):
        al.Continuation(**FAST).fit(timed)
    det = al.Continuation(**FAST).fit(timed.set_index("when"))  # the fix the error names
    assert det.data_info_["columns"] == ["a", "b"]


def test_a_detector_of_vectors_takes_a_frame_of_rows_and_records_its_columns(frame):
    det = al.LatentDistance().fit(frame.iloc[:100])
    assert det.data_info_["columns"] == ["a", "b"]  # (pandas' own describe() is not the toolkit's)
    assert det.decision_function(frame.iloc[100:120]).shape == (20,)


def test_a_read_only_array_is_copied_not_shared_with_torch(tmp_path):
    """torch warns (once a process, so a warning filter cannot test it) on a tensor over memory it
    may not write: a read-only array (np.load(mmap_mode='r'), pandas' views) is copied first."""
    from anomalib_lite.data.batches import to_float_tensor

    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    t = to_float_tensor(x)
    assert t.numpy().flags.writeable and not np.shares_memory(t.numpy(), x)
    np.testing.assert_array_equal(t.numpy(), x)
    writable = np.array(x)
    assert np.shares_memory(to_float_tensor(writable).numpy(), writable)  # (no copy where none is needed)
    assert al.LatentDistance().fit(x).decision_function(writable[:5]).shape == (5,)


def test_a_frame_and_its_label_column_are_x_and_y(frame):
    """scikit-learn's fit(X, y) with pandas: (DataFrame, Series) was read as a list of two batches
    and the labels were lost ("needs 0/1 labels per step")."""
    frame = frame.copy()  # (the fixture is the module's)
    labels = pd.Series(np.zeros(len(frame), dtype=bool))
    for start in range(60, 400, 80):
        labels[start - 10 : start] = True  # the warning window before each event
        frame.loc[start : start + 5, "a"] += 3.0
    det = al.SupervisedRNN(epochs=1, window=16, hidden=8, horizon=10).fit(frame[["a"]], labels)
    assert det.data_info_["columns"] == ["a"] and det.data_info_["n"] == len(frame)
    as_arrays = al.SupervisedRNN(epochs=1, window=16, hidden=8, horizon=10).fit(frame[["a"]].to_numpy(), labels.to_numpy())
    np.testing.assert_allclose(det.reset().decision_function(frame[["a"]]),
                               as_arrays.reset().decision_function(frame[["a"]].to_numpy()), rtol=1e-5, equal_nan=True)
    rows = frame.to_numpy()
    y = pd.Series(np.r_[np.zeros(300), np.ones(100)].astype(int))
    shifted = pd.DataFrame(np.r_[rows[:300], rows[300:] + 5.0])
    lat = al.LatentDistance().fit(shifted.iloc[:200])
    assert lat.score(shifted.iloc[200:], y.iloc[200:]) > 0.99  # ROC-AUC against a pandas Series of labels


def test_dated_steps_that_go_back_in_time_start_a_new_stream(frame):
    """scikit-learn's habit, decision_function(df) then predict(df), must not score the second call
    as a continuation that jumps back in time; chunks that go forward stay one stream."""
    dated = frame.set_index(pd.date_range("2026-01-01", periods=len(frame), freq="min", tz="UTC"))
    det = al.Continuation(**FAST, contamination=0.05).fit(dated.iloc[:300])
    test = dated.iloc[300:]
    first = det.decision_function(test)
    with pytest.warns(UserWarning, match=r"start at 2026-01-01 05:00:00\+00:00, not after .*new stream"):
        flags = det.predict(test)
    np.testing.assert_array_equal(flags, np.nan_to_num(first, nan=-np.inf) > det.threshold_)
    det.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # forward in time: one stream, no warning
        chunks = np.concatenate([det.decision_function(test.iloc[i : i + 25]) for i in range(0, len(test), 25)])
    np.testing.assert_allclose(chunks, first, equal_nan=True, **al.detectors.series.TOLERANCE)
    # a series source with times (a CSV, nab:) follows the same rule
    from anomalib_lite.data.series_sources import SeriesSource

    src = SeriesSource("s.csv", test.to_numpy(), ["a", "b"], stamps=[str(t) for t in test.index],
                       times=test.index.asi8 / 1e9, time_column="time")
    det.reset()
    np.testing.assert_allclose(det.decision_function(src), first, equal_nan=True, **al.detectors.series.TOLERANCE)
    with pytest.warns(UserWarning, match="new stream"):
        again = det.decision_function(src)
    np.testing.assert_allclose(again, first, equal_nan=True, **al.detectors.series.TOLERANCE)


def test_a_frame_of_vectors_keeps_its_column_names_and_a_csv_is_scored_by_them(tmp_path):
    """A LatentDistance fitted on a DataFrame records its columns (as the series detectors do):
    its warnings name them, and `anomaly score` reads a table's columns by name, in any order."""
    from anomalib_lite.app import workflows

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"temp": rng.normal(20, 1, 300), "pressure": rng.normal(1e5, 500, 300),
                          "rpm": rng.normal(1500, 10, 300)})
    with pytest.warns(UserWarning, match=r"column 'pressure': std .*column 'temp'"):
        det = al.LatentDistance(device="cpu").fit(frame)
    assert det.data_info_["columns"] == ["temp", "pressure", "rpm"]
    det = al.LatentDistance(device="cpu", scaling="feature").fit(frame)
    det.save(tmp_path / "m.anomaly")
    test = frame.iloc[:20].copy()
    test.loc[test.index[:5], "temp"] += 8
    shuffled = test[["rpm", "temp", "pressure"]].assign(note=7)  # another order, one more column
    shuffled.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "s.csv"
    workflows.score_and_write(al.load(tmp_path / "m.anomaly"), f"{tmp_path / 't.csv'}?rows=samples", out=str(out))
    got = pd.read_csv(out)["score"].to_numpy()
    np.testing.assert_allclose(got, det.decision_function(test), rtol=1e-5)
    assert got[:5].min() > got[5:].max()
