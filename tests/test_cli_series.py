"""The `anomaly` command on time series: fit continuation / rnn, score to CSV, NAB results, a live
stream on stdin (one flushed line per input line, bad lines skipped), and bad input (exit 2)."""
import csv
import json
import os
import selectors
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import anomalib_lite as al
from anomalib_lite.detectors.series import TOLERANCE
from cli import cli

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = ["--window", "24", "--hidden", "16", "--num-layers", "1", "--season", "0", "--epochs", "5", "--device", "cpu", "-q"]


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def write_series(path, n=1200, spike_at=None):
    t = np.arange(n)
    v = np.sin(2 * np.pi * t / 20) + 0.05 * np.random.default_rng(0).normal(size=n)
    if spike_at is not None:
        v[spike_at] += 4
    rows = (f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00,{v[i]:.5f},{i % 7}\n" for i in range(n))
    path.write_text("timestamp,value,other\n" + "".join(rows))
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    out = folder / "m.anomaly"
    r = run("fit", "continuation", "--data", write_series(folder / "train.csv"), "--column", "value",
            "--holdout", "0.3", "--smoothing", "1", *TINY, "-o", out)
    assert r.exit_code == 0, r.output
    return out


def test_score_a_csv_series(tmp_path, bundle):
    data = write_series(tmp_path / "test.csv", n=300, spike_at=200)
    out = tmp_path / "scores.csv"
    r = run("score", bundle, "--data", data, "-o", out)  # the bundle remembers --column value
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["timestamp", "value", "score", "p_value", "is_anomaly"] and len(rows) == 300
    scores = np.array([float(r["score"]) for r in rows])
    assert np.isnan(scores[:24]).all() and np.isfinite(scores[24:]).all()
    flagged = np.flatnonzero([int(r["is_anomaly"]) for r in rows])
    assert 200 in flagged and len(flagged) < 10
    assert "scored 300 steps" in r.output


class _Lines:
    """Lines from a subprocess's stdout as they arrive, failing if none comes in time (no hang).

    Reads the raw file descriptor: a buffered ``readline`` may pull two lines into its buffer,
    after which ``select`` waits for bytes that already arrived."""

    def __init__(self, proc):
        self.fd, self.buf = proc.stdout.fileno(), b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def next(self, timeout=60) -> str:
        while b"\n" not in self.buf:
            assert self.sel.select(timeout), "no output line in time"
            chunk = os.read(self.fd, 65536)
            assert chunk, "the process closed its output"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def test_stream_answers_each_line_as_it_arrives_and_skips_bad_lines(tmp_path, bundle):
    data = write_series(tmp_path / "live.csv", n=60)
    lines = data.read_text().splitlines()
    batch = tmp_path / "batch.csv"
    assert run("score", bundle, "--data", data, "-o", batch).exit_code == 0
    table = list(csv.DictReader(batch.open()))
    expected, expected_p = [r["score"] for r in table], [r["p_value"] for r in table]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", "score", str(bundle), "--data", "-", "--stream"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out = _Lines(proc)
    try:
        proc.stdin.write(lines[0] + "\n" + lines[1] + "\n")
        proc.stdin.flush()
        assert out.next() == "timestamp,value,score,p_value,is_anomaly"
        got = [out.next()]  # answered before the next line is even written
        bad = ["2024-02-01T00:00:00,abc,1", "garbage", "2024-02-01T00:00:00,,1", "noon,1.0,1"]
        for i, line in enumerate(lines[2:], start=2):
            if i == 30:
                proc.stdin.write("\n".join(bad) + "\n")
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            got.append(out.next())
        proc.stdin.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    streamed = np.array([float(g.split(",")[2]) for g in got])  # one step at a time, in numpy ...
    assert np.allclose(streamed, np.array(expected, dtype=float), equal_nan=True, **TOLERANCE)  # ... = the batch
    streamed_p = np.array([float(g.split(",")[3]) for g in got])  # the p-values of the batch table too
    assert np.allclose(streamed_p, np.array(expected_p, dtype=float), equal_nan=True, rtol=1e-3, atol=1e-6)
    assert [g.split(",")[0] for g in got] == [ln.split(",")[0] for ln in lines[1:]]
    for n, msg in zip((31, 32, 33, 34), ("'abc' is not a number", "1 fields, the header has 3",
                                          "is empty (a gap)", "'noon' is not a date/time")):
        assert f"stdin: line {n}: " in err and msg in err
    assert "4 bad lines skipped, 60 scored" in err


def test_stream_without_header_and_with_gap_filling(bundle):
    rows = "2024-01-01T00:00:00,0.1,1\n2024-01-01T00:01:00,,1\n2024-01-01T00:02:00,0.3,1\n"
    r = run("score", bundle, "--data", "-", "--stream", "--nan", "interpolate", input=rows)
    assert r.exit_code == 0, r.output
    out = r.output.splitlines()
    assert out[0] == "timestamp,value,score,p_value,is_anomaly"
    assert out[2] == "2024-01-01T00:01:00,0.1,nan,nan,0"  # the gap takes the last value


def test_stream_with_semicolons_reads_as_with_commas(bundle):
    rows = "2024-01-01T00:00:00,0.1,1\n2024-01-01T00:01:00,0.2,1\n2024-01-01T00:02:00,0.3,1\n"
    comma = run("score", bundle, "--data", "-", "--stream", input="timestamp,value,other\n" + rows)
    semi = run("score", bundle, "--data", "-", "--stream", input="timestamp;value;other\n" + rows.replace(",", ";"))
    assert comma.exit_code == semi.exit_code == 0, semi.output
    assert semi.output == comma.output and len(semi.output.splitlines()) == 4
    euro = rows.replace(",", ";").replace(".", ",")  # decimal commas, as a spreadsheet set to German writes
    r = run("score", bundle, "--data", "-", "--stream", input="timestamp;value;other\n" + euro)
    assert r.exit_code == 0 and r.output == comma.output, r.output


def test_fit_on_a_nab_probation_period_with_every_default_then_nab_results(tmp_path):
    """NAB's CLI route: fit on the probationary period (15 % of the file) with the defaults, the
    held-out end scored as the training steps' continuation; then NAB's results file."""
    bundle = tmp_path / "ec2.anomaly"
    r = run("fit", "continuation", "--data", "nab:realKnownCause/ec2_request_latency_system_failure.csv?stop=0.15",
            "-o", bundle, "-q")
    assert r.exit_code == 0, r.output
    r = run("score", bundle, "--data", "nab:realKnownCause/ec2_request_latency_system_failure.csv",
            "--nab-results", tmp_path / "results")
    assert r.exit_code == 0, r.output
    path = tmp_path / "results" / "continuation" / "realKnownCause" / "continuation_ec2_request_latency_system_failure.csv"
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"] and len(rows) == 4032
    s = np.array([float(r["anomaly_score"]) for r in rows])
    assert ((s >= 0) & (s < 1)).all() and s[:604].max() == 0  # NAB does not score the probationary period
    labels = np.array([int(r["label"]) for r in rows])
    assert s[labels == 1].max() >= 0.5 and "anomaly windows detected" in r.output  # an alarm in a window
    edges = np.flatnonzero(np.diff(np.r_[0, labels, 0]))  # the windows, from the file's labels
    found = sum((s[a:b] >= 0.5).any() for a, b in zip(edges[::2], edges[1::2]))
    outside = int(((s >= 0.5) & (labels == 0)).sum())
    assert f"(its alarms: {found} of {len(edges) // 2} anomaly windows, {outside} outside)" in r.output


def test_fit_calibrates_on_the_held_out_end_and_every_training_step_scored_out_of_fold(tmp_path):
    """The fit line says what set the threshold: the held-out end and the training steps, each
    scored by one of 3 fits without its time block; a training part too short for 3 blocks of
    scored steps (past its first window) is calibrated on its held-out end alone."""
    tiny = [a for a in TINY if a != "-q"]
    r = run("fit", "continuation", "--data", write_series(tmp_path / "a.csv", n=600), "--column", "value",
            *tiny, "-o", tmp_path / "a.anomaly")
    assert r.exit_code == 0, r.output
    assert ("calibrated on 60 held-out steps and the 540 training steps, each scored by one of 3 fits without its "
            "block of them: threshold") in r.output
    r = run("fit", "continuation", "--data", write_series(tmp_path / "b.csv", n=40), "--column", "value",
            *tiny, "-o", tmp_path / "b.anomaly")
    assert r.exit_code == 0, r.output
    assert "calibrated on 4 held-out steps: threshold" in r.output


def test_fit_rnn_and_score_report_early_warning(tmp_path):
    rng = np.random.default_rng(1)
    n = 2500
    x, y = 0.3 * rng.normal(size=n), np.zeros(n, dtype=int)
    for onset in range(100, n - 60, 200):
        x[onset - 15 : onset] += np.linspace(0, 1.5, 15)
        x[onset : onset + 20] += 4
        y[onset : onset + 20] = 1
    data = tmp_path / "labelled.csv"
    data.write_text("timestamp,value,anomaly\n" + "".join(f"{i},{x[i]:.4f},{y[i]}\n" for i in range(n)))
    out = tmp_path / "warn.anomaly"
    r = run("fit", "rnn", "--data", data, "--label-column", "anomaly", "--horizon", "10", "--window", "32",
            "--hidden", "16", "--epochs", "10", "--device", "cpu", "-o", out)
    assert r.exit_code == 0, r.output
    assert "12 anomaly onsets, horizon 10" in r.output
    r = run("score", out, "--data", data, "--label-column", "anomaly", "-o", tmp_path / "w.csv")
    assert r.exit_code == 0, r.output
    assert "onsets warned" in r.output and "average precision" in r.output
    # --fpr is the detector's own (it calibrates on its validation tail): the threshold moves off 0.5
    # and evaluate sets the achieved false positive rate beside it
    calibrated = tmp_path / "warn-fpr.anomaly"
    r = run("fit", "rnn", "--data", data, "--label-column", "anomaly", "--horizon", "10", "--window", "32",
            "--hidden", "16", "--epochs", "10", "--fpr", "0.05", "--device", "cpu", "-o", calibrated)
    assert r.exit_code == 0, r.output
    assert "at fpr 0.05 on" in r.output and al.load(calibrated).fpr == 0.05 and al.load(calibrated).threshold_ != 0.5
    r = run("evaluate", calibrated, "--data", data, "--label-column", "anomaly")
    assert r.exit_code == 0, r.output
    assert "achieved" in r.output and "target 5.00 %" in r.output


def test_evaluate_a_labelled_series_counts_each_anomaly_and_its_false_alarms(tmp_path):
    """A label column's anomalies are events: each detected when a flag falls from its first step
    to a window after its last (the detector still reads it there), false alarms counted outside
    those spans, and the achieved false-positive rate measured there too (before, the steps after
    each anomaly counted as normal ones the threshold had wrongly flagged)."""
    rng = np.random.default_rng(3)
    n = 1600
    t = np.arange(n)
    x, y = np.sin(2 * np.pi * t / 25) + 0.1 * rng.normal(size=n), np.zeros(n, dtype=int)
    for start in (700, 1000, 1300):
        x[start : start + 3] += 4.0
        y[start : start + 3] = 1
    data = tmp_path / "labelled.csv"
    data.write_text("timestamp,value,anomaly\n" + "".join(f"{i},{x[i]:.4f},{y[i]}\n" for i in range(n)))
    bundle = tmp_path / "c.anomaly"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        r = run("fit", "continuation", "--data", f"{data}?stop=600", "--label-column", "anomaly", *TINY,
                "--fpr", "0.05", "-o", bundle)  # a clean stretch: nothing to say
        assert r.exit_code == 0, r.output
        r = run("fit", "continuation", "--data", data, "--label-column", "anomaly", *TINY, "-o", tmp_path / "all.anomaly")
        assert r.exit_code == 0, r.output
    assert not [str(w.message) for w in said if "labelled anomalous" in str(w.message)]  # (done, not warned of)
    assert ("9 steps labelled anomalous (column 'anomaly') not learned, they and the 24 after each (81 steps) left "
            "out of the threshold") in r.output  # 3 x (3 + 24)
    # the same steps with no labels: every one calibrates, the anomalies too, and the threshold rises with them
    bare = tmp_path / "bare.csv"
    bare.write_text("timestamp,value\n" + "".join(f"{i},{x[i]:.4f}\n" for i in range(n)))
    r = run("fit", "continuation", "--data", bare, *TINY, "-o", tmp_path / "bare.anomaly")
    assert r.exit_code == 0 and "left out" not in r.output and "not learned" not in r.output, r.output
    kept, every = al.load(tmp_path / "all.anomaly").calibration_scores_, al.load(tmp_path / "bare.anomaly").calibration_scores_
    assert kept.size == every.size - 81 and kept.max() < 0.5 * every.max()  # (the spikes' errors are not among them)
    r = run("evaluate", bundle, "--data", data, "--label-column", "anomaly", "--json", tmp_path / "e.json",
            "--report", tmp_path / "e.html")
    assert r.exit_code == 0, r.output
    assert '<div class="v">3 of 3</div><div class="k">anomalies detected</div>' in (tmp_path / "e.html").read_text()
    scored = run("score", bundle, "--data", data, "--label-column", "anomaly", "-o", tmp_path / "s.csv")
    assert scored.exit_code == 0 and "\nlabelled anomalies detected 3/3; false alarms " in scored.output, scored.output
    window = al.load(bundle).window
    assert f"anomalies detected   3/3 (a flag from the first labelled step to {window} steps after the last" in r.output
    figures = json.loads((tmp_path / "e.json").read_text())
    events, check = figures["events"], figures["fpr_check"]
    assert events["detected"] == 3 and events["mean_delay"] <= 2 and events["after"] == window
    # the rate's normals: the scored steps outside the spans (the first steps of the series have no score)
    assert n - 3 * (3 + window) - 2 * window <= check["normals"] <= events["points_outside"] == n - 3 * (3 + window)
    # test-then-train never reads the labels its scores are judged against: the same scores without them
    for name, spec in (("labelled", data), ("bare", bare)):
        r = run("score", bundle, "--data", spec, "--learn", "-o", tmp_path / f"{name}-scores.csv")
        assert r.exit_code == 0, r.output
    read = [list(csv.DictReader((tmp_path / f"{name}-scores.csv").open())) for name in ("labelled", "bare")]
    assert [row["score"] for row in read[0]] == [row["score"] for row in read[1]] and len(read[0]) == n


def _csv(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


GOOD = "timestamp,value\n" + "".join(f"{i},{np.sin(i / 3):.4f}\n" for i in range(200))
GAP = GOOD.replace("\n5,0.9954\n", "\n5,\n")  # line 7 has no value
assert GAP != GOOD


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t, b: ("fit", "continuation", "--data", _csv(t, GOOD), "--column", "val", *TINY, "-o", t / "o.anomaly"),
         "column 'val' not found; columns are: timestamp, value"),
        (lambda t, b: ("fit", "continuation", "--data", _csv(t, GOOD.replace("\n5,", "\n5,x")), *TINY, "-o", t / "o.anomaly"),
         "line 7: column 'value': 'x"),
        (lambda t, b: ("fit", "continuation", "--data", _csv(t, GOOD.replace("\n5,", "\nfive,")), *TINY, "-o", t / "o.anomaly"),
         "line 7: column 'timestamp': 'five' is not a date/time"),
        (lambda t, b: ("fit", "continuation", "--data", _csv(t, GAP), *TINY,
                       "-o", t / "o.anomaly"), "is empty (a gap); use --nan interpolate"),
        (lambda t, b: ("fit", "continuation", "--data", _csv(t, GOOD[:300]), *TINY, "-o", t / "o.anomaly"),
         "too short for window + horizon = 29"),
        (lambda t, b: ("fit", "continuation", "--data", _csv(t, GOOD), *TINY, "--holdout", "0.9", "-o", t / "o.anomaly"),
         "bad.csv: a series of 20 steps is too short for window + horizon = 29; give a longer series or a smaller window "
         "(window= in Python, anomaly fit continuation --window) (fit read the first 20 of its 200 steps; the last 180 "
         "calibrate: --holdout)"),
        (lambda t, b: ("fit", "rnn", "--data", _csv(t, "timestamp,value,y\n1,2,0\n2,3,2\n"), "--label-column", "y",
                       "-o", t / "o.anomaly"), "label '2' in column 'y' is not 0 or 1"),
        (lambda t, b: ("fit", "rnn", "--data", _csv(t, GOOD), "-o", t / "o.anomaly"), "needs 0/1 labels per step"),
        (lambda t, b: ("score", b, "--data", _csv(t, GOOD), "--stream", "-o", t / "o.csv"), "--stream prints to stdout"),
        (lambda t, b: ("score", b, "--data", "-", "--stream"), "no lines"),
        (lambda t, b: ("score", b, "--data", "-?grid=1", "--stream"), "--stream reads each line as it comes, with no ?options"),
        (lambda t, b: ("score", b, "--data", "mnist:test", "-o", t / "o.csv"), "not a time series"),
    ],
)
def test_bad_series_input_exits_2_with_one_line_and_no_output(tmp_path, bundle, make_args, message):
    args = make_args(tmp_path, bundle)
    before = set(tmp_path.rglob("*"))
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert len([line for line in r.output.splitlines() if line.startswith("anomaly: error:")]) == 1
    assert not [p for p in set(tmp_path.rglob("*")) - before if p.suffix in (".anomaly", ".csv", ".tmp")]


def test_a_missing_column_names_the_bundles_columns_and_a_missing_file_does_not(tmp_path, bundle):
    r = run("score", bundle, "--data", _csv(tmp_path, "timestamp,load\n1,2\n"), "-o", tmp_path / "o.csv")
    assert r.exit_code == 2 and ("column 'value' not found; columns are: timestamp, load (the bundle was fitted on "
                                 "columns value; pass --column)") in r.output
    r = run("score", bundle, "--data", _csv(tmp_path, "timestamp,load\n1,2\n"), "--column", "lod",
            "-o", tmp_path / "o.csv")  # a column the user named: no word of the bundle's
    assert r.exit_code == 2 and "column 'lod' not found" in r.output and "fitted on columns" not in r.output
    for spec in (tmp_path / "nowhere.csv", "nab:realKnownCause/nowhere.csv"):  # the file, not a column
        r = run("score", bundle, "--data", spec, "-o", tmp_path / "o.csv")
        assert r.exit_code == 2 and "nowhere.csv" in r.output and "fitted on columns" not in r.output, r.output


def test_gaps_can_be_interpolated_when_fitting(tmp_path):
    data = _csv(tmp_path, GAP)
    r = run("fit", "continuation", "--data", data, "--nan", "interpolate", "--holdout", "0.3", "--fpr", "0.05", *TINY,
            "-o", tmp_path / "o.anomaly")
    assert r.exit_code == 0, r.output


def test_the_line_scorer_is_an_api_function(bundle):
    import io

    import anomalib_lite as al
    from anomalib_lite.runtime import series_io

    det = al.load(bundle)
    lines = io.StringIO("timestamp,value,other\n2024-01-01T00:00:00,0.1,1\nbad\n2024-01-01T00:01:00,0.2,1\n")
    out, err = [], []
    scored, bad = series_io.stream_lines(det, lines, "live", columns=["value"], out=out.append, err=err.append)
    assert (scored, bad) == (2, 1) and out[0] == "timestamp,value,score,p_value,is_anomaly" and len(out) == 3
    assert out[1].startswith("2024-01-01T00:00:00,0.1,nan,") and "live: line 3: 1 fields, the header has 3" in err[0]


def test_stream_reports_every_odd_line_with_its_number_and_goes_on(tmp_path, bundle):
    """A 1 MB line, blank lines, NUL bytes and bytes that are not UTF-8: each reported on stderr
    with its line number, counted in the summary, and the lines after them still scored."""
    good = [f"2024-01-01T00:{i:02d}:00,{np.sin(i / 3):.4f},1" for i in range(8)]
    lines = [b"timestamp,value,other", good[0].encode(), b"2024-01-01T00:59:00," + b"9" * (1 << 20) + b",1",
             good[1].encode(), b"", b"   ", good[2].encode(), good[3].encode().replace(b",1", b",\x001"),
             good[4].encode(), b"2024-01-01T00:58:00,\xff\xfe,1", good[5].encode(), b"\x00", good[6].encode(),
             b"x" * (3 << 20), good[7].encode()]
    stream = b"\n".join(lines) + b"\n"
    for source in ("-", tmp_path / "live.csv"):
        if source != "-":
            source.write_bytes(stream)
        r = CliRunner().invoke(cli, ["score", str(bundle), "--data", str(source), "--stream"],
                               input=stream if source == "-" else None)
        assert r.exit_code == 0, r.output
        answered = r.stdout.splitlines()
        assert answered[0] == "timestamp,value,score,p_value,is_anomaly"
        assert [a.split(",")[0] for a in answered[1:]] == [g.split(",")[0] for g in good if g != good[3]]
        where = "stdin" if source == "-" else str(source)
        for number, why in ((3, "longer than 1,048,576 characters"), (5, "blank line"), (6, "blank line"),
                            (8, "holds NUL bytes"), (10, "is not UTF-8 text"), (12, "holds NUL bytes"),
                            (14, "longer than 1,048,576 characters")):
            assert f"anomaly: skipped: {where}: line {number}: {why}" in r.stderr
        assert ("7 bad lines skipped, 7 scored (2 over-long, 2 blank, 2 with NUL bytes, 1 not UTF-8)"
                in r.stderr), r.stderr


def test_long_lines_are_read_in_pieces_and_a_header_that_is_all_bad_is_one_error(bundle):
    import io

    from anomalib_lite.runtime import series_io

    class Counting(io.StringIO):
        biggest = 0

        def readline(self, size=-1):
            line = super().readline(size)
            Counting.biggest = max(Counting.biggest, len(line))
            return line

    got = list(series_io.read_lines(Counting("a" * 50_000 + "\n1,2\n\n"), max_line=1000))
    assert got == [(1, None, "over-long"), (2, "1,2\n", None), (3, None, "blank")]
    assert Counting.biggest <= 1 << 16  # never the whole 50,000 characters at once
    r = run("score", bundle, "--data", "-", "--stream", input="\n\n\x00\n")
    assert r.exit_code == 2 and "stdin: no lines (3 skipped)" in r.output
    assert "line 1: blank line" in r.stderr and "line 3: holds NUL bytes" in r.stderr


def test_csv_files_count_blank_lines_and_name_the_line_of_malformed_csv(tmp_path, bundle):
    data = tmp_path / "s.csv"
    rows = [f"2024-01-01T00:{i:02d}:00,{np.sin(i / 3):.4f},1" for i in range(40)]
    data.write_text("timestamp,value,other\n" + "\n".join(rows[:20]) + "\n\n\n" + "\n".join(rows[20:]) + "\n")
    r = CliRunner().invoke(cli, ["score", str(bundle), "--data", str(data), "-o", str(tmp_path / "o.csv")])
    assert r.exit_code == 0, r.output
    assert "2 blank line(s) skipped (line 22, 23)" in r.stderr
    assert len(list(csv.reader((tmp_path / "o.csv").open()))) == 41
    data.write_text("timestamp,value,other\n" + rows[0] + "\n2024-01-01T01:00:00," + "9" * 200_000 + ",1\n")
    r = CliRunner().invoke(cli, ["score", str(bundle), "--data", str(data), "-o", str(tmp_path / "o2.csv")])
    assert r.exit_code == 2 and "s.csv: line 3: malformed CSV (field larger than field limit" in r.output


def test_fit_with_no_detector_named_reads_the_series_with_every_option_given(tmp_path, monkeypatch):
    """``anomaly fit --data`` picks the route from data read with ``--column`` and ``--nan``: a
    text column and a gap are no obstacle when the options say what to read."""
    t = np.arange(900)
    v = np.sin(2 * np.pi * t / 20)
    rows = [f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00;{'' if i == 50 else f'{v[i]:.5f}'};web" for i in t]
    data = tmp_path / "s.csv"
    data.write_text("timestamp;load;host\n" + "\n".join(rows) + "\n")
    r = run("fit", "--data", data, "-o", tmp_path / "no.anomaly", "-q")
    assert r.exit_code == 2 and "'web' is not a number; choose the value columns with --column" in r.output
    assert not (tmp_path / "no.anomaly").exists()
    monkeypatch.setenv("ANOMALY_MAX_EPOCHS", "2")
    r = run("fit", "--data", data, "--column", "load", "--nan", "interpolate", "--device", "cpu", "-q",
            "-o", tmp_path / "m.anomaly")
    assert r.exit_code == 0, r.output
    assert "chose the route for series" in r.output and "fitted Continuation on" in r.output
    r = run("info", tmp_path / "m.anomaly")
    assert 'columns: ["load"]' in r.output and "route: series" in r.output


def test_a_glob_of_csv_files_fits_scores_and_is_never_overwritten(tmp_path):
    days = tmp_path / "days"
    days.mkdir()
    x = np.sin(np.arange(300) / 6.0)
    for k in range(3):
        (days / f"d{k}.csv").write_text("value\n" + "\n".join(f"{v:.4f}" for v in x[k * 100:(k + 1) * 100]) + "\n")
    spec = str(days / "*.csv")
    r = run("fit", "continuation", "--data", spec, "--window", "16", "--epochs", "1", "--season", "0",
            "-o", tmp_path / "m.anomaly")
    assert r.exit_code == 0 and "on 270 steps of" in r.output, r.output
    before = (days / "d1.csv").read_bytes()
    r = run("score", tmp_path / "m.anomaly", "--data", spec, "-o", days / "d1.csv")  # one of the files read
    assert r.exit_code == 2 and "would overwrite the input" in r.output and (days / "d1.csv").read_bytes() == before
    r = run("score", tmp_path / "m.anomaly", "--data", spec, "--nab-results", tmp_path / "res", "-o", tmp_path / "s.csv")
    assert r.exit_code == 0 and (tmp_path / "res" / "continuation" / "continuation_days.csv").is_file(), r.output
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 301
    r = run("score", tmp_path / "m.anomaly", "--data", spec, "--stream")
    assert r.exit_code == 2 and "--stream reads one file (or - for stdin)" in r.output


def test_a_time_column_named_in_another_language_is_found_by_its_dates(tmp_path):
    """`Zeit;Temperatur` (a German spreadsheet's export) was one error asking for --time-column;
    its dates now make it the time column, and the fit line says so."""
    rng = np.random.default_rng(0)
    lines = ["Zeit;Temperatur"] + [f"{1 + i // 96:02d}.03.2026 {(i % 96) // 4:02d}:{15 * (i % 4):02d};"
                                   f"{20 + 3 * np.sin(i / 15) + 0.1 * rng.standard_normal():.2f}".replace(".", ",")
                                   .replace(",", ".", 2) for i in range(600)]  # 01.03.2026 00:15;20,04
    path = tmp_path / "sensor.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "s.anomaly"
    r = run("fit", "continuation", "--data", path, "--epochs", "1", "-o", out)
    assert r.exit_code == 0, r.output
    assert "(input columns: Temperatur; time: column 'Zeit', found by its dates" in r.output
    assert al.read_header(out)["data"]["time_column"] == "Zeit"
