"""Speed of augment: a six-op training pipeline on both backends, each training op alone on
the torchvision backend (with and without masks), and each synthesis op.

    python benchmarks/augment_speed.py            # full run, appends a section to BENCHMARKS.md
    python benchmarks/augment_speed.py --quick    # smoke run: small counts, prints only

Figures are images per second on this machine's CPU, best of ``--repeats`` passes (other
processes on a shared machine slow single passes down). The goal: one MNIST class (about 6,000
digits) through the training pipeline in under one second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import augment
from augment import synth

# six ops, typical for training on digits or textures
TRAINING = {
    "seed": 0,
    "steps": [
        {"op": "hflip", "p": 0.5},
        {"op": "affine", "rotate": 15, "translate": 0.1, "scale": [0.9, 1.1]},
        {"op": "crop_and_pad", "p": 0.5, "fraction": [-0.1, 0.1]},
        {"op": "brightness", "p": 0.8, "delta": 0.1},
        {"op": "contrast", "p": 0.8, "factor": [0.8, 1.2]},
        {"op": "gaussian_noise", "p": 0.5, "sigma": [0.0, 0.05]},
    ],
}
BATCH = 256


def mnist_class(digit: int = 3) -> np.ndarray | None:
    """The training digits of one class (uint8, N x 28 x 28) from the raw MNIST files, if present."""
    root = (
        Path(os.environ.get("ANOMALY_DATA_DIR", REPO.parent / "shared" / "datasets"))
        / "MNIST"
        / "raw"
    )
    try:
        images = np.frombuffer((root / "train-images-idx3-ubyte").read_bytes(), np.uint8, offset=16)
        labels = np.frombuffer((root / "train-labels-idx1-ubyte").read_bytes(), np.uint8, offset=8)
    except OSError:
        return None
    return images.reshape(-1, 28, 28)[labels == digit]


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: imports, caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def pipeline_pass(backend: str, images: np.ndarray):
    """A function that augments all images in batches of 256, as a training epoch would."""
    p = augment.Pipeline.from_config(TRAINING, backend=backend)
    if backend == "torchvision":
        data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float().div_(255)
    else:
        data = images[..., 0] if images.shape[-1] == 1 else images

    def run():
        for i in range(0, len(data), BATCH):
            p(data[i : i + BATCH], np.arange(i, min(i + BATCH, len(data))))

    return run


def training_rows(quick: bool, repeats: int) -> list[list[str]]:
    rng = np.random.default_rng(0)
    digits = mnist_class()
    source = "MNIST class 3" if digits is not None else "random"
    if digits is None:
        digits = rng.integers(0, 256, (6000, 28, 28), dtype=np.uint8)
    counts = {28: 512 if quick else len(digits), 224: 32 if quick else 2 * BATCH}
    sets = {
        28: digits[: counts[28], :, :, None],
        224: rng.integers(0, 256, (counts[224], 224, 224, 3), dtype=np.uint8),
    }
    rows = []
    default_threads = torch.get_num_threads()
    for size, images in sets.items():
        what = f"{len(images)} x {size}x{size}x{images.shape[-1]} ({source if size == 28 else 'random'})"
        runs = [("torchvision", default_threads), ("torchvision", 1), ("imgaug", 1)]
        for backend, threads in dict.fromkeys(runs):  # once each when torch has one thread
            torch.set_num_threads(threads)
            seconds = best_time(
                pipeline_pass(backend, images), 1 if backend == "imgaug" else repeats
            )
            torch.set_num_threads(default_threads)
            rows.append(
                [
                    what,
                    backend,
                    str(threads),
                    f"{len(images) / seconds:,.0f}",
                    f"{6000 * seconds / len(images):.2f}" if size == 28 else "",
                ]
            )
    return rows


def op_rows(quick: bool, repeats: int) -> list[list[str]]:
    """Each training op alone (its defaults, p = 1) on the torchvision backend, one torch thread:
    28x28x1 in batches of 256, and 224x224x3 in batches of 32; geometric ops also with masks."""
    rng = np.random.default_rng(2)
    sets = {
        28: torch.from_numpy(rng.random((512 if quick else 2048, 1, 28, 28), np.float32)),
        224: torch.from_numpy(rng.random((8 if quick else 64, 3, 224, 224), np.float32)),
    }
    batch = {28: BATCH, 224: 32}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    for op, spec in augment.OPS.items():
        row = [op]
        for size, images in sets.items():
            for with_masks in (False, True):
                if with_masks and not spec.geometric:
                    row.append("")
                    continue
                p = augment.Pipeline.from_config([op])
                masks = torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.bool)

                def run(p=p, images=images, masks=masks, with_masks=with_masks, b=batch[size]):
                    for i in range(0, len(images), b):
                        extra = {"masks": masks[i : i + b]} if with_masks else {}
                        p(images[i : i + b], np.arange(i, i + len(images[i : i + b])), **extra)

                try:
                    row.append(f"{len(images) / best_time(run, repeats):,.0f}")
                except TypeError:  # a version of augment without masks
                    row.append("n/a")
        rows.append(row)
    torch.set_num_threads(threads)
    return rows


def synth_rows(quick: bool, repeats: int) -> list[list[str]]:
    rng = np.random.default_rng(1)
    digits = mnist_class()
    small = (
        digits[:256] if digits is not None else rng.integers(0, 256, (256, 28, 28), dtype=np.uint8)
    )
    sets = {
        28: small[: 32 if quick else 256],
        224: rng.integers(0, 256, (8 if quick else 64, 224, 224, 3), dtype=np.uint8),
    }
    rows = []
    for op in synth.OPS:
        row = [op]
        for images in sets.values():
            seconds = best_time(
                functools.partial(getattr(synth, op), images, severity=0.5, seed=0), repeats
            )
            row.append(f"{len(images) / seconds:,.0f}")
        rows.append(row)
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def machine() -> str:
    model = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown CPU",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    from importlib.metadata import version

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{os.cpu_count()} CPUs (nproc), {model}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numpy {np.__version__}, imgaug {version('imgaug')}; load average at start {load}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="small counts, print only (no BENCHMARKS.md)"
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="passes per figure; the best is reported"
    )
    ap.add_argument(
        "--output", default=str(REPO / "BENCHMARKS.md"), help="markdown file to append to"
    )
    args = ap.parse_args()
    header = machine()
    train = table(
        ["images", "backend", "torch threads", "images/s", "s per 6,000 digits"],
        training_rows(args.quick, args.repeats),
    )
    each = table(
        ["op", "images/s at 28x28", "28x28 with masks", "images/s at 224x224x3", "224 with masks"],
        op_rows(args.quick, args.repeats),
    )
    syn = table(
        ["op", "images/s at 28x28 (MNIST digits, uint8)", "images/s at 224x224x3 (uint8)"],
        synth_rows(args.quick, args.repeats),
    )
    steps = ", ".join(s["op"] for s in TRAINING["steps"])
    section = (
        f"## augment speed ({dt.date.today().isoformat()})\n\n"
        f"Command: `python benchmarks/augment_speed.py{' --quick' if args.quick else ''}`  \n"
        f"Machine: {header}\n\n"
        f"Training pipeline ({steps}; batches of {BATCH}, best of {args.repeats}):\n\n{train}\n\n"
        f"Each training op alone (defaults, p = 1; torchvision backend, 1 torch thread, float32; "
        f"28x28 in batches of {BATCH}, 224x224x3 in batches of 32; best of {args.repeats}):\n\n{each}\n\n"
        f"Synthesis (severity 0.5, one call per set, best of {args.repeats}):\n\n{syn}\n"
    )
    print(section)
    if not args.quick:
        out = Path(args.output)
        new = not out.exists()
        with out.open("a") as f:
            f.write(("# Benchmarks\n\n" if new else "\n") + section)
        print(f"appended to {out}")


if __name__ == "__main__":
    main()
