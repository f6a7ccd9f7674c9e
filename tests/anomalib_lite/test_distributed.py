"""Many processes (torchrun, gloo on CPU): 2 processes give the answers of 1, a failing or hung
process stops the others with one clear line. Processes are real (torchrun, or a group made by
hand from the environment torchrun would set), each under a time limit, so a hang fails the test."""
from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import anomalib_lite as al
from anomalib_lite import distributed
from cli import cli

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_dist_worker.py")
LIMIT = 240  # seconds any multi-process run may take here before it counts as a hang

pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed"),
    pytest.mark.usefixtures("mnist_dir"),  # real digits (their absence is a broken setup)
]


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "ANOMALY_DIST_TIMEOUT": "60", "CUDA_VISIBLE_DEVICES": ""}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _free_port() -> int:
    with socket.socket() as s:  # bind only (tests may not connect out): the OS picks a free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group(args: list[str], world: int = 2, cwd=None, **env) -> list[tuple[int, str, str]]:
    """Run ``python ARGS`` as ranks 0..world-1 of a hand-made group; (code, stdout, stderr) each."""
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, *args], cwd=cwd, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              env=_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=r, LOCAL_RANK=r,
                                       WORLD_SIZE=world, **env))
             for r in range(world)]
    deadline, out = time.monotonic() + LIMIT, []
    try:
        for p in procs:
            o, e = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, o, e))
    except subprocess.TimeoutExpired:
        pytest.fail(f"a process of {args} hung for more than {LIMIT} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def _torchrun(args: list[str], cwd) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 --no-python anomaly ARGS`` (the documented form)."""
    anomaly = shutil.which("anomaly")
    cmd = ["--no-python", anomaly] if anomaly else [str(REPO / "cli.py")]
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             *cmd, *args], cwd=cwd, env=_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the agent and its workers
        proc.communicate()
        pytest.fail(f"torchrun {args[:2]} hung for more than {LIMIT} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_two_processes_fit_and_score_like_one(tmp_path):
    """torchrun fit latent + score: the bundle says world_size 2, and the scores CSV has the
    single-process layout, rows in input order, scores equal (full bank: every digit kept)."""
    fit = ["fit", "latent", "--data", "mnist:train?classes=7&limit=300", "--image-score", "pooled", "--no-maps",
           "--device", "cpu"]
    score = ["--data", "mnist:test?limit=300", "--device", "cpu"]
    two = _torchrun([*fit, "-o", "two.anomaly"], tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    # 30 held out cannot certify fpr 0.01: fit cross-fits on all 300; rank 0 alone speaks
    assert two.stdout.count("fitted LatentDistance on 300 samples") == 1
    assert "wrote two.anomaly" in two.stdout
    two = _torchrun(["score", "two.anomaly", *score, "-o", "two.csv"], tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.anomaly", "two.csv"]  # nothing half-written
    runner = CliRunner()
    for args in ([*fit, "-o", str(tmp_path / "one.anomaly")],
                 ["score", str(tmp_path / "one.anomaly"), *score, "-o", str(tmp_path / "one.csv")]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, res.output
    info = runner.invoke(cli, ["info", str(tmp_path / "two.anomaly")]).output
    assert "world_size: 2" in info
    assert "world_size: 1" in runner.invoke(cli, ["info", str(tmp_path / "one.anomaly")]).output
    one, two = _rows(tmp_path / "one.csv"), _rows(tmp_path / "two.csv")
    assert list(one[0]) == list(two[0]) and len(one) == len(two) == 300
    assert [r["index"] for r in two] == [str(i) for i in range(300)]
    assert [(r["label"], r["is_anomaly"]) for r in one] == [(r["label"], r["is_anomaly"]) for r in two]
    np.testing.assert_allclose([float(r["score"]) for r in two], [float(r["score"]) for r in one], rtol=1e-5)


def test_cli_two_processes_default_fit_equals_one(tmp_path):
    """torchrun fit latent with the defaults (patch scores, coreset_ratio 0.1): the bundle of
    two processes scores like the bundle of one (rtol 1e-5)."""
    fit = ["fit", "latent", "--data", "mnist:train?classes=7&limit=200", "--device", "cpu"]
    two = _torchrun([*fit, "-o", "two.anomaly"], tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    res = CliRunner().invoke(cli, [*fit, "-o", str(tmp_path / "one.anomaly")])
    assert res.exit_code == 0, res.output
    test = al.load_data("mnist:test?limit=100")
    a, b = (al.load(tmp_path / f"{n}.anomaly").decision_function(test) for n in ("one", "two"))
    np.testing.assert_allclose(b, a, rtol=1e-5)
    assert al.read_header(tmp_path / "two.anomaly")["world_size"] == 2


def _worker():
    spec = importlib.util.spec_from_file_location("_dist_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def api_runs(tmp_path_factory):
    """The Python API inside a 2-process group (LatentDistance three ways, and DDP training),
    rank 0's results; and the same in this one process."""
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    results = _group([str(WORKER), "api", str(two)])
    for code, _, err in results:
        assert code == 0, err[-2000:]
    assert sorted(p.name for p in two.iterdir()) == sorted(
        ["ddp.pt", *(f"{n}.{e}" for n in ("pooled", "patch_full", "patch_coreset", "texture") for e in ("anomaly", "npy"))])
    with torch.random.fork_rng():
        worker = _worker()
        worker.latent(one)
        worker.ddp(one)
    return one, two


def test_api_two_processes_score_like_one(api_runs):
    """Full banks (pooled, and patches with coreset_ratio=1) and the default coreset: the same
    scores as one process (rtol 1e-5). The coreset's candidates are keyed by each patch's global
    id (sample, tile, position), so the pool does not depend on how the data is sharded, and one
    greedy reduction runs on it. A texture's position share is summed over the processes, and
    the images each held out join its banks under their global ids."""
    one, two = api_runs
    for name in ("pooled", "patch_full", "patch_coreset", "texture"):
        np.testing.assert_allclose(np.load(two / f"{name}.npy"), np.load(one / f"{name}.npy"), rtol=1e-5, atol=1e-6)
        det = al.load(two / f"{name}.anomaly")
        assert al.read_header(two / f"{name}.anomaly")["world_size"] == 2 and det.world_size_ == 2
        assert det.summary() == al.load(one / f"{name}.anomaly").summary()
    labels = al.load_data("mnist:test?limit=120").anomaly_labels(["7"])
    assert al.metrics.roc_auc(labels, np.load(two / "patch_coreset.npy")) > 0.8  # and it is a working bank
    texture = al.load(two / "texture.anomaly")
    assert texture.evidence_scale_ is None and texture.position_share_ < 0.05 and "a texture" in texture.summary()


def test_ddp_training_matches_one_process(api_runs):
    """DDP through training.fit_model: each process takes its rows of every batch, weighted by
    its share, so 2 processes take the steps of 1: weights within 1e-5, losses within rtol 1e-5
    (float summation order only; 203 samples, so batches split unevenly)."""
    one, two = api_runs
    a, b = torch.load(one / "ddp.pt", weights_only=True), torch.load(two / "ddp.pt", weights_only=True)
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=1e-5)
    assert a["train_loss"][-1] < 0.8 * a["train_loss"][0]  # it did learn
    for k, t in a["state"].items():
        torch.testing.assert_close(b["state"][k], t, atol=1e-5, rtol=0)


def test_failing_process_stops_the_other(tmp_path):
    """Bad data in one process's share: it exits 2 with its one-line error; the other does not
    wait for it, it exits 1 with one line naming the failed step; no bundle is written."""
    x = np.random.default_rng(0).random((40, 28, 28)).astype(np.float32)
    x[5] = np.nan
    np.save(tmp_path / "bad.npy", x)
    start = time.monotonic()
    results = _group([str(REPO / "cli.py"), "fit", "latent", "--data", "bad.npy", "--image-score", "pooled",
                      "--no-maps", "--device", "cpu", "-o", "m.anomaly"], cwd=tmp_path)
    assert time.monotonic() - start < 60 + LIMIT / 4  # not the timeout path: the peer's exit is seen
    codes = sorted(r[0] for r in results)
    assert codes == [1, 2], results
    err = {code: [line for line in e.splitlines() if line.startswith("anomaly:")] for code, _, e in results}
    assert len(err[2]) == 1 and "contains NaN" in err[2][0] and err[2][0].startswith("anomaly: rank ")
    assert len(err[1]) == 1 and "distributed: rank" in err[1][0] and "another process failed" in err[1][0]
    assert all("Traceback" not in e for _, _, e in results)
    assert not (tmp_path / "m.anomaly").exists()


def test_hung_process_times_out(tmp_path):
    """A process that never joins a collective: the other gives up after ANOMALY_DIST_TIMEOUT
    with one line that says so."""
    results = _group([str(WORKER), "hang", str(tmp_path)], ANOMALY_DIST_TIMEOUT=3)
    assert results[0][0] == 1
    waited, message = (tmp_path / "hang.txt").read_text().split("\n", 1)
    assert 2.5 <= float(waited) < 30
    assert message.startswith("distributed: rank 0 of 2: summing counts failed: no answer") and "3 s" in message


def test_single_process_helpers():
    """Outside a group: rank 0 of 1, no shard, gathering is the identity; a bad timeout is one line."""
    assert (distributed.rank(), distributed.world(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard(10) is None
    t = torch.arange(4.0)
    assert distributed.gather_rows(t, torch.arange(4)) is t
    os.environ["ANOMALY_DIST_TIMEOUT"] = "soon"
    try:
        with pytest.raises(al.AnomalyError, match="ANOMALY_DIST_TIMEOUT='soon'"):
            distributed.timeout()
    finally:
        del os.environ["ANOMALY_DIST_TIMEOUT"]


def test_shard_reads_every_sample_once():
    """iter_batches(shard=): the shares of all ranks are a partition, global indices kept, for
    random-access arrays and for iterables read whole."""
    x = np.arange(11 * 4, dtype=np.float32).reshape(11, 4)
    for data in (x, [x[:5], x[5:]]):
        seen = []
        for r in range(3):
            for b in al.iter_batches(data, 4, shard=(r, 3)):
                assert (b.index % 3 == r).all()
                np.testing.assert_array_equal(b.x.numpy(), x[b.index.numpy()])
                seen += b.index.tolist()
        assert sorted(seen) == list(range(11))


def test_leaving_the_group_waits_for_every_rank_only_after_a_success(tmp_path, monkeypatch):
    import torch.distributed as dist

    from anomalib_lite import distributed

    waited = []
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: waited.append(True))
    for i, succeeded in enumerate((True, False)):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / f'store{i}'}", rank=0, world_size=1)
        monkeypatch.setattr(distributed, "_owned", True)  # as init_from_env leaves it
        distributed.shutdown(synchronise=succeeded)
        assert not dist.is_initialized()
    assert waited == [True]  # the failed command did not wait
