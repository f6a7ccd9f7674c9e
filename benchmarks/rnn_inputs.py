"""What SupervisedRNN reads: the values alone, or each value and its change from the step before.

Labelled series of the sample data's kind (``sample_data._series``: a load-like daily rhythm,
drift, noise; 4,032 five-minute steps), 24 anomalies each announced over 30 steps by a precursor.
The precursor kinds were split before any result: the **dev** kinds (growing jitter, as the
sample's labelled series; a level ramp) chose the defaults (``changes``, then ``lr``), the **held-out** kinds (the noise
going quiet, a growing fast ripple) only report. Three series per kind (seeds 0, 1, 2); each is
fitted on its first 70 % and scored on the rest as a stream continuing it. Figures: ROC-AUC and
average precision of the early-warning target (an anomaly starts within the next ``horizon`` =
20 steps) over the test steps, for the former defaults, the changes added and the learning rate then
raised, and as a reference without learning, the spread of the last 10
step changes.

Run:  python benchmarks/rnn_inputs.py [--seeds 3] [--no-record]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

KINDS = {"dev": ("jitter", "ramp"), "held-out": ("quiet", "ripple")}
#: the former defaults (values alone, lr 1e-3), the changes added, and the learning rate then raised
VARIANTS = {"values, lr 1e-3": dict(changes=False, lr=1e-3), "values + changes, lr 1e-3": dict(changes=True, lr=1e-3),
            "values + changes, lr 3e-3": dict(changes=True, lr=3e-3)}
WARN = 30


def series(kind: str, seed: int, n: int = 4032, n_events: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """(values, 0/1 labels): the sample data's rhythm with ``n_events`` anomalies (a spike, a level
    shift, a dropout, a noise burst, in turn), each announced over WARN steps by ``kind``."""
    from anomalib_lite.data.sample_data import _series

    rng = np.random.default_rng(np.random.SeedSequence([seed, 103]))
    x, _ = _series(n, rng, 5)
    y = np.zeros(n, dtype=int)
    starts = np.linspace(WARN + 50, n - 40, n_events).astype(int) + rng.integers(-10, 10, n_events)
    ramp = np.linspace(0, 1, WARN)
    for k, s in enumerate(starts):
        pre = slice(s - WARN, s)
        if kind == "jitter":
            x[pre] += rng.normal(0, 1, WARN) * 1.5 * ramp
        elif kind == "ramp":
            x[pre] += 2.0 * ramp
        elif kind == "quiet":  # the noise fades: the mean of the 9 steps around each step
            x[pre] = np.convolve(x[s - WARN - 4 : s + 4], np.ones(9) / 9, mode="valid")
        elif kind == "ripple":
            x[pre] += 1.5 * ramp * np.sin(np.pi * np.arange(WARN) / 2)
        length = int(rng.integers(4, 16))
        x[s : s + length] = (x[s : s + length] + rng.choice([-1, 1]) * rng.uniform(5, 8) if k % 4 == 0 else
                             x[s : s + length] + rng.uniform(3, 5) if k % 4 == 1 else
                             0.0 if k % 4 == 2 else x[s : s + length] + rng.normal(0, 3, length))
        y[s : s + length] = 1
    return x, y


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    import anomalib_lite as al
    from anomalib_lite.scoring.metrics import average_precision, early_warning_labels, roc_auc

    torch.set_num_threads(1)
    rows, t_all = {}, time.perf_counter()
    for half, kinds in KINDS.items():
        for kind in kinds:
            for seed in range(args.seeds):
                x, y = series(kind, seed)
                cut = int(0.7 * len(x))
                target = early_warning_labels(y, 20)
                test = np.arange(len(x)) >= cut
                d = np.abs(np.diff(x, prepend=x[0]))
                spread = np.array([d[max(0, i - 9): i + 1].std() for i in range(len(x))])
                runs = {"step changes' spread (no learning)": (spread, 0.0)}
                for name, kw in VARIANTS.items():
                    t0 = time.perf_counter()
                    det = al.SupervisedRNN(**kw, device="cpu", seed=0).fit(x[:cut], y[:cut])
                    s = np.concatenate([det.decision_function(x[:cut]), det.decision_function(x[cut:])])
                    runs[name] = (s, time.perf_counter() - t0)
                for name, (s, secs) in runs.items():
                    ok = test & np.isfinite(s)
                    rows.setdefault((half, kind, name), []).append(
                        (roc_auc(target[ok], s[ok]), average_precision(target[ok], s[ok]), target[ok].mean(), secs))
                print(half, kind, seed, {k: f"{roc_auc(target[test], v[0][test]):.3f}" for k, v in runs.items()}, flush=True)
    names = (*VARIANTS, "step changes' spread (no learning)")
    lines = [f"{args.seeds} series per precursor kind, fitted on the first 70 % of each and scored on the rest "
             f"(SupervisedRNN with every default but `changes`; 1 torch thread). Each cell: ROC-AUC / average "
             f"precision of the early-warning target over the test steps (mean over the series); a random guess "
             f"scores 0.5 / the positive share. {time.perf_counter() - t_all:.0f} s in all.", "",
             "| half | precursor | positive share | " + " | ".join(names) + " | fit s (each variant) |",
             "| --- | --- | --- |" + " --- |" * (len(names) + 1)]
    for half, kinds in KINDS.items():
        for kind in kinds:
            cells = [rows[(half, kind, n)] for n in names]
            fmt = lambda r: f"{100 * np.mean([a for a, *_ in r]):.1f} / {np.mean([b for _, b, *_ in r]):.3f}"  # noqa: E731
            lines.append(f"| {half} | {kind} | {np.mean([c for *_, c, _ in cells[0]]):.3f} | "
                         + " | ".join(fmt(c) for c in cells)
                         + " | " + " / ".join(f"{np.mean([r[-1] for r in c]):.0f}" for c in cells[:-1]) + " |")
    record.publish("SupervisedRNN: the values alone, or the values and their changes (rnn_inputs.py)",
                   "\n".join(lines), args.no_record)


if __name__ == "__main__":
    main()
