"""SupervisedRNN early warning on the shared NAB series, against the last value's z-score.

Labels come from NAB's anomaly windows (1 inside a window); an anomaly starts where a window
starts, and the target at step t is 1 when one starts within (t, t + horizon]. Each series is split
by time: its first ``--train`` share trains, the rest tests. Every series is standardised with the
mean and std of its own training part (nothing from the test part), the training parts are
concatenated into one labelled stream for one model, and each test part is scored as a stream of
its own. Figures: average precision over all test steps pooled (the share of positive steps is
the AP of a random guess), per series where the test part has an onset, and lead times of the
alarms (score > 0.5 for the RNN, |z| > 3 for the baseline).
Run:  python benchmarks/nab_rnn.py
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import record
import torch

import anomalib_lite as al
from anomalib_lite.scoring.metrics import average_precision, early_warning_labels, lead_times, onsets
from anomalib_lite.data.series_sources import nab_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=float, default=0.6)
    ap.add_argument("--horizon", type=int, default=100)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    parts = []
    for name in nab_files():
        src = al.load_data(f"nab:{name}")
        cut = int(args.train * len(src))
        v = src.values[:, 0]
        mu, sd = v[:cut].mean(), v[:cut].std() or 1.0
        z = (v - mu) / sd
        parts.append((name, z[:cut], src.labels[:cut], z[cut:], src.labels[cut:]))
    x_train = np.concatenate([p[1] for p in parts])
    y_train = np.concatenate([p[2] for p in parts])
    start = time.perf_counter()
    det = al.SupervisedRNN(window=args.window, horizon=args.horizon, hidden=32, epochs=args.epochs, lr=3e-3,
                           fpr=0.01, device="cpu").fit((x_train, y_train))
    fit_s = time.perf_counter() - start
    scores, base, targets, labels, per_series = [], [], [], [], []
    for name, _, _, z, y in parts:
        s = det.reset().decision_function(z)
        t = early_warning_labels(y, args.horizon)
        scores.append(s), base.append(np.abs(z)), targets.append(t), labels.append(y)
        ok = np.isfinite(s)
        if 0 < t[ok].sum() < ok.sum():  # (an AP needs both kinds of step among those scored)
            per_series.append((name, len(onsets(y)), average_precision(t[ok], s[ok]),
                               average_precision(t[ok], np.abs(z)[ok]), t[ok].mean()))
    s, b, t, y = (np.concatenate(a) for a in (scores, base, targets, labels))
    ok = np.isfinite(s)
    rnn_ap, base_ap, rate = average_precision(t[ok], s[ok]), average_precision(t[ok], b[ok]), t[ok].mean()
    rnn_lead = lead_times(np.nan_to_num(s) > 0.5, y, args.horizon)
    cal_lead = lead_times(np.nan_to_num(s) > det.threshold_, y, args.horizon)
    base_lead = lead_times(b > 3, y, args.horizon)
    lines = [
        f"{len(parts)} NAB series; first {100 * args.train:.0f} % of each trains ({len(x_train):,} steps, "
        f"{len(onsets(y_train))} onsets), the rest tests ({len(y):,} steps, {sum(len(onsets(p[4])) for p in parts)} onsets). "
        f"SupervisedRNN: LSTM 1x32, window {args.window}, horizon {args.horizon}, balanced loss, early stopping on the "
        f"last 20 % of the training windows (by time), {det.history_.best_epoch + 1} epochs kept, {fit_s:.0f} s. "
        f"torch threads: 1. Load average before: {'/'.join(f'{v:.1f}' for v in load_before)}, after: "
        + "/".join(f"{v:.1f}" for v in os.getloadavg()) + ".",
        "",
        "| score | average precision (pooled test steps) | onsets warned | mean lead (steps) | false alarms / 1k steps |",
        "| --- | --- | --- | --- | --- |",
        (f"| SupervisedRNN probability (alarm > 0.5) | {rnn_ap:.3f} | {100 * rnn_lead['warned']:.0f} % | "
         f"{rnn_lead['mean_lead']:.1f} | {rnn_lead['false_alarms_per_1k']:.1f} |"),
        (f"| the same, alarm > {det.threshold_:.3g} (`fpr=0.01`: calibrated on the training tail's normal steps) | "
         f"{rnn_ap:.3f} | {100 * cal_lead['warned']:.0f} % | {cal_lead['mean_lead']:.1f} | {cal_lead['false_alarms_per_1k']:.1f} |"),
        (f"| last value's abs z-score (alarm > 3) | {base_ap:.3f} | {100 * base_lead['warned']:.0f} % | "
         f"{base_lead['mean_lead']:.1f} | {base_lead['false_alarms_per_1k']:.1f} |"),
        f"| random guess | {rate:.3f} | | | |",
        "",
        "Per series with an onset in the test part (AP of the RNN, AP of the z-score baseline, positive share):",
        "",
        "| series | onsets | RNN AP | z-score AP | positives |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {n} | {k} | {a:.3f} | {c:.3f} | {r:.3f} |" for n, k, a, c, r in per_series),
    ]
    record.append("NAB: SupervisedRNN early warning vs last-value z-score", "\n".join(lines))


if __name__ == "__main__":
    main()
