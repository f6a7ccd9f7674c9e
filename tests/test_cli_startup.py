"""The command line answers at once: help, usage errors and `info` never import torch.

Each check runs in a fresh interpreter (the test process has torch loaded already) and asserts
on what ended up in ``sys.modules``; speed itself is measured by benchmarks/cli_startup.py.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import anomalib_lite as al
from anomalib_lite.app import options

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "sklearn")

PROBE = """
import json, sys
import cli
codes = []
for args in json.loads(sys.argv[1]):
    try:
        cli.cli(args, prog_name="anomaly")
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code)
print(json.dumps({"codes": codes, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def probe(calls: list[list[str]]) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(calls)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_stored_options_match_the_code():
    """options.json is what the detectors' signatures say (after changing one: python -m anomalib_lite.app.options)."""
    assert options.load() == json.loads(options.dumps(options.generate()))


def test_help_and_usage_errors_import_no_torch():
    fits = [["fit", n] for n in ("latent", "reconstruction", "synthetic", "continuation", "rnn")]
    commands = [[]] + fits + [[c] for c in ("fit", "score", "evaluate", "pretrain", "augment", "backbones", "info",
                                            "demo", "export", "keygen")]
    helps = [[*c, "--help"] for c in commands]
    errors = [
        ["fit", "latent", "--data", "x"],  # missing -o
        ["fit", "latent", "--data", "x", "-o", "m.anomaly", "--method", "nope"],  # bad choice
        ["fit", "reconstruction", "--data", "x", "-o", "m.anomaly", "--epochs", "two"],  # bad number
        ["score", "m.anomaly"],  # missing --data
        ["evaluate", "m.anomaly", "--data", "x", "--bogus"],  # unknown option
        ["nonsense"],  # unknown command
        ["pretrain", "--data", "x", "-o", "w.safetensors"],  # missing --backend
    ]
    got = probe(helps + errors)
    assert got["codes"] == [0] * len(helps) + [2] * len(errors)
    assert got["heavy"] == []


def test_info_reads_the_header_without_torch_and_tells_the_truth(tmp_path):
    x = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    al.LatentDistance(image_score="pooled", device="cpu").fit(x[:30]).calibrate(x[30:], fpr=0.2).save(tmp_path / "m.anomaly")
    code = ("import sys, cli\nsys.argv = ['anomaly', 'info', sys.argv[1]]\ntry:\n    cli.main()\nexcept SystemExit:\n"
            "    pass\nprint('HEAVY', [m for m in %r if m in sys.modules])" % (HEAVY,))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.anomaly")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "HEAVY []"
    assert "detector: LatentDistance" in r.stdout and "backbone: none (raw pixels)" in r.stdout
    assert "imagenet" not in r.stdout  # a raw-pixel bundle has no weights
    assert al.read_header(tmp_path / "m.anomaly")["fitted"]["n_seen_"] == 30
    from anomalib_lite.bundles.header import describe_header

    al.LatentDistance(device="cpu").fit(x[:30].reshape(30, -1)).save(tmp_path / "v.anomaly")  # vectors: no pixels
    assert "backbone: none (the values themselves)" in describe_header(al.read_header(tmp_path / "v.anomaly"))


def test_header_reader_refuses_damaged_files_in_one_line(tmp_path):
    import pytest

    x = np.random.default_rng(0).random((20, 4), dtype=np.float32)
    path = tmp_path / "m.anomaly"
    al.LatentDistance(device="cpu").fit(x).save(path)
    data = path.read_bytes()
    (tmp_path / "cut.anomaly").write_bytes(data[:-3])
    (tmp_path / "short.anomaly").write_bytes(data[:5])
    (tmp_path / "junk.anomaly").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    for name, why in (("cut", "truncated: its tensors need"), ("short", "truncated"), ("junk", "not valid JSON")):
        with pytest.raises(al.AnomalyError, match=why):
            al.read_header(tmp_path / f"{name}.anomaly")
        with pytest.raises(al.AnomalyError, match="not a readable bundle|not valid JSON"):
            al.load(tmp_path / f"{name}.anomaly")
