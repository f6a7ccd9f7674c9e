"""A user's own series through ``anomaly fit --data FILE.csv`` (no detector named), as a CSV comes
from a plant's log: a label column beside the values, and a few hours missing from the log.

The series: 100 days of hourly load (a daily rhythm of amplitude 20 on weekdays and 5 at weekends,
Gaussian noise of 2), with three planted anomalies and their 0/1 labels in a column named
``label``: a spike of +40 (1 step), a level shift of +15 (30 steps) and a stuck sensor (24 steps
at one value); one empty value; 6 hours missing from the log after day 41 (seeds 0, 1, 2: the
noise and the missing hours' place). Each reading is one ``anomaly fit`` and one ``anomaly
evaluate --json`` in child processes; the table gives the mean over the seeds of the season the
fit read, ROC-AUC and average precision over the scored steps, and the false-positive rate at
the calibrated threshold (target 1 %), and the share of anomalous steps flagged.

* label as an input: ``--column load_kw,label``, what every fit read before label columns were
  recognised by their name (the labels leak into the input);
* as logged: the default reading (the label column apart), the gap left in;
* on the grid: ``?grid=1`` and ``--nan interpolate``, as ``fit``'s warning says (the 6 missing
  steps become gaps, filled by interpolation).

Run:  python benchmarks/series_csv.py      (about 2 minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import record

import anomalib_lite as al

SEEDS = (0, 1, 2)
READINGS = {
    "label as an input (`--column load_kw,label`: what a fit read before)": (
        "logged", ["--column", "load_kw,label"], ["--column", "load_kw,label", "--label-column", "label"]),
    "as logged (the label column apart), the gap left in": ("logged", [], []),
    "on the grid: `?grid=1 --nan interpolate` (what the warning says)": ("grid", [], []),
}


def write_series(folder: Path, seed: int) -> dict[str, str]:
    """The logged file (6 hours missing) as data specs: as it is, and on its grid."""
    rng = np.random.default_rng(seed)
    n = 24 * 100
    t0 = dt.datetime(2026, 1, 1)
    hours = np.arange(n) % 24
    weekday = ((np.arange(n) // 24) % 7) < 5
    v = 50 + np.where(weekday, 20.0, 5.0) * np.sin(2 * np.pi * (hours - 6) / 24) + rng.normal(0, 2, n)
    label = np.zeros(n, dtype=int)
    v[1500] += 40
    label[1500] = 1
    v[1800:1830] += 15
    label[1800:1830] = 1
    v[2100:2124] = v[2100]
    label[2100:2124] = 1
    v[700] = np.nan
    gap = 990 + int(rng.integers(0, 20))
    rows = ["time,load_kw,label"]
    for i in range(n):
        if not gap <= i < gap + 6:
            stamp = f"{t0 + dt.timedelta(hours=i):%Y-%m-%d %H:%M:%S}"
            rows.append(f"{stamp},{'' if np.isnan(v[i]) else f'{v[i]:.2f}'},{label[i]}")
    path = folder / f"logged-{seed}.csv"
    path.write_text("\n".join(rows) + "\n")
    return {"logged": str(path), "grid": f"{path}?grid=1"}


def run(args: list[str]) -> str:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), *args],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"anomaly {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout + done.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-record", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = ap.parse_args()
    figures: dict[str, list] = {name: [] for name in READINGS}
    warned: dict[str, int] = dict.fromkeys(READINGS, 0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in SEEDS:
            paths = write_series(tmp, seed)
            for name, (kind, extra, scoring) in READINGS.items():
                bundle, out = tmp / "m.anomaly", tmp / "f.json"
                said = run(["fit", "--data", str(paths[kind]), "--nan", "interpolate", *extra, "-o", str(bundle)])
                warned[name] += "the time steps have" in said
                run(["evaluate", str(bundle), "--data", str(paths[kind]), "--nan", "interpolate", *scoring,
                     "--json", str(out)])
                f = json.loads(out.read_text())
                check, events = f.get("fpr_check", {}), f.get("events", {})
                figures[name].append((al.load(bundle).season_, f["roc_auc"], f["average_precision"],
                                      f["fpr"], f["recall"], check.get("fpr", np.nan), events.get("detected", np.nan)))
                print(seed, name, figures[name][-1], flush=True)
    rows = []
    for name, got in figures.items():
        seasons = ", ".join(str(g[0]) for g in got)
        mean = np.mean([g[1:6] for g in got], axis=0) * 100
        found = [g[6] for g in got]
        found = "-" if np.isnan(found).any() else f"{int(sum(found))} of {3 * len(SEEDS)}"
        rows.append(f"| {name} | {seasons} | {mean[0]:.1f} | {mean[1]:.1f} | {mean[2]:.2f} % | {mean[4]:.2f} % | "
                    f"{mean[3]:.1f} % | {found} | {warned[name]} of {len(SEEDS)} |")
    body = (__doc__.split("\n\n")[1].replace("\n", " ") + " The false-positive rate is given twice: over every "
            "step labelled normal, and as `evaluate` checks it, outside each anomaly and the detector's window after "
            "it, whose input still holds it.\n\n"
            "| reading | season read (steps; seeds 0, 1, 2) | ROC-AUC | average precision | false-positive rate "
            "(target 1 %) | the same outside each anomaly and the window after | recall (anomalous steps flagged) | "
            "anomalies detected | fit warned of the gap |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    record.publish("A user's own series: a label column and a gap in the log (series_csv.py)", body, args.no_record)


if __name__ == "__main__":
    main()
