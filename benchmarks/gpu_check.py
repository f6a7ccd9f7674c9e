"""GPU paths, checked and timed against the CPU in one run (CUDA, autocast, channels_last).

For a machine with CUDA. Each check compares the GPU with the same machine's CPU:

* extraction: resnet18 (random weights, layer2+layer3) features under CUDA autocast (bf16) vs
  fp32 on the CPU (relative error), and images/s at 256 px, batch 64: CUDA autocast +
  channels_last (the default path), CUDA fp32, and the CPU;
* LatentDistance on an MVTec-style texture set (``--data``, from ``make_textures.py``): image
  ROC-AUC, pixel ROC-AUC and seconds, CUDA vs CPU; a bundle fitted on CUDA scores the same on
  the CPU;
* training with AMP: Reconstruction for a few epochs on CUDA (the loss falls, nothing is NaN);
  its bundle reloaded on the CPU scores the same;
* Continuation (an LSTM on a series): fit and score on CUDA vs CPU (scores agree in rank).

Writes ``gpu_check.md`` (markdown for BENCHMARKS.md) under ``--out``, or appends it to
BENCHMARKS.md when no ``--out`` is given.
Run:  python benchmarks/gpu_check.py --data TEXTURES_DIR [--out DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

import anomalib_lite as al  # noqa: E402
import backbones  # noqa: E402
from anomalib_lite.evaluation.assessment import assess  # noqa: E402

LINES: list[str] = []
GPU = "cuda"  # --gpu cpu: a dry run of the script on a machine without CUDA (figures meaningless)


def say(text: str) -> None:
    print(text, flush=True)
    LINES.append(text)


def timed(fn, repeat: int = 5) -> float:
    """Median seconds of ``fn()`` after one warm-up, synchronising CUDA."""
    fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def extraction() -> None:
    x = torch.rand(64, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    cpu = backbones.create("resnet18", weights="random", layers=["layer2", "layer3"], device="cpu")
    gpu = backbones.create("resnet18", weights="random", layers=["layer2", "layer3"], device=GPU)
    a, b = cpu.extract(x[:8]), gpu.extract(x[:8])
    for k in a:
        rel = float((a[k] - b[k].cpu()).norm() / a[k].norm())
        say(f"| extraction {k}: CUDA autocast vs CPU fp32, relative error | {rel:.4f} |")
    xg = x.to(GPU)
    t_auto = timed(lambda: gpu.extract(xg))
    gpu._autocast = contextlib.nullcontext  # the fp32 path, for comparison
    t_fp32 = timed(lambda: gpu.extract(xg))
    t_cpu = timed(lambda: cpu.extract(x), repeat=2)
    say(f"| extraction images/s, 256 px, batch 64: CUDA autocast + channels_last | {64 / t_auto:,.0f} |")
    say(f"| extraction images/s: CUDA fp32 + channels_last | {64 / t_fp32:,.0f} |")
    say(f"| extraction images/s: CPU ({torch.get_num_threads()} threads) | {64 / t_cpu:,.1f} |")


def latent(data: Path) -> None:
    for cat in sorted(p.name for p in data.iterdir() if p.is_dir()):
        train, test = al.load_data(str(data / cat / "train")), al.load_data(str(data / cat / "test"))
        res = {}
        for device in (GPU, "cpu"):
            t = time.perf_counter()
            det = al.LatentDistance(backbone="resnet18", weights="random", layers=["layer1", "layer2"],
                                    device=device, seed=0).fit(train)
            ev = assess(det, test)
            res[device] = (det, ev, time.perf_counter() - t)
            say(f"| LatentDistance {cat} on {device}: image / pixel ROC-AUC, fit + score s | "
                f"{100 * ev.figures['roc_auc']:.2f} / {100 * ev.figures['pixel_roc_auc']:.2f}, {res[device][2]:.1f} s |")
        with tempfile.TemporaryDirectory() as tmp:
            res[GPU][0].save(Path(tmp) / "m.anomaly")
            back = al.load(Path(tmp) / "m.anomaly", device="cpu")
            s_gpu, s_cpu = res[GPU][1].scores, back.decision_function(test)
            rank = float(np.corrcoef(np.argsort(np.argsort(s_gpu)), np.argsort(np.argsort(s_cpu)))[0, 1])
            say(f"| LatentDistance {cat}: bundle fitted on CUDA, scored on the CPU: max relative score difference, rank correlation | "
                f"{float(np.max(np.abs(s_gpu - s_cpu) / np.abs(s_cpu).clip(1e-9))):.4f}, {rank:.4f} |")


def reconstruction(data: Path) -> None:
    cat = sorted(p.name for p in data.iterdir() if p.is_dir())[0]
    train = al.load_data(str(data / cat / "train"))
    t = time.perf_counter()
    det = al.Reconstruction(epochs=8, batch_size=32, patience=None, device=GPU, seed=0, num_workers=0).fit(train)
    loss = det.history_.train_loss
    say(f"| Reconstruction {cat} on CUDA (AMP), 8 epochs: first / last loss, s | {loss[0]:.4f} / {loss[-1]:.4f}, "
        f"{time.perf_counter() - t:.1f} s |")
    ok = all(np.isfinite(loss)) and loss[-1] < loss[0]
    test = al.load_data(str(data / cat / "test"))
    s_gpu = det.decision_function(test)
    with tempfile.TemporaryDirectory() as tmp:
        det.save(Path(tmp) / "r.anomaly")
        s_cpu = al.load(Path(tmp) / "r.anomaly", device="cpu").decision_function(test)
    diff = float(np.max(np.abs(s_gpu - s_cpu) / np.abs(s_cpu).clip(1e-9)))
    say(f"| Reconstruction: loss falls and finite; bundle scored on CPU vs CUDA, max relative difference | {ok}; {diff:.4f} |")


def continuation() -> None:
    t = np.arange(6000)
    x = np.sin(2 * np.pi * t / 50) + 0.1 * np.random.default_rng(0).normal(size=len(t))
    x[5000:5010] += 3
    scores = {}
    for device in (GPU, "cpu"):
        t0 = time.perf_counter()
        det = al.Continuation(epochs=5, device=device, season=0).fit(x[:4000])
        scores[device] = det.decision_function(x)
        say(f"| Continuation on {device}: fit (5 epochs, 4,000 steps) + score 6,000 steps, s; spike rank | "
            f"{time.perf_counter() - t0:.1f} s; top step {int(np.nanargmax(scores[device]))} |")
    ok = np.isfinite(scores[GPU]) & np.isfinite(scores["cpu"])
    rank = float(np.corrcoef(np.argsort(np.argsort(scores[GPU][ok])), np.argsort(np.argsort(scores["cpu"][ok])))[0, 1])
    say(f"| Continuation: rank correlation of the CUDA and CPU scores (separately trained) | {rank:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="an MVTec-style set (make_textures.py)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--gpu", default="cuda", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global GPU
    GPU = args.gpu
    if GPU == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here")
    say(f"GPU: {torch.cuda.get_device_name(0) if GPU == 'cuda' else 'none (dry run)'}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"bf16 {GPU == 'cuda' and torch.cuda.is_bf16_supported()}, CPU threads {torch.get_num_threads()}.")
    say("")
    say("| check | result |")
    say("| --- | --- |")
    for name, fn in (("extraction", extraction), ("latent", lambda: latent(args.data)),
                     ("reconstruction", lambda: reconstruction(args.data)), ("continuation", continuation)):
        try:
            fn()
        except Exception as e:  # one failing check must not hide the others
            say(f"| {name} | FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} |")
    body = "\n".join(LINES)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.md").write_text(body + "\n")
    else:
        record.append("GPU paths against the CPU (gpu_check.py)", body)


if __name__ == "__main__":
    main()
