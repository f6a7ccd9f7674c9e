"""A CSV table of features (one sample per row, ``?rows=samples``) through the `anomaly` command:
the vectors route, labels from the label column, scoring by column name, one-line errors."""
import csv

import numpy as np
import pytest
from click.testing import CliRunner

import anomalib_lite as al
from cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_table(path, x, y=None, columns=None):
    columns = columns or [f"f{i}" for i in range(x.shape[1])]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns + ([] if y is None else ["label"]))
        for i, row in enumerate(x):
            w.writerow([f"{v:.5f}" for v in row] + ([] if y is None else [int(y[i])]))
    return path


@pytest.fixture
def tables(tmp_path):
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(300, 5))
    test = rng.normal(size=(120, 5))
    y = np.zeros(120, dtype=int)
    test[-12:] += 4.0  # planted outliers, far from every normal row
    y[-12:] = 1
    return (write_table(tmp_path / "normal.csv", normal), write_table(tmp_path / "test.csv", test, y), test, y)


def test_a_table_is_fitted_row_by_row_and_scored_by_column_name(tmp_path, tables):
    normal, test, x, y = tables
    out = tmp_path / "t.anomaly"
    r = run("fit", "--data", f"{normal}?rows=samples", "-o", out, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "chose the route for vectors" in r.output and "300 samples" in r.output
    assert al.read_header(out)["data"]["columns"] == [f"f{i}" for i in range(5)]
    r = run("score", out, "--data", test, "-o", tmp_path / "s.csv")  # the bundle reads it as a table
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 120 and [int(r["label"]) for r in rows] == y.tolist()
    scores = np.array([float(r["score"]) for r in rows])
    assert scores[y == 1].min() > scores[y == 0].max()  # every planted outlier above every normal row
    # the same table with its columns in another order (and the label first) scores the same
    order = [3, 0, 4, 1, 2]
    with open(tmp_path / "shuffled.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label"] + [f"f{i}" for i in order])
        for row, label in zip(x, y):
            w.writerow([int(label)] + [f"{row[i]:.5f}" for i in order])
    r = run("score", out, "--data", tmp_path / "shuffled.csv", "-o", tmp_path / "s2.csv")
    assert r.exit_code == 0, r.output
    again = np.array([float(r["score"]) for r in csv.DictReader(open(tmp_path / "s2.csv"))])
    np.testing.assert_allclose(again, scores, rtol=1e-5)


def test_a_labelled_table_is_fitted_on_its_normal_rows(tmp_path, tables):
    _, test, _, _ = tables
    r = run("fit", "latent", "--data", f"{test}?rows=samples", "-o", tmp_path / "x.anomaly")
    assert r.exit_code == 2 and "12 of 120 rows are labelled anomalous" in r.output
    assert f"{test}?rows=samples&classes=normal" in r.output and not (tmp_path / "x.anomaly").exists()
    r = run("fit", "latent", "--data", f"{test}?rows=samples&classes=normal", "-o", tmp_path / "x.anomaly")
    assert r.exit_code == 0 and "108 samples" in r.output, r.output
    # the fit says what became an input and what did not (a label column must never leak in)
    assert "(input columns: f0, f1, f2, f3, f4; labels: column 'label', not an input)" in r.output
    assert al.load(tmp_path / "x.anomaly").n_features_in_ == 5


def test_a_table_read_as_a_series_says_how_it_was_read(tmp_path, tables):
    normal, _, _, _ = tables
    r = run("fit", "--data", normal, "-o", tmp_path / "s.anomaly", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "no time column: its rows were read as the steps of one series" in r.output
    assert f"{normal}?rows=samples" in r.output


@pytest.mark.parametrize("spec, message", [
    ("{test}?rows=x", "rows 'x': use rows=samples"),
    ("{test}?rows=samples&grid=1", "grid= applies to series, not to rows=samples"),
    ("{test}?rows=samples&order=sort", "order= applies to series, not to rows=samples"),
    ("mnist:test?rows=samples", "rows= applies to CSV files only"),
    ("nab:realKnownCause/nyc_taxi.csv?rows=samples", "rows= applies to CSV files only"),
    ("{test}?rows=steps", "a time series, but LatentDistance takes images or vectors"),
])
def test_rows_given_wrongly_is_one_error(tmp_path, tables, spec, message):
    normal, test, _, _ = tables
    bundle = tmp_path / "t.anomaly"
    assert run("fit", "latent", "--data", f"{normal}?rows=samples", "-o", bundle).exit_code == 0
    r = run("score", bundle, "--data", spec.format(test=test), "-o", tmp_path / "o.csv")
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "o.csv").exists()


def test_the_api_reads_a_table_spec_as_vectors(tables):
    normal, test, x, y = tables
    src = al.load_data(f"{test}?rows=samples")
    assert src.x.shape == (120, 5) and src.anomaly_labels().tolist() == y.tolist()
    det = al.LatentDistance().fit(al.load_data(f"{normal}?rows=samples"))
    s = det.decision_function(src)
    assert s[y == 1].min() > s[y == 0].max()


def test_a_table_bundle_reads_a_table_on_stdin(tmp_path, tables):
    normal, test, _, y = tables
    bundle = tmp_path / "t.anomaly"
    assert run("fit", "latent", "--data", f"{normal}?rows=samples", "-o", bundle).exit_code == 0
    r = CliRunner().invoke(cli, ["score", str(bundle), "--data", "-", "-o", "-"], input=test.read_text())
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(line for line in r.output.splitlines() if "," in line))
    scores = np.array([float(r["score"]) for r in rows])
    assert len(rows) == 120 and scores[y == 1].min() > scores[y == 0].max()
    r = CliRunner().invoke(cli, ["score", str(bundle), "--data", "-", "--stream"], input=test.read_text())
    assert r.exit_code == 2 and "--stream reads series lines" in r.output


def test_an_npz_of_vectors_with_0_1_labels_evaluates_and_is_fitted_on_its_normals(tmp_path):
    """0/1 labels say which samples are normal (as a series' label column does); other labels
    name classes without saying which is normal, so they still need ?classes= or the bundle's."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = np.zeros(200, dtype=int)
    x[-15:] += 5.0
    y[-15:] = 1
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.savez(tmp_path / "b.npz", x=x, y=y.astype(bool))
    assert al.load_data(str(tmp_path / "b.npz")).anomaly_labels().tolist() == y.tolist()
    r = run("fit", "latent", "--data", tmp_path / "d.npz", "-o", tmp_path / "m.anomaly")
    assert r.exit_code == 2 and "15 of 200 samples are labelled anomalous" in r.output
    assert f"{tmp_path / 'd.npz'}?classes=0" in r.output
    assert run("fit", "latent", "--data", f"{tmp_path / 'd.npz'}?classes=0", "-o", tmp_path / "m.anomaly").exit_code == 0
    r = run("evaluate", tmp_path / "m.anomaly", "--data", tmp_path / "d.npz", "--report", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    assert "anomalous            15 of 200" in r.output and "ROC-AUC              100.00 %" in r.output
    # a bundle fitted on unlabelled vectors: 0/1 labels are read as such, ten classes are not
    np.save(tmp_path / "plain.npy", x[:-15])
    assert run("fit", "latent", "--data", tmp_path / "plain.npy", "-o", tmp_path / "p.anomaly").exit_code == 0
    r = run("evaluate", tmp_path / "p.anomaly", "--data", tmp_path / "d.npz")
    assert r.exit_code == 0 and "anomalous            15 of 200" in r.output, r.output
    np.savez(tmp_path / "many.npz", x=x, y=rng.integers(0, 10, 200))
    r = run("evaluate", tmp_path / "p.anomaly", "--data", tmp_path / "many.npz")
    assert r.exit_code == 2 and "no labels" in r.output


def test_a_report_of_vectors_lists_the_rows_with_their_values(tmp_path, tables):
    """A vector bundle's report has galleries of rows (no pixels to map): name, score, verdict,
    true label and each value, under the fit's column names."""
    import re

    normal, test, x, y = tables
    bundle = tmp_path / "t.anomaly"
    assert run("fit", "latent", "--data", f"{normal}?rows=samples", "-o", bundle).exit_code == 0
    r = run("evaluate", bundle, "--data", test, "--report", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    top = page[page.index('id="top-anomalies"'):]
    table = top[: top.index("</table>")]
    assert [h for h in re.findall(r"<th>([^<]*)</th>", table)] == ["sample", "score", "verdict", "true"] + [
        f"f{i}" for i in range(5)]
    first = re.findall(r"<tr><td>([^<]*)</td>", table)
    assert len(first) > 0 and all(int(i) >= 108 for i in first[:12])  # the planted outliers come first
    row = int(first[0])
    cells = re.findall(r"<td>([^<]*)</td>", table)[:9]
    assert [float(c) for c in cells[4:]] == pytest.approx(x[row].tolist(), abs=1e-3)


def test_maps_of_vectors_are_refused_before_any_output(tmp_path, tables):
    normal, test, _, _ = tables
    bundle = tmp_path / "t.anomaly"
    assert run("fit", "latent", "--data", f"{normal}?rows=samples", "-o", bundle).exit_code == 0
    r = run("score", bundle, "--data", test, "-o", tmp_path / "s.csv", "--maps", tmp_path / "maps")
    assert r.exit_code == 2 and "vectors, which have no pixels to map" in r.output
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "maps").exists()


def test_a_table_bundle_exports_to_onnx_as_vectors(tmp_path, tables):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    normal, test, x, _ = tables
    bundle = tmp_path / "t.anomaly"
    assert run("fit", "latent", "--data", f"{normal}?rows=samples", "-o", bundle).exit_code == 0
    r = run("export", bundle, "-o", tmp_path / "t.onnx")
    assert r.exit_code == 0 and "input vectors Nx5 float32 (the values as fit read them)" in r.output, r.output
    session = ort.InferenceSession(str(tmp_path / "t.onnx"))
    (score,) = session.run(["score"], {session.get_inputs()[0].name: x.astype(np.float32)})
    np.testing.assert_allclose(score.ravel(), al.load(bundle).decision_function(x.astype(np.float32)), rtol=1e-4, atol=1e-4)


def test_an_output_that_fails_late_takes_the_run_s_finished_outputs_with_it(tmp_path, tables, monkeypatch):
    """Nothing half-written: when a later output fails, those the run already finished go too
    (score: the CSV before the report; evaluate: the report before the figures' JSON)."""
    import types

    import anomalib_lite.app.workflows as workflows
    import anomalib_lite.evaluation.report as report

    normal, test, _, _ = tables
    bundle = tmp_path / "t.anomaly"
    assert run("fit", "latent", "--data", f"{normal}?rows=samples", "-o", bundle).exit_code == 0
    before = sorted(p.name for p in tmp_path.iterdir())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(report, "render_report", broken)
        r = run("score", bundle, "--data", test, "-o", tmp_path / "s.csv", "--report", tmp_path / "r.html")
    assert r.exit_code != 0 and sorted(p.name for p in tmp_path.iterdir()) == before
    with monkeypatch.context() as m:
        m.setattr(workflows, "json", types.SimpleNamespace(dumps=broken))
        r = run("evaluate", bundle, "--data", test, "--report", tmp_path / "r.html", "--json", tmp_path / "f.json")
    assert r.exit_code != 0 and sorted(p.name for p in tmp_path.iterdir()) == before
    # and the same commands without the failure write every output
    r = run("evaluate", bundle, "--data", test, "--report", tmp_path / "r.html", "--json", tmp_path / "f.json")
    assert r.exit_code == 0 and (tmp_path / "r.html").exists() and (tmp_path / "f.json").exists()


def test_an_id_column_names_the_rows_and_is_no_input(tmp_path):
    """Ids that differ between the fitted and the scored table (a database key) decided every
    distance when read as a feature (ROC-AUC 0 on this table); now they name the rows."""
    rng = np.random.default_rng(1)
    normal, test = rng.normal(size=(200, 3)), rng.normal(size=(40, 3))
    test[:8] += 5.0
    y = (np.arange(40) < 8).astype(int)
    for path, x, ids, labels in ((tmp_path / "n.csv", normal, 1000 + np.arange(200), None),
                                 (tmp_path / "t.csv", test, 9000 + np.arange(40), y)):
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["customer_id", "a", "b", "c"] + ([] if labels is None else ["label"]))
            for i, row in enumerate(x):
                w.writerow([ids[i]] + [f"{v:.5f}" for v in row] + ([] if labels is None else [labels[i]]))
    out = tmp_path / "t.anomaly"
    r = run("fit", "--data", f"{tmp_path / 'n.csv'}?rows=samples", "-o", out, "--device", "cpu")
    assert r.exit_code == 0 and "input columns: a, b, c; row names: column 'customer_id', not an input" in r.output
    r = run("score", out, "--data", tmp_path / "t.csv", "-o", tmp_path / "s.csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [row["customer_id"] for row in rows[:2]] == ["9000", "9001"]
    scores = np.array([float(row["score"]) for row in rows])
    assert scores[y == 1].min() > scores[y == 0].max()


def test_the_table_route_weighs_columns_in_their_own_units_alike(tmp_path):
    """A change in a narrow column (0.01 wide beside one 1000 wide) is found: the route
    standardises each column on the training rows (LatentDistance(scaling="feature"))."""
    rng = np.random.default_rng(2)
    units = np.array([1.0, 1000.0, 0.01])
    normal, test = rng.normal(size=(300, 3)) * units, rng.normal(size=(60, 3)) * units
    y = (np.arange(60) < 10).astype(int)
    test[:10, 2] += 0.06  # six standard deviations of its own column
    write_table(tmp_path / "n.csv", normal)
    write_table(tmp_path / "t.csv", test, y)
    out = tmp_path / "t.anomaly"
    r = run("fit", "--data", f"{tmp_path / 'n.csv'}?rows=samples", "-o", out, "--device", "cpu")
    assert r.exit_code == 0 and "each standardised" in r.output and "spreads differ" not in r.output, r.output
    assert al.load(out).scaling == "feature"
    r = run("evaluate", out, "--data", tmp_path / "t.csv", "--json", tmp_path / "f.json")
    assert r.exit_code == 0, r.output
    import json

    assert json.load(open(tmp_path / "f.json"))["roc_auc"] > 0.95  # the values as they are: about 0.5
    # an array's features share one unit (embeddings): the route takes them as they are, and warns
    np.save(tmp_path / "v.npy", normal.astype(np.float32))
    with pytest.warns(UserWarning, match=r"spreads differ .*--scaling feature"):
        r = run("fit", "--data", tmp_path / "v.npy", "-o", tmp_path / "v.anomaly", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert al.load(tmp_path / "v.anomaly").scaling == "none"


def test_fit_latent_reads_a_table_with_the_csv_options_and_names_columns_in_its_warnings(tmp_path):
    """`anomaly fit latent` had no --column: a table's columns could be chosen only by `anomaly fit`."""
    out = tmp_path / "t.anomaly"
    rng = np.random.default_rng(3)
    write_table(tmp_path / "wide.csv", np.c_[rng.normal(size=(200, 1)) * 1000, rng.normal(size=(200, 3))])  # f0 in thousands
    with pytest.warns(UserWarning, match=r"spreads differ .*\(column 'f0': std .*column 'f3'"):
        r = run("fit", "latent", "--data", f"{tmp_path / 'wide.csv'}?rows=samples", "--column", "f0,f3", "-o", out)
    assert r.exit_code == 0 and "(input columns: f0, f3)" in r.output, r.output
    assert al.read_header(out)["data"]["columns"] == ["f0", "f3"]
