"""Feature-extraction speed of `backbones` on this machine's CPU.

Measures resnet18 extraction (layers layer2+layer3, `FeatureExtractor.extract`) at 64 px
(batch 256) and 224 px (batch 32) in images/s, against plain torchvision loops run in the same
process (full resnet18, and resnet18 cut after layer3; eval, fp32, NCHW, torch.no_grad), and the
extractor's achieved GFLOP/s (FLOPs of the truncated network from FlopCounterMode) against a
2048x2048 fp32 torch.matmul measured in the same run. Warm-up, then interleaved repeats;
medians reported. Prints a markdown table and appends a dated section to BENCHMARKS.md.

    python benchmarks/extraction_speed.py            # full run (about two minutes), appends
    python benchmarks/extraction_speed.py --quick    # smoke run: small batches, prints only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch
import torchvision
from record import append  # benchmarks/record.py: the shared BENCHMARKS.md writer
from torch.utils.flop_counter import FlopCounterMode

import backbones


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (from /proc/stat), or None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def matmul_gflops(repeats: int, n: int = 2048) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def truncated_flops(fx: backbones.FeatureExtractor, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fx(x)
    return counter.get_total_flops()


def time_interleaved(fns: dict, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches, few repeats, no file")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warmup, repeats = (1, 2) if args.quick else (2, 7)
    cases = [(64, 16), (224, 2)] if args.quick else [(64, 256), (224, 32)]

    busy0, own0, wall0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    peak = matmul_gflops(5 if args.quick else 20)
    fx = backbones.create("resnet18", weights="random", layers=["layer2", "layer3"], device="cpu")
    full = torchvision.models.resnet18(weights=None).eval()
    to_layer3 = torch.nn.Sequential(*list(full.children())[:7]).eval()  # conv1..layer3

    def plain(model, x):
        def run():
            with torch.no_grad():
                model(x)

        return run

    rows = []
    for size, batch in cases:
        x = torch.rand(batch, 3, size, size)
        secs = time_interleaved(
            {
                "backbones extract (layer2+3, channels_last)": lambda x=x: fx.extract(x),
                "torchvision resnet18 up to layer3 (NCHW, no_grad)": plain(to_layer3, x),
                "torchvision resnet18 full (NCHW, no_grad)": plain(full, x),
            },
            warmup,
            repeats,
        )
        flops = truncated_flops(fx, x)
        for name, sec in secs.items():
            gflops = flops / sec / 1e9 if name.startswith("backbones") else None
            rows.append((name, size, batch, batch / sec, gflops))

    busy1, own1, wall1 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    if busy0 is None or busy1 is None:
        others = "unknown"
    else:  # CPU used by other processes while this ran: contention makes every figure lower
        others = f"{max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0):.2f} cores"
    lines = [
        (
            f"matmul 2048x2048 fp32: {peak:.1f} GFLOP/s; "
            f"other processes used {others} on average during the run"
        ),
        "",
        "| case | px | batch | images/s (median) | GFLOP/s | % of matmul |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, size, batch, ips, gflops in rows:
        g = f"{gflops:.1f}" if gflops else "-"
        pct = f"{100 * gflops / peak:.0f} %" if gflops else "-"
        lines.append(f"| {name} | {size} | {batch} | {ips:.1f} | {g} | {pct} |")
    table = "\n".join(lines)
    print(table)
    if args.quick:
        return

    append(
        "Feature extraction speed (backbones)",
        f"resnet18, random init (speed does not depend on the weights), torchvision "
        f"{torchvision.__version__}. GFLOP/s counts the convolutions and matmuls of the "
        f"truncated network (torch FlopCounterMode); {warmup} warm-up + {repeats} interleaved "
        f"repeats, median.\n\n{table}",
    )


if __name__ == "__main__":
    main()
