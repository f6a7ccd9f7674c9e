"""The `anomaly` command end to end on real MNIST, and its bad-input contract (exit 2, one line,
no output file)."""
import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_fit_score_info_round_trip(digit7, tmp_path):
    out = tmp_path / "scores.csv"
    r = run("score", digit7, "--data", "mnist:test?limit=1000", "-o", out)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1000 and list(rows[0]) == ["index", "score", "p_value", "is_anomaly", "label"]
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r["score"]) for r in rows])
    flagged = np.array([int(r["is_anomaly"]) for r in rows])
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(labels, scores)
    assert auc > 0.9
    assert f"ROC-AUC {100 * auc:.2f}" in r.output
    assert flagged[labels == 0].mean() < 0.05  # calibrated at fpr 0.01 on held-out 7s
    assert flagged[labels == 1].mean() > 0.15
    r = run("info", digit7)
    assert r.exit_code == 0 and "detector: LatentDistance" in r.output and "normal_classes" in r.output
    header = json.loads(run("info", digit7, "--json").output)
    assert header["normal_classes"] == ["7"] and header["fitted"]["fpr_"] == 0.01


def test_backbones_lists_every_name_and_cache_state():
    r = run("backbones")
    assert r.exit_code == 0
    for name in ("resnet18", "se_resnet50", "lenet5", "googlenet", "densenet121", "vgg11_bn"):
        assert name in r.output
    assert "not cached" in r.output and "n/a" in r.output and "layer2*" in r.output


def test_demo_prints_roc_auc(mnist_dir):
    r = run("demo", "--digit", "1", "--no-download", "--quiet")
    assert r.exit_code == 0, r.output
    auc = float(r.output.split("ROC-AUC ")[1].split()[0])
    assert auc > 99.0  # digit 1: 99.8 for raw-pixel kNN


def _bad_array(tmp_path, kind):
    path = tmp_path / f"{kind}.npy"
    x = np.random.default_rng(0).random((20, 28, 28)).astype(np.float32)
    if kind == "nan":
        x[3, 4, 5] = np.nan
    if kind == "rank5":
        x = x.reshape(20, 1, 1, 28, 28)
    np.save(path, x)
    return path


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t, b: ("fit", "latent", "--data", t / "missing.npy", "-o", t / "o.anomaly"), "does not exist"),
        (lambda t, b: ("fit", "latent", "--data", "cifar:train", "-o", t / "o.anomaly"), "unknown data scheme"),
        (lambda t, b: ("fit", "latent", "--data", "mnist:train?classes=11", "-o", t / "o.anomaly"), "class '11' not found"),
        (lambda t, b: ("fit", "latent", "--data", _bad_array(t, "nan"), "-o", t / "o.anomaly"), "sample 3 contains NaN"),
        (lambda t, b: ("fit", "latent", "--data", _bad_array(t, "rank5"), "-o", t / "o.anomaly"), "rank 5"),
        (lambda t, b: ("fit", "latent", "--data", "mnist:train?classes=7&limit=50", "--backbone", "resnet99",
                       "-o", t / "o.anomaly"), "resnet99"),
        (lambda t, b: ("fit", "latent", "--data", "mnist:train?classes=7&limit=50", "--backbone", "resnet18",
                       "--weights", "random", "--layers", "layer7", "-o", t / "o.anomaly"), "layer7"),
        (lambda t, b: ("score", b, "--data", t, "-o", t / "o.csv"), "no image files"),
        (lambda t, b: ("score", t / "nope.anomaly", "--data", "mnist:test", "-o", t / "o.csv"), "bundle not found"),
        (lambda t, b: ("score", b, "--data", "mnist:test", "-o", t / "no" / "o.csv"), "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, digit7, make_args, message):
    args = make_args(tmp_path, digit7)
    before = set(tmp_path.rglob("*"))
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    err_lines = [line for line in r.output.splitlines() if line.startswith("anomaly: error:")]
    assert len(err_lines) == 1
    assert not [p for p in set(tmp_path.rglob("*")) - before if p.suffix in (".anomaly", ".csv", ".tmp")]


def test_scoring_data_that_does_not_fit_the_bundle(tmp_path, digit7):
    np.save(tmp_path / "rgb.npy", np.zeros((4, 3, 32, 32), np.float32))
    r = run("score", digit7, "--data", tmp_path / "rgb.npy", "-o", tmp_path / "s.csv")
    assert r.exit_code == 2 and "samples are 3x32x32 but LatentDistance was fitted on 1x28x28" in r.output
    assert not (tmp_path / "s.csv").exists()
    np.save(tmp_path / "big.npy", np.zeros((4, 1, 32, 32), np.float32))  # grey, another size: a fix is known
    r = run("score", digit7, "--data", tmp_path / "big.npy", "-o", tmp_path / "s.csv")
    assert r.exit_code == 2 and "resize them with ?size=28 on the data spec" in r.output
    np.save(tmp_path / "rgb28.npy", np.zeros((4, 3, 28, 28), np.float32))  # RGB at the fit's size: the channels
    r = run("score", digit7, "--data", tmp_path / "rgb28.npy", "-o", tmp_path / "s.csv")
    assert r.exit_code == 2 and "read them with ?channels=1 on the data spec" in r.output


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign"])
def test_damaged_bundles_exit_2(tmp_path, digit7, damage):
    bad = tmp_path / "bad.anomaly"
    data = digit7.read_bytes()
    if damage == "truncate":
        bad.write_bytes(data[: len(data) // 3])
    elif damage == "flip":
        b = bytearray(data)
        b[-10] ^= 1
        bad.write_bytes(bytes(b))
    else:
        bad.write_bytes(b"PK\x03\x04 a zip, not a bundle")
    r = run("score", bad, "--data", "mnist:test?limit=10", "-o", tmp_path / "s.csv")
    assert r.exit_code == 2 and "bad.anomaly" in r.output
    assert not (tmp_path / "s.csv").exists()


def test_usage_errors_exit_2_and_console_script_works(tmp_path):
    assert run("fit", "latent", "--data", "x").exit_code == 2  # missing -o
    assert run("fit", "latent", "--data", "x", "-o", "y", "--method", "lof").exit_code == 2
    proc = subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", "info", str(tmp_path / "none.anomaly")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bundle not found" in proc.stderr


def test_none_on_the_command_line_is_none_where_a_parameter_takes_it(tmp_path):
    """The help says "None: raw pixels", "None: all epochs": `--backbone none` and `--patience
    none` give None (they were an unknown backbone and "not a valid integer")."""
    x = np.random.default_rng(0).random((12, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = run("fit", "latent", "--data", tmp_path / "x.npy", "--backbone", "none", "-o", tmp_path / "a.anomaly")
    assert r.exit_code == 0, r.output
    import anomalib_lite as al

    assert al.load(tmp_path / "a.anomaly").backbone is None
    series = np.sin(np.arange(400) / 5.0)
    (tmp_path / "s.csv").write_text("value\n" + "\n".join(f"{v:.4f}" for v in series) + "\n")
    r = run("fit", "continuation", "--data", tmp_path / "s.csv", "--window", "16", "--epochs", "1", "--season", "0",
            "--patience", "None", "--max-time", "none", "-o", tmp_path / "c.anomaly")
    assert r.exit_code == 0, r.output
    det = al.load(tmp_path / "c.anomaly")
    assert det.patience is None and det.max_time is None
    r = run("fit", "continuation", "--data", tmp_path / "s.csv", "--max-time", "soon", "-o", tmp_path / "d.anomaly")
    assert r.exit_code == 2 and "'soon' is not a number or none" in r.output
    # a parameter that does not take None keeps its type's error
    r = run("fit", "continuation", "--data", tmp_path / "s.csv", "--window", "none", "-o", tmp_path / "d.anomaly")
    assert r.exit_code == 2 and "'none' is not a valid integer" in r.output
    assert not (tmp_path / "d.anomaly").exists()


AUG = """seed: 0
steps:
  - {op: affine, rotate: 10, translate: 0.05}
  - {op: brightness, delta: [-0.1, 0.1]}
ood:
  severity: 0.5
  ops: [cutpaste, stroke_blob]
"""


def test_augment_preview_writes_a_grid_with_masks(tmp_path, mnist_dir):
    from PIL import Image

    cfg = tmp_path / "aug.yaml"
    cfg.write_text(AUG)
    out = tmp_path / "grid.png"
    r = run("augment", cfg, "--data", "mnist:train?classes=3", "-o", out, "--synth", "--n", "6")
    assert r.exit_code == 0, r.output
    grid = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert grid.shape[0] > grid.shape[1] / 2 and grid.shape[1] > 6 * 56
    red = (grid[..., 0] > 150) & (grid[..., 1] < 90) & (grid[..., 2] < 90)
    assert red.sum() > 20  # synthesised areas are overlaid in red
    plain = tmp_path / "plain.png"
    assert run("augment", cfg, "--data", "mnist:train?classes=3", "-o", plain, "--n", "6").exit_code == 0
    assert np.asarray(Image.open(plain)).shape[0] < grid.shape[0]  # two fewer rows without --synth


def test_augment_bad_config_names_step_and_key(tmp_path, mnist_dir):
    cfg = tmp_path / "aug.yaml"
    cfg.write_text("steps:\n  - {op: rotate, degrees: [30, 10]}\n")
    r = run("augment", cfg, "--data", "mnist:train?classes=3", "-o", tmp_path / "g.png")
    assert r.exit_code == 2 and "rotate" in r.output and "degrees" in r.output
    assert not (tmp_path / "g.png").exists()
    cfg.write_text("steps:\n  - {op: twirl}\n")
    r = run("augment", cfg, "--data", "mnist:train?classes=3", "-o", tmp_path / "g.png")
    assert r.exit_code == 2 and "twirl" in r.output


def test_fit_reconstruction_and_synthetic_then_score(tmp_path, mnist_dir):
    cfg = tmp_path / "aug.yaml"
    cfg.write_text("seed: 0\nsteps:\n  - {op: affine, rotate: 5}\n")
    ae = tmp_path / "ae.anomaly"
    r = run("fit", "reconstruction", "--data", "mnist:train?classes=1&limit=400", "-o", ae,
            "--epochs", "2", "--latent-dim", "8", "--width", "8", "--augment", cfg, "--quiet")
    assert r.exit_code == 0, r.output
    # the result line and the bundle say how the network was trained and which epoch's weights it kept
    trained = re.search(r"\(trained 2 epochs, training loss [\d.]+ -> [\d.]+; kept epoch [12]'s weights, held-out "
                        r"loss [\d.]+ on (\d+) samples(?:; the held-out loss still fell \d+ % over the last [12] epochs?: more "
                        r"epochs may help \(--epochs\))?\)", r.output)
    assert trained and int(trained.group(1)) == 40, r.output  # 10 % of the 400 the kept model was fitted on
    header = json.loads(run("info", ae, "--json").output)
    assert header["params"]["augment"]["steps"][0]["op"] == "affine" and header["summary"] == trained.group(0)[1:-1]
    ood = tmp_path / "ood.anomaly"
    r = run("fit", "synthetic", "--data", "mnist:train?classes=1&limit=200", "-o", ood, "--epochs", "1",
            "--image-size", "32", "--synth-ops", "cutpaste,stroke_blob", "--quiet")
    assert r.exit_code == 0, r.output
    for bundle in (ae, ood):
        out = tmp_path / f"{bundle.stem}.csv"
        r = run("score", bundle, "--data", "mnist:test?limit=300", "-o", out)
        assert r.exit_code == 0, r.output
        assert "ROC-AUC" in r.output and len(out.read_text().splitlines()) == 301


def test_pretrain_writes_weights_that_fit_latent_uses(tmp_path, mnist_dir):
    w = tmp_path / "r18.safetensors"
    r = run("pretrain", "--backbone", "resnet18", "--data", "mnist:train?classes=3&limit=300", "-o", w,
            "--image-size", "32", "--epochs", "1", "--transforms", "rot4")
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and w.exists()
    out = tmp_path / "d3.anomaly"
    r = run("fit", "latent", "--data", "mnist:train?classes=3&limit=300", "--backbone", "resnet18",
            "--weights", w, "--image-size", "32", "--method", "gaussian", "--normalize", "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    header = json.loads(run("info", out, "--json").output)
    backbone = header["fitted"]["backbone_"]
    assert backbone["weights_source"] == str(w) and backbone["weights_sha256"]
    assert header["params"]["normalize"] is True and header["params"]["method"] == "gaussian"


def test_training_commands_reject_bad_input(tmp_path, mnist_dir):
    r = run("fit", "reconstruction", "--data", "mnist:train?classes=1&limit=50", "-o", tmp_path / "a.anomaly",
            "--augment", tmp_path / "missing.yaml")
    assert r.exit_code == 2 and "missing.yaml" in r.output
    r = run("fit", "synthetic", "--data", "mnist:train?classes=1&limit=50", "-o", tmp_path / "b.anomaly",
            "--synth-ops", "glitter")
    assert r.exit_code == 2 and "glitter" in r.output
    r = run("pretrain", "--backbone", "resnet18", "--data", "mnist:train?classes=1&limit=50",
            "-o", tmp_path / "no" / "w.safetensors")
    assert r.exit_code == 2 and "does not exist" in r.output
    assert not list(tmp_path.glob("*.anomaly"))


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGCHLD"), reason="POSIX signals")
def test_sigterm_mid_command_is_one_line_and_exit_143(monkeypatch, capsys):
    """Stopped with its process group, a command's DataLoader workers die too, and torch raises
    while the SIGTERM unwinds: the user sees one line and 128 + 15, not torch's traceback."""
    import os
    import signal

    import cli as cli_module

    def command(**kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # main's handler raises SystemExit here
        finally:
            raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")

    monkeypatch.setattr(cli_module, "cli", command)
    saved = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGCHLD)
    try:
        with pytest.raises(SystemExit) as e:
            cli_module.main()
    finally:
        signal.signal(signal.SIGTERM, saved[0])
        signal.signal(signal.SIGCHLD, saved[1])
    assert e.value.code == 143
    assert capsys.readouterr().err == "anomaly: stopped (SIGTERM); no output was half-written\n"
