"""`anomaly evaluate` and the show options of `anomaly score` (--maps, --top, --report): what they
print and write, and their bad-input contract (one line, exit 2, nothing half-written)."""
import json

from click.testing import CliRunner

from cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_evaluate_prints_the_table_and_writes_json_and_report(digit7, tmp_path):
    js, html = tmp_path / "f.json", tmp_path / "r.html"
    r = run("evaluate", digit7, "--data", "mnist:test?limit=800", "--json", js, "--report", html)
    assert r.exit_code == 0, r.output
    figures = json.loads(js.read_text())
    assert figures["roc_auc"] > 0.9 and 0 <= figures["fpr"] < 0.1 and figures["n"] == 800
    assert f"{100 * figures['roc_auc']:.2f} %" in r.output and "F1" in r.output
    assert r.output.strip().splitlines()[-1] == f"wrote report {html}, figures {js}"
    page = html.read_text()
    assert 'id="roc"' in page and 'id="top-anomalies"' in page and "data:image/png;base64," in page


def test_evaluate_reports_pixel_roc_auc_on_planted_anomalies(digit7, tmp_path):
    js = tmp_path / "f.json"
    r = run("evaluate", digit7, "--data", "mnist:test?classes=7&limit=100&synth=stroke_blob&severity=1",
            "--json", js, "--quiet")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("detector") and "pixel ROC-AUC" in r.output  # --quiet: no progress, the result still
    assert json.loads(js.read_text())["pixel_roc_auc"] > 0.8


def test_score_writes_top_k_heatmaps_and_a_report(digit7, tmp_path):
    maps, html = tmp_path / "maps", tmp_path / "r.html"
    r = run("score", digit7, "--data", "mnist:test?limit=300", "--maps", maps, "--top", 5, "--report", html)
    assert r.exit_code == 0, r.output
    assert len(list(maps.glob("*.png"))) == 5 and html.stat().st_size > 10_000
    assert f"5 heatmaps to {maps}" in r.output and f"report {html}" in r.output


def test_evaluate_without_labels_says_so_before_scoring(digit7, tmp_path, mnist_dir):
    import numpy as np

    import anomalib_lite as al

    bare = tmp_path / "bare.npy"
    np.save(bare, al.load_data("mnist:test?limit=100").x)
    html = tmp_path / "r.html"
    r = run("evaluate", digit7, "--data", bare, "--report", html)
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [f"anomaly: error: {bare}: no labels; ROC-AUC, AP and F1 need labels: give "
                                             "data with classes (e.g. mnist:test) or a label column"]
    assert not html.exists()  # nothing scored, nothing written
    r = run("evaluate", digit7, "--data", "mnist:test?classes=3&limit=20", "--report", html)
    assert r.exit_code == 2 and "every label says anomalous" in r.output and not html.exists()
    from PIL import Image

    for cls in ("fine", "ng"):  # a folder whose normal class has a name no rule knows
        (tmp_path / "lot" / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "lot" / cls / "0.png")
    r = run("evaluate", digit7, "--data", tmp_path / "lot", "--report", html)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and not html.exists()
    assert "no sub-folder is named as normal data (good, normal, ok)" in r.output and "found: fine, ng" in r.output


def test_show_options_bad_input(digit7, tmp_path):
    series = tmp_path / "s.csv"
    series.write_text("value\n" + "".join(f"{i % 7}\n" for i in range(300)))
    cont = tmp_path / "c.anomaly"
    r = run("fit", "continuation", "--data", series, "-o", cont, "--window", 8, "--epochs", 1, "--quiet")
    assert r.exit_code == 0, r.output
    html = tmp_path / "series.html"
    r = run("evaluate", cont, "--data", series, "--report", html)  # a series without labels
    assert r.exit_code == 2 and "need labels" in r.output and not html.exists()
    r = run("score", cont, "--data", series, "--maps", tmp_path / "maps")
    assert r.exit_code == 2 and "has no score_map" in r.output and not (tmp_path / "maps").exists()
    r = run("evaluate", digit7, "--data", "mnist:test?limit=50", "--report", tmp_path / "nope" / "r.html")
    assert r.exit_code == 2 and "does not exist" in r.output
    r = run("score", digit7, "--data", "mnist:test?limit=50", "--top", 3, "-o", tmp_path / "scores.csv")
    assert r.exit_code == 2 and "--top applies with --maps" in r.output and not (tmp_path / "scores.csv").exists()


def test_every_command_has_help_with_an_example():
    commands = [["fit", name] for name in ("latent", "reconstruction", "synthetic", "continuation", "rnn")]
    commands += [[c] for c in ("fit", "score", "evaluate", "pretrain", "augment", "backbones", "info", "demo",
                               "export")]
    for c in commands:
        r = run(*c, "--help")
        assert r.exit_code == 0 and "Example:" in r.output and "anomaly " in r.output, c


def test_fit_help_says_what_data_each_detector_learns_from():
    """The supervised early-warning detector learns from labelled steps, every other one from normal data."""
    assert "Labelled series" in " ".join(run("fit", "rnn", "--help").output.split())
    for name in ("latent", "continuation"):
        out = " ".join(run("fit", name, "--help").output.split())
        assert "Normal data" in out and "Labelled" not in out, name


def test_an_image_bundle_given_a_series_says_so_before_reading_it(digit7, tmp_path):
    """Not the CSV's own problems (an empty cell: "use --nan interpolate", which this bundle has no
    use for): the kind of data is wrong, said first."""
    series = tmp_path / "s.csv"
    series.write_text("time,value\n2026-01-01 00:00,1.0\n2026-01-01 01:00,\n2026-01-01 02:00,3.0\n")
    for command in ("score", "evaluate"):
        r = run(command, digit7, "--data", series)
        assert r.exit_code == 2, r.output
        assert r.output.strip().splitlines() == [f"anomaly: error: {series}: a time series, but LatentDistance takes "
                                                 "images or vectors (a table whose rows are samples, not steps in "
                                                 f"time: {series}?rows=samples)"]


def test_errors_about_the_data_name_the_data_spec(digit7, tmp_path):
    """What a detector finds wrong with its input (it sees arrays, not files) is said of the spec."""
    import numpy as np
    from PIL import Image

    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(small)
    r = run("score", digit7, "--data", small)
    assert r.exit_code == 2
    assert r.output.startswith(f"anomaly: error: {small}: samples are 1x16x16 but LatentDistance was fitted on 1x28x28")
