"""Tables of features: kNN on the values as they are, or each column standardised on the training rows.

The vectors route (``anomaly fit --data table.csv?rows=samples``) measures distances between rows.
Columns in their own units (a mass in grams beside a ratio) let the widest decide every distance.
This compares ``LatentDistance(scaling="none")`` (the former route) with ``scaling="feature"``
(each column standardised by its mean and standard deviation over the training rows), on the
tables that ship with scikit-learn (offline), one class normal and the others anomalous. The
split into halves was fixed before any result: the **dev** half (breast cancer: benign normal;
wine: cultivar 0 normal) chose the route's default, the **held-out** half (wine cultivars 1 and 2,
iris species 0 to 2, and digits 0 to 2 as 64 pixel columns, features that share one unit) only
reports. Each task: 5 random splits; 70 % of the normal rows fit, the rest of them and as many
anomalous rows (at most) are scored. Figures: ROC-AUC (mean over the splits).

A last row goes through the command as a user would (``anomaly fit --data normal.csv?rows=samples``
then ``anomaly evaluate``) on the breast-cancer table written with an ``id`` column: the id names
the rows and is no input.

Run:  python benchmarks/table_scaling.py [--splits 5] [--no-record]
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

HALVES = {"dev": [("breast cancer", "breast_cancer", 1), ("wine", "wine", 0)],
          "held-out": [("wine", "wine", 1), ("wine", "wine", 2), ("iris", "iris", 0), ("iris", "iris", 1),
                       ("iris", "iris", 2), ("digits (pixels)", "digits", 0), ("digits (pixels)", "digits", 1),
                       ("digits (pixels)", "digits", 2)]}


def task(name: str, normal: int, seed: int):
    """(train, test, 0/1 labels) of one split: rows of class ``normal`` are normal."""
    from sklearn import datasets

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    if name == "digits":
        keep = y <= 2  # three digits: 0, 1, 2
        x, y = x[keep], y[keep]
    rng = np.random.default_rng(seed)
    norm, anom = rng.permutation(np.flatnonzero(y == normal)), rng.permutation(np.flatnonzero(y != normal))
    cut = int(0.7 * len(norm))
    held = norm[cut:]
    anom = anom[: len(held)]
    test = np.concatenate([held, anom])
    return x[norm[:cut]].astype(np.float32), x[test].astype(np.float32), np.r_[np.zeros(len(held)), np.ones(len(anom))]


def through_the_command(folder: Path) -> tuple[str, float, float]:
    """The breast-cancer table with an id column, through ``anomaly fit`` / ``evaluate``: the fit's
    line, its ROC-AUC, and the ROC-AUC with the id read as a feature (named in ``--column``, as
    every column was read before the id rule), the values as they are."""
    train, test, labels = task("breast_cancer", 1, 0)
    order = np.random.default_rng(0).permutation(len(test))  # (a table's rows in no order of their labels)
    test, labels = test[order], labels[order]
    for path, rows, y in ((folder / "normal.csv", train, None), (folder / "test.csv", test, labels)):
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id"] + [f"f{i}" for i in range(rows.shape[1])] + ([] if y is None else ["label"]))
            for i, row in enumerate(rows):
                w.writerow([1000 + i + (0 if y is None else 5000)] + [f"{v:.6g}" for v in row]
                           + ([] if y is None else [int(y[i])]))
    exe = [sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py")]
    fit = subprocess.run(exe + ["fit", "--data", f"{folder / 'normal.csv'}?rows=samples", "-o", str(folder / "t.anomaly"),
                                "--device", "cpu", "--quiet"], capture_output=True, text=True, check=True)
    subprocess.run(exe + ["evaluate", str(folder / "t.anomaly"), "--data", str(folder / "test.csv"),
                          "--json", str(folder / "f.json")], capture_output=True, text=True, check=True)
    auc = json.load(open(folder / "f.json"))["roc_auc"]
    every = ["id"] + [f"f{i}" for i in range(train.shape[1])]
    subprocess.run(exe + ["fit", "latent", "--data", f"{folder / 'normal.csv'}?rows=samples", "--column", ",".join(every),
                          "-o", str(folder / "old.anomaly"), "--device", "cpu", "--quiet"],
                   capture_output=True, text=True, check=True)
    subprocess.run(exe + ["evaluate", str(folder / "old.anomaly"), "--data", str(folder / "test.csv"),
                          "--json", str(folder / "g.json")], capture_output=True, text=True, check=True)
    return fit.stdout.strip().splitlines()[-1], auc, json.load(open(folder / "g.json"))["roc_auc"]


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=5)
    args = ap.parse_args()
    import anomalib_lite as al

    t_all = time.perf_counter()
    lines = [f"ROC-AUC (mean over {args.splits} random splits) of `LatentDistance` (kNN, k = 5) on the values as "
             "they are and with each column standardised on the training rows; tables from scikit-learn, one "
             "class normal. The halves were fixed before any result.", "",
             "| half | table | normal class | columns | widest / narrowest column spread | values as they are | "
             "each column standardised |", "| --- | --- | --- | --- | --- | --- | --- |"]
    means: dict = {}
    for half, tasks in HALVES.items():
        for title, name, normal in tasks:
            got = {"none": [], "feature": []}
            for seed in range(args.splits):
                train, test, y = task(name, normal, seed)
                for scaling in got:
                    det = al.LatentDistance(scaling=scaling, device="cpu")
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)  # (the spreads warning, expected here)
                        got[scaling].append(det.fit(train).score(test, y))
            std = train.std(0)
            ratio = std.max() / std[std > 0].min()
            cells = [100 * np.mean(got[s]) for s in ("none", "feature")]
            means.setdefault(half, []).append(cells)
            lines.append(f"| {half} | {title} | {normal} | {train.shape[1]} | {ratio:,.0f} | {cells[0]:.1f} | "
                         f"{cells[1]:.1f} |")
            print(lines[-1], flush=True)
    for half, cells in means.items():
        m = np.mean(cells, 0)
        lines.append(f"| {half} | **mean** | | | | **{m[0]:.1f}** | **{m[1]:.1f}** |")
    with tempfile.TemporaryDirectory() as tmp:
        line, auc, before = through_the_command(Path(tmp))
    lines += ["", f"Through the command (breast cancer, benign normal, split 0, the table written with an `id` "
                  f"column, its test rows shuffled, 1000 + row in the fitted table and 6000 + row in the scored one): `anomaly fit --data "
                  f"normal.csv?rows=samples` said: \"{line}\"; `anomaly evaluate` on the test table: ROC-AUC "
                  f"{100 * auc:.1f}. With the id read as a feature and the values as they are (`anomaly fit latent "
                  f"--column id,f0,...,f29`, what every table's id was before): ROC-AUC {100 * before:.1f}.", "",
              f"{time.perf_counter() - t_all:.0f} s in all."]
    record.publish("Tables of features: each column standardised, or the values as they are (table_scaling.py)",
                   "\n".join(lines), args.no_record)


if __name__ == "__main__":
    main()
