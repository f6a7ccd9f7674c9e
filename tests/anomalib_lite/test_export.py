"""ONNX export: onnxruntime scores as torch does (within export.TOLERANCE; maps within
export.MAP_TOLERANCE) on MNIST test digits,
the CLI writes the model atomically with its threshold, refusals are one line, and the serving
example needs neither torch nor anomalib_lite."""
from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import anomalib_lite as al
from anomalib_lite.runtime.export import MAP_TOLERANCE, TOLERANCE, export_onnx, onnx_graph, read_metadata

MISSING = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
needs_extra = pytest.mark.skipif(
    bool(MISSING), reason=f"the export extra is not installed ({', '.join(MISSING)} missing): pip install -e '.[export]'"
)
REPO = Path(__file__).resolve().parents[2]


def _ort_run(path, x):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x}), session


def _assert_close(onnx_values, torch_values, tolerance=TOLERANCE):
    """The stated tolerance: |onnx - torch| <= tolerance * max(1, |torch|)."""
    onnx_values, torch_values = np.asarray(onnx_values, np.float64), np.asarray(torch_values, np.float64)
    assert onnx_values.shape == torch_values.shape
    err = np.abs(onnx_values - torch_values) / np.maximum(1.0, np.abs(torch_values))
    assert err.max() <= tolerance, f"largest scaled difference {err.max():.3g}"


@pytest.fixture(scope="module")
def digits(mnist_dir):
    """300 training 7s (250 to fit, 50 to calibrate) and the first 24 test digits (all classes)."""
    train = next(al.iter_batches(al.load_data("mnist:train?classes=7&limit=300"), 300)).x.numpy()
    test = next(al.iter_batches(al.load_data("mnist:test?limit=24"), 24)).x.numpy()
    return train, test


@needs_extra
@pytest.mark.parametrize("det", [
    al.LatentDistance(memory_size=400, reweight=4, device="cpu"),  # raw-pixel patches, PatchCore re-weighting
    al.LatentDistance(backbone="lenet5", weights="random", image_size=32, image_score="pooled", k=3,
                      memory_size=200, device="cpu"),  # backbone (resized inside the graph), pooled kNN + maps
    al.LatentDistance(method="gaussian", map_dims=16, device="cpu"),  # per-position Gaussians (float64)
    al.Reconstruction(width=4, latent_dim=8, epochs=1, metric="ssim", device="cpu"),
], ids=["latent-pixels-reweight", "latent-lenet5-pooled", "latent-gaussian", "reconstruction-ssim"])
def test_onnxruntime_scores_equal_torch_scores(det, digits, tmp_path):
    train, test = digits
    det.fit(train[:250]).calibrate(train[250:], fpr=0.1)
    path = export_onnx(det, tmp_path / "m.onnx")
    (score, score_map), session = _ort_run(path, test)
    _assert_close(score, det.decision_function(test))
    _assert_close(score_map, det.score_map(test), MAP_TOLERANCE)
    _assert_close(session.run(["score"], {"images": test[5:6]})[0], score[5:6])  # any batch size, 1 included
    assert score.std() > 0  # not a constant graph
    meta = read_metadata(path)
    assert meta["detector"] == type(det).__name__ and meta["threshold"] == pytest.approx(det.threshold_)
    assert meta["input"]["shape"] == ["N", 1, 28, 28] and meta["outputs"] == ["score", "score_map"]


@needs_extra
def test_cli_export_of_a_bundle_and_the_serving_example(digits, tmp_path):
    """`anomaly export` writes the model beside the bundle; examples/serve_onnx.py, with torch and
    anomalib_lite made unimportable, scores a folder of PNGs as `anomaly score` does."""
    from PIL import Image

    from cli import cli

    train, test = digits
    det = al.LatentDistance(image_score="pooled", maps=False, k=2, device="cpu").fit(train[:250])
    det.calibrate(train[250:], fpr=0.1)
    bundle, model = tmp_path / "d7.anomaly", tmp_path / "d7.onnx"
    det.save(bundle)
    r = CliRunner().invoke(cli, ["export", str(bundle), "-o", str(model)])
    assert r.exit_code == 0, r.output
    assert "exported LatentDistance" in r.output and "outputs score;" in r.output and model.is_file()
    assert not list(tmp_path.glob(".d7.onnx.*"))  # no temporary file left

    folder = tmp_path / "digits"
    folder.mkdir()
    for i, img in enumerate(test[:8]):
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    block = "import runpy, sys; sys.modules['torch'] = sys.modules['anomalib_lite'] = None; "
    block += f"sys.argv = ['serve_onnx.py', {str(model)!r}, {str(folder)!r}, '--threads', '1']; "
    block += f"runpy.run_path({str(REPO / 'examples' / 'serve_onnx.py')!r}, run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    expected = det.decision_function(al.load_data(str(folder)))
    assert [r["path"] for r in rows] == [f"{i:02d}.png" for i in range(8)]
    _assert_close([float(r["score"]) for r in rows], expected)
    assert [int(r["is_anomaly"]) for r in rows] == [int(s > det.threshold_) for s in expected]


@needs_extra
def test_cli_refuses_in_one_line_and_writes_nothing(digits, tmp_path):
    from cli import cli

    train, _ = digits
    tiles = al.load_data("mnist:train?classes=7&limit=60&tile=14")
    al.LatentDistance(image_score="pooled", maps=False, device="cpu").fit(tiles).save(tmp_path / "tiled.anomaly")
    al.Reconstruction(width=2, latent_dim=2, epochs=1, dropout=0.2, mc_samples=3, device="cpu").fit(
        train[:60]).save(tmp_path / "mc.anomaly")
    for name, message in [("tiled", "fitted on tiles"), ("mc", "mc_samples > 1")]:
        r = CliRunner().invoke(cli, ["export", str(tmp_path / f"{name}.anomaly"), "-o", str(tmp_path / "x.onnx")])
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = CliRunner().invoke(cli, ["export", str(tmp_path / "mc.anomaly"), "-o", str(tmp_path / "mc.anomaly")])
    assert r.exit_code == 2 and "would overwrite the input" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mc.anomaly", "tiled.anomaly"]


def test_unsupported_detectors_are_refused():
    """No extra needed: the refusal comes before any exporter runs."""
    for det in (al.SyntheticOOD(), al.Continuation(), al.SupervisedRNN()):  # refused by type, fitted or not
        with pytest.raises(al.AnomalyError, match=f"{type(det).__name__}: ONNX export covers LatentDistance"):
            onnx_graph(det)
    with pytest.raises(al.AnomalyError, match="not fitted"):
        onnx_graph(al.Reconstruction())


def test_missing_extra_is_one_clear_error(monkeypatch, tmp_path, blobs):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    det = al.LatentDistance(device="cpu").fit(blobs[0])
    with pytest.raises(al.AnomalyError, match=r"needs the export extra: pip install"):
        export_onnx(det, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@needs_extra
def test_a_texture_exports_its_patch_score(tmp_path):
    """The default image score on a texture keeps no pooled bank: the graph scores by the patches."""
    from anomalib_lite.data.sample_data import weave

    det = al.LatentDistance(memory_size=400, device="cpu").fit(weave(40, size=32, seed=0))
    assert det.memory_ is None and det.evidence_scale_ is None  # a texture
    test = weave(6, size=32, seed=3)
    (score, score_map), _ = _ort_run(export_onnx(det, tmp_path / "t.onnx"), test)
    _assert_close(score, det.decision_function(test))
    _assert_close(score_map, det.score_map(test), MAP_TOLERANCE)
