"""Start-up of the `anomaly` command: how long each answer takes against a bare `import torch`.

Each command runs as a user runs it (the installed `anomaly` script, a fresh process), ``--repeat``
times, interleaved with ``python -c "import torch"`` so that both see the same machine; the table
gives medians and the ratio to importing torch. Commands: ``--help``, every ``CMD --help``, usage
errors (a missing option, a bad choice), ``info`` on a bundle, and ``score`` of one image with a
raw-pixel bundle and with a resnet18 bundle (these two do work: they import torch). ``--busy``
measures again beside a process that keeps one core busy.

Run:  python benchmarks/cli_startup.py [--repeat 5] [--busy] [--no-record]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

ANOMALY = shutil.which("anomaly", path=str(Path(sys.executable).parent)) or "anomaly"


def commands(tmp: Path) -> list[tuple[str, list[str]]]:
    raw, r18, png = str(tmp / "raw.anomaly"), str(tmp / "r18.anomaly"), str(tmp / "part.png")
    out = [("anomaly --help", ["--help"])]
    out += [(f"anomaly fit {d} --help", ["fit", d, "--help"]) for d in ("latent", "reconstruction", "continuation")]
    out += [(f"anomaly {c} --help", [c, "--help"]) for c in ("score", "evaluate", "pretrain", "info", "demo")]
    out += [("error: fit latent without -o", ["fit", "latent", "--data", "x"]),
            ("error: bad --method choice", ["fit", "latent", "--data", "x", "-o", "m.anomaly", "--method", "nope"]),
            ("error: score without --data", ["score", raw]),
            ("anomaly info (raw-pixel bundle)", ["info", raw]),
            ("anomaly info (resnet18 bundle)", ["info", r18]),
            ("score one image (raw-pixel bundle)", ["score", raw, "--data", png]),
            ("score one image (resnet18 bundle)", ["score", r18, "--data", png])]
    return out


def make_bundles(tmp: Path) -> None:
    import anomalib_lite as al
    from PIL import Image

    rng = np.random.default_rng(0)
    x = rng.random((60, 3, 64, 64), dtype=np.float32)
    al.LatentDistance(device="cpu").fit(x[:50]).calibrate(x[50:], fpr=0.1).save(tmp / "raw.anomaly")
    al.LatentDistance(backbone="resnet18", weights="random", layers=["layer1", "layer2"], device="cpu").fit(
        x[:50]).calibrate(x[50:], fpr=0.1).save(tmp / "r18.anomaly")
    Image.fromarray((x[0].transpose(1, 2, 0) * 255).astype(np.uint8)).save(tmp / "part.png")


def timed(argv: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def measure(tmp: Path, repeat: int) -> tuple[list[tuple[str, float, float]], float]:
    torch_argv = [sys.executable, "-c", "import torch"]
    cmds = commands(tmp)
    times: dict[str, list[float]] = {name: [] for name, _ in cmds}
    torch_times = []
    for _ in range(repeat):
        for name, args in cmds:
            torch_times.append(timed(torch_argv, tmp))
            times[name].append(timed([ANOMALY, *args], tmp))
    base = float(np.median(torch_times))
    return [(name, float(np.median(t)), float(np.median(t)) / base) for name, t in times.items()], base


def table(rows, base: float, load: tuple[float, float]) -> str:
    lines = [f"bare `python -c \"import torch\"`: median {base:.2f} s; load average {load[0]:.1f} before, "
             f"{load[1]:.1f} after", "", "| command | median s | x import torch |", "|---|---|---|"]
    lines += [f"| {name} | {s:.2f} | {r:.2f} |" for name, s, r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = record.parser(busy="also measure beside a process burning one core")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        make_bundles(tmp)
        parts = []
        before = os.getloadavg()[0]
        rows, base = measure(tmp, args.repeat)
        parts.append("Quietest run:\n\n" + table(rows, base, (before, os.getloadavg()[0])))
        if args.busy:
            with record.busy_core():
                before = os.getloadavg()[0]
                rows, base = measure(tmp, args.repeat)
                parts.append("Beside a process burning one core:\n\n" + table(rows, base, (before, os.getloadavg()[0])))
    body = (f"Each command as a user runs it (a fresh `anomaly` process), {args.repeat} times interleaved with a bare "
            "`import torch`; medians. Help and usage errors import neither torch nor torchvision; `info` reads the "
            "header with the standard library; scoring imports what the bundle needs (torchvision only for a "
            "backbone).\n\n" + "\n\n".join(parts))
    record.publish("CLI start-up: every answer against `import torch`", body, args.no_record)


if __name__ == "__main__":
    main()
