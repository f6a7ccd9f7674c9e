"""Suite-wide guards: no test reaches the network; real data comes from $ANOMALY_DATA_DIR."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ANOMALY_DATA_DIR", str(REPO.parent / "shared" / "datasets"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


class NetworkBlocked(RuntimeError):
    pass


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _refuse(*args, **kwargs):
    raise NetworkBlocked("tests must not touch the network")


def _local_only(real):
    """Unix-domain sockets stay usable (DataLoader workers need them); IP connections fail."""

    def connect(sock, address):
        if sock.family == getattr(socket, "AF_UNIX", None):
            return real(sock, address)
        _refuse()

    return connect


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any attempt to open a network connection fails loudly (also downloads via urllib)."""
    monkeypatch.setattr(socket.socket, "connect", _local_only(_real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _local_only(_real_connect_ex))
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)


@pytest.fixture(autouse=True)
def _isolated_torch_home(tmp_path_factory, monkeypatch):
    """Weights caches live in a temporary TORCH_HOME unless a test sets its own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))


def mnist_available() -> bool:
    raw = Path(os.environ["ANOMALY_DATA_DIR"]) / "MNIST" / "raw"
    return (raw / "train-images-idx3-ubyte").exists()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST files; their absence is a broken setup, not a reason to skip."""
    root = Path(os.environ["ANOMALY_DATA_DIR"])
    assert mnist_available(), f"MNIST not found under {root}; set ANOMALY_DATA_DIR"
    return root


@pytest.fixture(scope="session")
def digit7(tmp_path_factory, mnist_dir) -> Path:
    """The command-line tests' model: `anomaly fit latent` on 1,500 training 7s, pooled score."""
    from click.testing import CliRunner

    from cli import cli

    out = tmp_path_factory.mktemp("fit") / "digit7.anomaly"
    r = CliRunner().invoke(cli, ["fit", "latent", "--data", "mnist:train?classes=7&limit=1500", "--image-score",
                                 "pooled", "-o", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def blobs():
    """Normal points from one Gaussian cluster in 16-D, and planted outliers far from it."""
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, (400, 16)).astype(np.float32)
    test_normal = rng.normal(0, 1, (100, 16)).astype(np.float32)
    outliers = rng.normal(0, 1, (20, 16)).astype(np.float32) + 6.0
    return normal, test_normal, outliers


def _make_shapes(rng, n, defect):
    """Tiny 1x16x16 images: normal = a bright square near the centre; anomaly = square + a spot."""
    x = rng.uniform(0, 0.05, (n, 1, 16, 16)).astype(np.float32)
    for i in range(n):
        r, c = rng.integers(5, 7, 2)
        x[i, 0, r : r + 5, c : c + 5] = 0.9
        if defect:
            rr, cc = rng.integers(0, 3, 2) + np.array([0, 12])
            x[i, 0, rr : rr + 3, cc : cc + 3] = 1.0
    return x


@pytest.fixture(scope="session")
def make_shapes():
    """``make_shapes(rng, n, defect)``: the shapes images from a generator of the caller's."""
    return _make_shapes


@pytest.fixture
def shapes_images():
    """``shapes_images(n, defect)``: shapes images from one generator per test (seed 1)."""
    rng = np.random.default_rng(1)
    return lambda n, defect: _make_shapes(rng, n, defect)


@pytest.fixture(scope="module")
def one_thread():
    """Small networks and small work: one torch thread is many times faster than two on a busy
    2-core machine (a module asks with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_threads(monkeypatch):
    """The caller runs with 2 intra-op threads and no ``OMP_NUM_THREADS`` (both restored after
    the test): what the thread rules start from on a 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)
