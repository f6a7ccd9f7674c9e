"""Every command of the README runs as written, in order, on data that one of them makes.

The shell lines of the README's code blocks (``python`` blocks are Python, not commands) are run
in an empty folder, exactly as printed: ``anomaly demo --make-data data`` writes the inspection
set and the series the later commands use. Only lines that install (``pip``), run this suite
(``pytest``) or set a production machine's environment (``export``) are left out. An ``anomaly``
command runs in this process through the command's own entry point (its arguments split as the
shell splits them; ``cat FILE | anomaly ...`` reads FILE on stdin): that saves a start-up per
command; other pipes, ``torchrun`` and ``python`` lines run in bash. Small data comes through the documented environment, not by editing the commands:
``$ANOMALY_DATA_DIR`` points at a copy of MNIST cut to its first digits (and at NAB) and
``$ANOMALY_MAX_EPOCHS=1`` caps training; a ``torchrun`` line gets a free rendezvous port
(``$PET_MASTER_PORT``, torchrun's environment for ``--master-port``). A command's failure names the command and shows its
output. Add a command to the README and it is tested here; nothing to change in this file.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = ("pip ", "pytest", "export ")
N_TRAIN, N_TEST = 1200, 400  # MNIST digits kept: about 120 per digit to fit on, 40 to score


def readme_commands(text: str) -> list[str]:
    """The shell commands of ``text``'s fenced code blocks, in order: continuation lines joined,
    trailing ``# comments`` removed, ``a && b`` split, installing/testing/environment lines left out."""
    out, block, lang, pending = [], False, "", ""
    for line in text.splitlines():
        fence = line.strip()
        if fence.startswith("```"):
            block, lang = (not block), fence[3:].strip()
            continue
        if not block or lang:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        line = re.sub(r"\s+#\s.*$", "", line).strip()  # no README command has a '#' inside quotes
        out += [part.strip() for part in line.split(" && ") if part.strip() and not part.strip().startswith(SKIP)]
    return out


def _idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    dims = raw[3]
    shape = struct.unpack(f">{dims}I", raw[4 : 4 + 4 * dims])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def _write_idx(path: Path, a: np.ndarray) -> None:
    path.write_bytes(struct.pack(">BBBB", 0, 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())


def small_datasets(real: Path, to: Path) -> Path:
    """MNIST's raw files cut to the first digits, and NAB linked: what $ANOMALY_DATA_DIR holds."""
    raw, out = real / "MNIST" / "raw", to / "MNIST" / "raw"
    out.mkdir(parents=True)
    for name, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        for kind in ("images-idx3", "labels-idx1"):
            _write_idx(out / f"{name}-{kind}-ubyte", _idx(raw / f"{name}-{kind}-ubyte")[:n])
    (to / "NAB").symlink_to(real / "NAB")
    return to


def run(cmd: str, cwd: Path, env: dict) -> tuple[int, str]:
    """Exit code and output of one README command."""
    from click.testing import CliRunner

    from cli import cli

    stdin = None
    piped = re.fullmatch(r"cat (\S+) \| (anomaly .*)", cmd)  # a file piped in: the command reads it on stdin
    if piped:
        stdin, cmd = (cwd / piped[1]).read_text(), piped[2]
    argv = shlex.split(cmd)
    unquoted_glob = re.search(r"(^|\s)[^\"'\s]*[*?[]", cmd)
    if argv[0] == "anomaly" and not re.search(r"[|<>;`$]", cmd) and not unquoted_glob:
        r = CliRunner().invoke(cli, argv[1:], input=stdin, prog_name="anomaly", catch_exceptions=False)
        return r.exit_code, r.output
    env = {**env, "PET_MASTER_PORT": str(_free_port())}  # torchrun's --master-port: never a 29500 still held
    r = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=600)
    return r.returncode, r.stdout[-2000:] + r.stderr[-3000:]


def _free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_the_readme_commands_run_as_written(tmp_path, monkeypatch):
    real = Path(os.environ["ANOMALY_DATA_DIR"])
    if not (real / "MNIST" / "raw").is_dir() or not (real / "NAB").is_dir():
        pytest.skip("needs MNIST's raw files and NAB under $ANOMALY_DATA_DIR")
    commands = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert commands[0] == "anomaly demo" and any(c.startswith("anomaly demo --make-data") for c in commands)
    assert len(commands) >= 25 and not [c for c in commands if c.startswith(SKIP)]
    work = tmp_path / "work"  # a clean folder standing for the checkout: the README's paths are relative to it
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(work)
    monkeypatch.setenv("ANOMALY_DATA_DIR", str(small_datasets(real, tmp_path / "datasets")))
    monkeypatch.setenv("ANOMALY_MAX_EPOCHS", "1")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    if shutil.which("torchrun", path=env["PATH"]) is None:
        pytest.skip("torchrun not found")
    for cmd in commands:
        t = time.perf_counter()
        code, output = run(cmd, work, env)
        print(f"{time.perf_counter() - t:6.1f} s  {cmd}", flush=True)
        assert code == 0, f"README command failed: {cmd}\n{output}"
    # what the commands made: a few checks that they did their work
    assert (work / "data" / "brick" / "ground_truth").is_dir() and (work / "brick.html").stat().st_size > 50_000
    assert len(list((work / "lot-maps").rglob("*.png"))) == 20
    assert (work / "scores.csv").exists() and (work / "onnx-scores.csv").exists() and (work / "warn.anomaly").exists()
