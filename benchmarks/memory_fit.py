"""Peak memory of LatentDistance.fit on all 60,000 MNIST training digits with a bounded bank.

The bank is bounded by memory_size (greedy coreset over a reservoir of 4x memory_size); the
data stream through in batches. Reports peak RSS against the size of the raw data as float32.
Run:  python benchmarks/memory_fit.py [--memory-size 10000] [--no-record]
"""
from __future__ import annotations

import resource
import time

import record
import torch

import anomalib_lite as al


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = record.parser()
    ap.add_argument("--memory-size", type=int, default=10000)
    ap.add_argument("--maps", action="store_true", help="also learn the patch bank")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train = al.load_data("mnist:train")
    before = peak_rss_mb()
    t = time.perf_counter()
    det = al.LatentDistance(image_score="pooled", memory_size=args.memory_size, maps=args.maps, device="cpu").fit(train)
    sec = time.perf_counter() - t
    after = peak_rss_mb()
    f32 = len(train) * 784 * 4 / 2**20
    body = (
        f"| samples | memory_size | maps | bank rows | fit (s) | peak RSS before fit (MB) | "
        f"peak RSS after fit (MB) | all data as float32 (MB) |\n|---|---|---|---|---|---|---|---|\n"
        f"| {det.n_seen_} | {args.memory_size} | {args.maps} | {len(det.memory_)} | {sec:.1f} | "
        f"{before:.0f} | {after:.0f} | {f32:.0f} |"
    )
    record.publish("Memory: LatentDistance.fit on 60,000 MNIST digits", body, args.no_record)


if __name__ == "__main__":
    main()
