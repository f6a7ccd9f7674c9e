"""ONNX export: parity and speed of onnxruntime against the torch path.

A resnet18 (layer2+layer3, seeded random weights: speed and parity do not depend on the values)
``LatentDistance`` (knn, patch scores, default bank cap 10,000 rows in float16) and a resnet18
``Reconstruction`` (autoencoder on its feature maps, 2 epochs: only parity and speed matter) are
fitted on MNIST 7s resized to S px (S = 64 and 224; grey, the extractor repeats the channel),
exported with ``anomalib_lite.runtime.export.export_onnx``, and both paths score the same MNIST test
digits: max |onnx - torch| of the scores and maps (and the largest scaled difference
|d| / max(1, |torch|), whose bounds are export.TOLERANCE and MAP_TOLERANCE), and images/s of
``decision_function`` (torch) vs ``InferenceSession.run`` on the score output (onnxruntime), both
with ``--threads`` intra-op threads (default 1: the machine is shared), batches of 16, after a
warm-up batch, best of ``--repeats``. Appends a section to BENCHMARKS.md with the load average.

    python benchmarks/onnx_export.py                 # 64 and 224 px (several minutes)
    python benchmarks/onnx_export.py --quick         # 64 px, few images, prints only
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANOMALY_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))

import numpy as np
import torch
import torch.nn.functional as F
from record import append  # benchmarks/record.py: the shared BENCHMARKS.md writer

import anomalib_lite as al
from anomalib_lite.runtime.export import MAP_TOLERANCE, TOLERANCE, export_onnx


def digits(spec: str, n: int, size: int) -> np.ndarray:
    x = next(al.iter_batches(al.load_data(spec), n)).x[:n]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1).numpy()


def best_rate(fn, x: np.ndarray, batch: int, repeats: int) -> float:
    fn(x[:batch])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            fn(x[i : i + batch])
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,224")
    ap.add_argument("--fit", type=int, default=200, help="training 7s")
    ap.add_argument("--test", type=int, default=64, help="test digits scored (all classes)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.fit, args.test, args.repeats = "64", 40, 16, 1
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            train = digits("mnist:train?classes=7", args.fit + 40, size)
            test = digits("mnist:test", args.test, size)
            dets = {
                "LatentDistance (knn, patch)": al.LatentDistance(backbone="resnet18", weights="random", device="cpu",
                                                                 batch_size=16),
                "Reconstruction (resnet18 features)": al.Reconstruction(backbone="resnet18", weights="random", epochs=2,
                                                                        batch_size=16, num_workers=0, device="cpu"),
            }
            for name, det in dets.items():
                det.fit(train[: args.fit]).calibrate(train[args.fit :], fpr=0.05)
                path = Path(tmp) / "m.onnx"
                t = time.perf_counter()
                export_onnx(det, path)
                export_s = time.perf_counter() - t
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                score, smap = session.run(None, {"images": test})
                ref_s, ref_m = det.decision_function(test), det.score_map(test)
                d_s, d_m = np.abs(score - ref_s), np.abs(smap - ref_m)
                scaled_s, scaled_m = (d_s / np.maximum(1, np.abs(ref_s))).max(), (d_m / np.maximum(1, np.abs(ref_m))).max()
                torch_rate = best_rate(det.decision_function, test, 16, args.repeats)
                ort_rate = best_rate(lambda b: session.run(["score"], {"images": b}), test, 16, args.repeats)
                rows.append(f"| {name} | {size} | {d_s.max():.2e} | {scaled_s:.2e} | {d_m.max():.2e} | {scaled_m:.2e} | "
                            f"{torch_rate:.1f} | "
                            f"{ort_rate:.1f} | {ort_rate / torch_rate:.2f} | {path.stat().st_size / 1e6:.1f} | "
                            f"{export_s:.0f} |")
                print(rows[-1], flush=True)
    load_after = os.getloadavg()
    busy = max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1)
    body = (
        f"resnet18 (layer2+layer3, random weights) detectors fitted on {args.fit} MNIST 7s resized to S px, "
        f"{args.test} MNIST test digits (all classes) scored at S px by torch (`decision_function`, `score_map`) "
        f"and by onnxruntime {ort.__version__} on the exported graph; {args.threads} intra-op thread(s) each, "
        f"batches of 16, best of {args.repeats}. Scaled difference = max |onnx - torch| / max(1, |torch|) "
        f"(the stated bounds: {TOLERANCE:g} for scores, {MAP_TOLERANCE:g} for maps).\n"
        f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after on {os.cpu_count()} cores: "
        f"{'BUSY (shared with other workers): speeds are indicative' if busy else 'quiet'}.\n\n"
        "| detector | px | score: max abs diff | score: max scaled diff | map: max abs diff | map: max scaled diff | "
        "torch img/s | onnxruntime img/s | ratio | .onnx MB | export s |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
    )
    if args.quick:
        print(body)
    else:
        append("ONNX export: parity and onnxruntime vs torch speed", body)


if __name__ == "__main__":
    main()
