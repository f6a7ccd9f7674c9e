"""Peak memory of fitting each image detector on N images of 224x224x3 read from a folder.

Writes 10,000 JPEG textures (smooth colour noise at several scales, seeded by index) into a temp
folder once and reuses them (``--dir``; never committed); N images are ``folder?limit=N``. Each
(detector, N) fit runs in a fresh subprocess through the Python API with light settings (1 epoch,
small models, backbones at ``--image-size``): it measures memory, not quality. Reported per run:
the fitting process's peak RSS (``ru_maxrss``), the peak of the whole process tree's PSS (the
fitting process and its DataLoader workers, sampled from /proc every 0.2 s; PSS splits the pages
that forked workers share instead of counting them in each), RSS after imports, wall time, and the
load average before and after (the machine may be shared). Item 3 of issue 10: flat in N, < 3 GB.

Run:  python benchmarks/fit_memory.py [--n 1000 5000 10000] [--detectors reconstruction synthetic
      pretrain latent] [--dir /tmp/anomalib_lite_fit_memory] [--no-record]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SIDE = 224
DETECTORS = ("reconstruction", "synthetic", "pretrain", "latent")


# ---------------------------------------------------------------- the images
def texture(i: int) -> np.ndarray:
    """A 224x224x3 uint8 texture: colour noise at scales 4..64 px, upsampled bicubically."""
    from PIL import Image

    rng = np.random.default_rng(i)
    out = np.zeros((SIDE, SIDE, 3))
    for cells, weight in ((4, 0.4), (14, 0.3), (56, 0.2), (SIDE, 0.1)):
        small = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8))
        out += weight * np.asarray(small.resize((SIDE, SIDE), Image.BICUBIC), dtype=np.float64)
    return out.clip(0, 255).astype(np.uint8)


def make_images(folder: Path, n: int) -> None:
    """Write images 0..n-1 that are not there yet (JPEG, quality 90)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"{i:05d}.jpg"
        if not path.exists():
            tmp = path.with_suffix(".tmp.jpg")
            Image.fromarray(texture(i)).save(tmp, quality=90)
            tmp.rename(path)


# ---------------------------------------------------------------- one fit (child process)
def fit_once(detector: str, spec: str, image_size: int, batch_size: int, workers: int) -> dict:
    import torch

    import anomalib_lite as al
    from anomalib_lite.training.pretrain import pretrain

    torch.set_num_threads(max(1, torch.get_num_threads()))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = al.load_data(spec)
    train = dict(epochs=1, batch_size=batch_size, num_workers=workers, device="cpu", seed=0)
    t = time.perf_counter()
    if detector == "reconstruction":
        al.Reconstruction(latent_dim=16, width=8, **train).fit(data)
    elif detector == "synthetic":
        al.SyntheticOOD(backbone="resnet18", weights="random", image_size=image_size,
                        synth_ops=["cutpaste", "scar"], **train).fit(data)
    elif detector == "pretrain":
        pretrain("resnet18", data, task="transforms", transforms="rot4", image_size=image_size, **train)
    else:
        al.LatentDistance(backbone="resnet18", weights="random", image_size=image_size, maps=True,
                          batch_size=batch_size, device="cpu").fit(data)
    sec = time.perf_counter() - t
    return {
        "n": len(data), "seconds": sec, "rss_before_mb": before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ---------------------------------------------------------------- measuring (parent)
def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return out


def _pss_mb(pid: int) -> float:
    total = 0.0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
                    break
        except OSError:
            pass
    return total


def run(detector: str, spec: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", detector, spec, "--image-size", str(args.image_size),
           "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    load0 = os.getloadavg()[0]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _pss_mb(proc.pid))
            done.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode:
        raise SystemExit(f"{detector} on {spec} failed (exit {proc.returncode})")
    res = json.loads(out.strip().splitlines()[-1])
    return {**res, "tree_pss_mb": peak[0], "load": (load0, os.getloadavg()[0])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "anomalib_lite_fit_memory"))
    ap.add_argument("--image-size", type=int, default=64, help="backbone input size (images stay 224 px)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", nargs=2, metavar=("DETECTOR", "SPEC"), help=argparse.SUPPRESS)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(fit_once(*args.child, args.image_size, args.batch_size, args.workers)), flush=True)
        return
    folder = Path(args.dir)
    t = time.perf_counter()
    make_images(folder, max(args.n))
    print(f"{max(args.n)} images in {folder} ready in {time.perf_counter() - t:.0f} s", flush=True)
    rows = []
    for det in args.detectors:
        for n in sorted(args.n):
            r = run(det, f"{folder}?limit={n}", args)
            row = (f"| {det} | {r['n']} | {r['seconds']:.0f} | {r['peak_rss_mb']:.0f} | {r['tree_pss_mb']:.0f} | "
                   f"{r['rss_before_mb']:.0f} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
            print(row, flush=True)
            rows.append(row)
    body = (
        f"224x224x3 JPEG textures read from a folder (`?limit=N`); 1 epoch, batch {args.batch_size}, "
        f"{args.workers} DataLoader workers, backbones (resnet18, random weights) at {args.image_size} px; "
        "reconstruction: latent 16, width 8 on pixels; synthetic: cutpaste + scar; pretrain: rot4; "
        "latent: kNN with maps. Each fit in a fresh process.\n\n"
        "| detector | N | fit (s) | peak RSS, fitting process (MB) | peak PSS, with workers (MB) | "
        "RSS after imports (MB) | load avg 1 min before / after |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    if args.no_record:
        print(body)
    else:
        import record

        record.append("Memory: fitting image detectors on N images of 224x224x3 from a folder", body)


if __name__ == "__main__":
    main()
