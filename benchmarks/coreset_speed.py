"""Greedy coreset speed and coverage: 10^5 and 10^6 patch features of width 384 (issue 10).

``greedy_coreset`` projects rows to 128 dimensions and picks ``s`` rows per pass (exact greedy
among the ``4 s`` farthest candidates). Reported per size: seconds, and coverage, the largest
distance from any row to its nearest chosen row (in the original space, on a 20,000-row sample;
lower is better), against exact one-at-a-time greedy (small sizes only) and a random subset of
the same size. Features are clustered Gaussian data (a few hundred clusters of varied size and
spread), so a random subset misses the rare ones, as it would miss rare normal patches.

Run:  python benchmarks/coreset_speed.py                  (10^5 and 10^6 rows, 1 % and 10 %)
      python benchmarks/coreset_speed.py --sizes 100000 --ratios 0.1
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from anomalib_lite.components.memory import KnnIndex, greedy_coreset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402


def features(n: int, d: int = 384, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = 300
    centres = torch.randn(k, d, generator=g) * 4
    weights = torch.rand(k, generator=g) ** 4 + 1e-3  # many rare clusters
    which = torch.multinomial(weights / weights.sum(), n, replacement=True, generator=g)
    spread = 0.3 + torch.rand(k, generator=g)
    return centres[which] + torch.randn(n, d, generator=g) * spread[which, None]


def coverage(x: torch.Tensor, chosen: torch.Tensor, probe: torch.Tensor) -> float:
    return float(KnnIndex(x[chosen]).search(x[probe], 1)[:, 0].max())


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--ratios", default="0.01,0.1")
    args = ap.parse_args()
    rows = []
    for n in [int(v) for v in args.sizes.split(",")]:
        x = features(n)
        probe = torch.randperm(n, generator=torch.Generator().manual_seed(1))[:20000]
        for r in [float(v) for v in args.ratios.split(",")]:
            m = int(n * r)
            t0 = time.perf_counter()
            idx = greedy_coreset(x, m)
            sec = time.perf_counter() - t0
            rand = torch.randperm(n, generator=torch.Generator().manual_seed(2))[:m]
            row = dict(n=n, m=m, sec=sec, cov=coverage(x, idx, probe), rand=coverage(x, rand, probe), exact=None)
            if m <= 2000:  # exact greedy (one row per pass) is m passes: only for small m
                t0 = time.perf_counter()
                ex = greedy_coreset(x, m, max_steps=m)
                row["exact"], row["exact_sec"] = coverage(x, ex, probe), time.perf_counter() - t0
            rows.append(row)
            print(row, flush=True)
    lines = ["| rows | kept | seconds | coverage radius | exact greedy (s) | random subset |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ex = "—" if r["exact"] is None else f"{r['exact']:.2f} ({r['exact_sec']:.0f} s)"
        lines.append(f"| {r['n']:,} | {r['m']:,} | {r['sec']:.1f} | {r['cov']:.2f} | {ex} | {r['rand']:.2f} |")
    body = (f"`greedy_coreset` on float32 features of width 384 (clustered: 300 clusters, many rare), "
            f"projected to 128; {torch.get_num_threads()} torch threads; load average at start "
            f"{os.getloadavg()[0]:.1f}. Coverage radius: the largest distance from a row (20,000 sampled) "
            "to its nearest kept row; lower covers better.\n\n" + "\n".join(lines))
    record.publish("Coreset: speed and coverage", body, args.no_record)


if __name__ == "__main__":
    main()
