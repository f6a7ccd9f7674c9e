"""Scores that keep ranking past the calibration set (tail p-values, NAB's [0, 1] score), and
NAB's own scorer reading the results files the project writes."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import anomalib_lite as al
from anomalib_lite.evaluation import nab
from anomalib_lite.scoring.thresholds import SurpriseScore, p_values, tail_p_values, tail_threshold

NAB_TOOL = Path(__file__).resolve().parents[3] / "shared" / "tools" / "nab_score.py"


def test_tail_p_values_keep_falling_past_the_largest_calibration_score():
    cal = np.random.default_rng(0).exponential(size=60)
    top = cal.max()
    s = np.array([top + 0.01, top + 0.5, top + 5.0, np.nan])
    conformal = p_values(s, cal)
    assert conformal[0] == conformal[1] == conformal[2]  # the conformal p-value is capped at 1 / (n + 1)
    p = tail_p_values(s, cal)
    assert p[0] > p[1] > p[2] > 0 and np.isnan(p[3])
    bulk = np.sort(cal)[:50]  # below the ten largest scores: exactly conformal
    assert np.array_equal(tail_p_values(bulk, cal), p_values(bulk, cal))
    grid = np.linspace(0, top + 3, 500)
    assert (np.diff(tail_p_values(grid, cal)) <= 0).all()


def test_tail_threshold_reaches_rates_a_small_calibration_set_cannot_certify():
    cal = np.random.default_rng(1).exponential(size=60)
    t = tail_threshold(cal, 0.001)  # conformal would need 999 scores
    assert t > cal.max()
    assert tail_p_values([t * (1 - 1e-9)], cal)[0] > 0.001 >= tail_p_values([t * (1 + 1e-9)], cal)[0]
    big = np.random.default_rng(2).exponential(size=20000)
    assert tail_threshold(big, 0.01) == al.fpr_threshold(big, 0.01)  # enough scores: conformal
    fresh = np.random.default_rng(3).exponential(size=200000)  # where the exponential tail holds ...
    rates = [(fresh > tail_threshold(np.random.default_rng(s).exponential(size=400), 0.001)).mean() for s in range(6)]
    assert 0.0003 < np.median(rates) < 0.003  # ... 400 scores extrapolate to a rate they cannot certify


def test_surprise_score_is_uncapped_comparable_and_quiet_after_an_alarm():
    rng = np.random.default_rng(4)
    cal = 1 + 0.1 * rng.normal(size=200)
    normal = 1 + 0.1 * rng.normal(size=400)
    at_max, beyond = normal.copy(), normal.copy()
    at_max[300], beyond[300] = cal.max(), cal.max() + 1.0
    u_max, u_beyond = SurpriseScore(cal).update(at_max)[300], SurpriseScore(cal).update(beyond)[300]
    assert 0 < u_max < u_beyond < 1  # a step more extreme than every calibration step scores higher
    far = SurpriseScore(cal).update(np.r_[normal[:300], [1e6]])[-1]
    assert u_beyond < far < 1
    # the same series on another scale (another unit) gets the same unit scores: comparable
    assert np.allclose(SurpriseScore(cal * 50).update(beyond * 50), SurpriseScore(cal).update(beyond), atol=1e-9)
    # one alarm per event: the steps after an alarm stay at the resting level for `refractory` steps
    event = normal.copy()
    event[300:320] = 3.0
    u = SurpriseScore(cal, refractory=64).update(event)
    alarm = u[300]
    assert alarm >= 0.5 and (u[301:320] < alarm).all() and (u[301:320] <= 3 / 8 + 1e-12).all()
    event[340] = 20.0  # a bigger event inside the refractory period does not alarm again either
    assert SurpriseScore(cal, refractory=64).update(event)[340] <= 3 / 8 + 1e-12
    # chunked = whole, NaN stays NaN
    x = np.r_[[np.nan] * 5, event]
    s = SurpriseScore(cal)
    chunked = np.concatenate([s.update(c) for c in np.split(x, [1, 7, 100, 101])])
    assert np.array_equal(chunked, SurpriseScore(cal).update(x), equal_nan=True) and np.isnan(chunked[:5]).all()


def test_surprise_score_recurring_events_rest_and_new_extremes_alarm():
    rng = np.random.default_rng(6)
    cal = 1 + 0.1 * rng.normal(size=200)
    x = 1 + 0.1 * rng.normal(size=1000)
    x[[250, 350, 450, 550]] = 4.0  # the same surprise at the same phase of a 100-step season
    x[620] = 4.0  # ... and one at a new phase
    quiet = dict(refractory=20, season=100, reach=5)
    u = SurpriseScore(cal, **quiet).update(x)
    assert u[250] >= 0.5 and (u[[350, 450, 550]] <= 3 / 8 + 1e-12).all() and u[620] >= 0.5
    assert (SurpriseScore(cal, refractory=20).update(x)[[350, 450, 550]] >= 0.5).all()  # no season: each alarms
    settled = SurpriseScore(cal, refractory=20, settle=300).update(x)  # the first 300 steps never alarm
    assert settled[250] <= 3 / 8 + 1e-12 and settled[350] >= 0.5
    # a new extreme of the series (beyond its range by > 5 %) adds an alarm's worth of surprise
    values = np.sin(np.arange(1000) / 10.0)
    plain = SurpriseScore(cal, refractory=20).update(x)
    values[700] = 1.2
    with_values = SurpriseScore(cal, refractory=20).update(x, values)
    assert with_values[700] >= 0.5 > plain[700]
    # once a cycle has set the range, values inside it change nothing
    assert np.allclose(np.delete(with_values, 700)[70:], np.delete(plain, 700)[70:])
    values[800] = 1.22  # within 5 % of the range just extended: not new
    assert SurpriseScore(cal, refractory=20).update(x, values)[800] == plain[800]
    # chunked = whole, with both signals
    y = np.r_[[np.nan] * 5, x]
    vals = np.r_[np.zeros(5), values]
    s = SurpriseScore(cal, **quiet)
    cuts = [1, 7, 100, 101, 333]
    chunked = np.concatenate([s.update(a, b) for a, b in zip(np.split(y, cuts), np.split(vals, cuts))])
    assert np.array_equal(chunked, SurpriseScore(cal, **quiet).update(y, vals), equal_nan=True)


def _weeks_with_a_holiday(weeks: int = 7, seed: int = 6):
    """Hourly steps: busy weekdays, quiet weekends; a Wednesday of week 5 is quiet like a Sunday.
    Returns (values, the holiday's first step, one day, one week)."""
    rng = np.random.default_rng(seed)
    day, week = 24, 168
    t = np.arange(weeks * week)
    busy = np.where((t % day >= 8) & (t % day < 20), 1.0, 0.2)
    v = np.where((t // day) % 7 < 5, busy, 0.2 + 0.1 * busy) + 0.03 * rng.normal(size=len(t))
    hol = 4 * week + 2 * day
    v[hol : hol + day] = 0.2 + 0.1 * busy[hol : hol + day] + 0.03 * rng.normal(size=day)
    return v, hol, day, week


def test_cycle_finds_a_day_that_breaks_the_weekly_rhythm_once():
    """A forecaster's scores that see nothing (noise): without the cycle nothing alarms; with a
    weekly cycle the holiday alarms, nothing else does, and the same day one week later (whose
    reference holds the holiday) does not: the median of three cycles ignores one."""
    v, hol, day, week = _weeks_with_a_holiday()
    s = 1 + 0.05 * np.random.default_rng(7).normal(size=len(v))
    level = SurpriseScore().alarm_level
    kw = dict(refractory=day, settle=week)
    plain = SurpriseScore(**kw).update(s, v)
    cyc = SurpriseScore(cycle=week, cycle_warm=day, **kw).update(s, v)
    assert plain.max() < level
    alarms = np.flatnonzero(cyc >= level)
    assert len(alarms) == 1 and hol <= alarms[0] < hol + day
    assert cyc[hol + week : hol + week + day].max() < 3 / (3 + 5)  # p > 1e-3: below HTM's yellow
    warm = SurpriseScore(cycle=week, cycle_warm=10 * week, **kw).update(s, v)  # still warming up: silent
    assert warm.max() < level


def test_cycle_scores_do_not_depend_on_chunking_and_need_dates():
    v, hol, day, week = _weeks_with_a_holiday(weeks=6)
    s = 1 + 0.05 * np.random.default_rng(8).normal(size=len(v))
    s[:5] = np.nan
    v2 = np.c_[v, 10 * v]  # two channels
    whole = SurpriseScore(cycle=week, cycle_warm=day).update(s, v2)
    sc = SurpriseScore(cycle=week, cycle_warm=day)
    cuts = [1, 200, 500, 501, 900]
    chunked = np.concatenate([sc.update(a, b) for a, b in zip(np.split(s, cuts), np.split(v2, cuts))])
    assert np.array_equal(chunked, whole, equal_nan=True)
    assert nab.calendar_steps(300.0) == (2016, 288) and nab.calendar_steps(3600.0) == (168, 24)
    assert nab.calendar_steps(None) == (0, 0) and nab.calendar_steps(2 * 86400.0) == (0, 0)
    with pytest.raises(al.AnomalyError, match="cycle"):
        SurpriseScore(cycle=-1)


def test_series_sources_know_their_step_only_from_dates(tmp_path):
    dated = tmp_path / "dated.csv"
    dated.write_text("timestamp,value\n" + "".join(f"2024-01-01 {h:02d}:{m:02d}:00,{h + m}\n" for h in range(3) for m in (0, 5, 10)))
    numbered = tmp_path / "numbered.csv"
    numbered.write_text("time,value\n" + "".join(f"{i * 300},{i}\n" for i in range(9)))
    plain = tmp_path / "plain.csv"
    plain.write_text("value\n" + "".join(f"{i}\n" for i in range(9)))
    assert al.load_data(str(dated)).step_seconds == 300.0  # median: the hour changes do not count
    assert al.load_data(str(numbered)).step_seconds is None  # numbers: unknown units
    assert al.load_data(str(plain)).step_seconds is None


def _nab_score_tool():
    spec = importlib.util.spec_from_file_location("nab_score", NAB_TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_score"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not NAB_TOOL.is_file(), reason="NAB's scorer (../shared/tools/nab_score.py) is not here")
def test_nab_scorer_reads_the_results_the_project_writes(tmp_path):
    """A small NAB corpus (one series, one anomaly window) in NAB's layout: the project's results
    file is read by NAB's scorer, and a detector that finds the anomaly scores above zero."""
    n = 1200
    t = np.arange(n)
    v = np.sin(2 * np.pi * t / 50) + 0.05 * np.random.default_rng(5).normal(size=n)
    v[900:910] += 3.0
    stamps = [f"2024-01-{1 + i // 288:02d} {(i % 288) // 12:02d}:{5 * (i % 12):02d}:00" for i in range(n)]
    data = tmp_path / "NAB" / "data" / "synthetic"
    data.mkdir(parents=True)
    (data / "spikes.csv").write_text("timestamp,value\n" + "".join(f"{s},{x:.5f}\n" for s, x in zip(stamps, v)))
    labels = tmp_path / "NAB" / "labels"
    labels.mkdir()
    windows = {"synthetic/spikes.csv": [[stamps[860] + ".000000", stamps[940] + ".000000"]]}
    (labels / "combined_windows.json").write_text(json.dumps(windows))
    (labels / "combined_labels.json").write_text(json.dumps({"synthetic/spikes.csv": [stamps[900] + ".000000"]}))

    source = al.load_data("nab:synthetic/spikes.csv", data_dir=tmp_path)
    assert source.windows == [(860, 940)]
    det = al.Continuation(window=24, horizon=3, hidden=16, num_layers=1, season=0, epochs=10, lr=3e-3, device="cpu")
    scores, _ = nab.run_protocol(det, source, chunk=64)
    unit = nab.results_scores(det, scores, values=source.values, step_seconds=source.step_seconds)
    plain = nab.results_scores(det, scores, values=source.values)  # four days: shorter than a week, so no cycle
    assert np.array_equal(unit, plain) and np.array_equal(nab.results_scores(det, scores, values=source.values, step_seconds=1e-3), plain)
    p = nab.probation_steps(n)
    assert unit[:p].max() == 0 and ((unit >= 0) & (unit < 1)).all()
    assert unit[p : p + p // 2].max() < SurpriseScore().alarm_level <= unit[900:941].max()  # settles, then finds it
    path = nab.write_results(tmp_path / "results", source, unit, "continuation")
    assert path == tmp_path / "results" / "continuation" / "synthetic" / "continuation_spikes.csv"

    out = subprocess.run(
        [sys.executable, str(NAB_TOOL), "--data", str(data.parent), "--labels", str(labels / "combined_windows.json"),
         "--results", str(tmp_path / "results"), "--json", str(tmp_path / "scores.json")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("continuation standard ")
    report = json.loads((tmp_path / "scores.json").read_text())["detectors"]["continuation"]
    assert report["standard"]["normalized"] > 50 and report["standard"]["tp"] >= 1  # the spike window is found
    tool = _nab_score_tool()  # the same numbers when imported by path
    corpus = tool.Corpus(str(data.parent), str(labels / "combined_windows.json"))
    got = corpus.load_detector(str(tmp_path / "results"), "continuation", False)
    assert np.allclose(got, unit[corpus.series[0].first_scored :], atol=1e-6)


def test_the_robust_tail_is_not_raised_by_anomalies_among_the_calibration_scores():
    """A tail fitted between the top 20 % and 10 % of the scores: 5 % anomalies among them
    move the 1 % threshold a little (4.6 to 6.9: they shift which scores are the top 20 % and
    10 %), while the top tenth's mean excess, the default tail, is carried up to the anomalies
    (past 15); its p-values and threshold agree."""
    from anomalib_lite.scoring.thresholds import fit_tail

    rng = np.random.default_rng(0)
    clean = rng.exponential(size=4000)  # the 1 % quantile of an exponential: ln 100 = 4.61
    dirty = clean.copy()
    dirty[rng.choice(4000, 200, replace=False)] = rng.uniform(20, 30, 200)
    robust = tail_threshold(dirty, 0.01, start=0.2)
    assert abs(tail_threshold(clean, 0.01, start=0.2) - np.log(100)) < 0.5 and robust < 1.6 * np.log(100)
    assert tail_threshold(dirty, 0.01) > 15  # (the default tail: inside the anomalies)
    tail = fit_tail(dirty, start=0.2)
    grid = np.linspace(0, 40, 2001)
    p = tail_p_values(grid, dirty, tail=tail)
    assert np.array_equal(grid > robust, p <= 0.01) and (np.diff(p) <= 0).all()
    assert tail_threshold(dirty[:12], 0.01, start=0.2) == tail_threshold(dirty[:12], 0.01)  # few scores: the default


def test_no_nab_probationary_period_holds_a_window_so_labels_never_move_what_its_route_learns():
    """``fit`` neither learns nor calibrates on a labelled series' labelled steps (``workflows.normal_steps``);
    NAB's windows are labels, and its probationary periods (what the NAB route fits on) hold none,
    so no NAB threshold, nor anything NAB's score reads, depends on its labels."""
    from anomalib_lite.app.workflows import normal_steps
    from anomalib_lite.data.series_sources import nab_files

    det = al.Continuation()
    names = nab_files()
    assert len(names) >= 18  # (the shared series are there)
    for name in names:
        whole = al.load_data(f"nab:{name}")
        assert normal_steps(al.load_data(f"nab:{name}?stop={nab.probation_steps(len(whole))}"), det) is None, name
        assert normal_steps(whole, det) is not None or not whole.anomaly_labels().any(), name
