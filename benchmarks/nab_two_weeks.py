"""NAB's two-week series, by proxy: does the weekly cycle of ``nab.results_scores`` cost on
series too short for a robust weekly reference?

Most of NAB's realAWSCloudwatch series are two weeks of 5-minute steps (4,032), so the cycle
works there in the second week against a single week. Those series are not in the shared set;
this proxy cuts every shared series with 5-minute steps into consecutive 4,032-step pieces (the
4,032-step series are one piece each; shorter ones and the remainder are dropped), keeps the
anomaly windows that fall inside a piece, runs ``examples/nab.py``'s route on each piece
(``nab.run_protocol`` with every default), and scores the NAB scores with and without the cycle
(``step_seconds`` given or not) with NAB's scorer over all pieces; then a few variants of the
score (one change each, as in ``nab_ablation.py``), over the pieces of each half's series too.
Run:  python benchmarks/nab_two_weeks.py
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import record
from nab_score import PROFILES, halves, score  # NAB's scorer, as benchmarks/nab_score.py runs it

import anomalib_lite as al
from anomalib_lite.evaluation import nab
from anomalib_lite.data.series_sources import nab_files

PIECE = 4032  # two weeks at 5 minutes
ROUTES = {"with the weekly cycle": "cycle", "without": "nocycle"}  # row -> detector name in the results
#: more rows: name -> options of ``results_scores`` (of the piece's probationary period p)
VARIANTS = {
    "issue-18 score (new extremes, settle 1.5 p, no neighbours, no change)": lambda p: dict(
        settle=p + p // 2, extremes=True, neighbours=0, change=0),
    "settle 1.5 p instead of p": lambda p: dict(settle=p + p // 2),
    "without neighbours": lambda p: dict(neighbours=0),
    "without change": lambda p: dict(change=0),
}


def pieces():
    """(name, piece) for every 4,032-step piece of the shared series with 5-minute steps."""
    for name in nab_files():
        src = al.load_data(f"nab:{name}")
        if src.step_seconds != 300:
            continue
        for j, start in enumerate(range(0, len(src) - PIECE + 1, PIECE)):
            yield f"{name[:-4]}_{j}.csv", src.slice(start, start + PIECE)


def main() -> None:
    load_before = os.getloadavg()
    t = time.perf_counter()
    labels, table = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        data, results = Path(tmp) / "data", Path(tmp) / "results"
        for rel, piece in pieces():
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            (data / rel).write_text("timestamp,value\n" + "".join(f"{s},{v:.10g}\n" for s, v in zip(piece.stamps, piece.values[:, 0])))
            labels[rel] = [[piece.stamps[a] + ".000000", piece.stamps[b] + ".000000"] for a, b in piece.windows]
            det = al.Continuation(device="cpu")
            scores, _ = nab.run_protocol(det, piece)
            piece.nab_name = rel  # its results file is named after the piece
            for name, step in (("cycle", piece.step_seconds), ("nocycle", None)):
                unit = nab.results_scores(det, scores, values=piece.values, step_seconds=step)
                nab.write_results(results, piece, unit, name)
            for i, change in enumerate(VARIANTS.values()):
                unit = nab.results_scores(det, scores, values=piece.values, step_seconds=piece.step_seconds,
                                          **change(nab.probation_steps(len(piece))))
                nab.write_results(results, piece, unit, f"v{i}")
        (Path(tmp) / "labels.json").write_text(json.dumps(labels))
        for row, name in ROUTES.items():
            table[row] = score(results, data, Path(tmp) / "scores.json", Path(tmp) / "labels.json", name)
        names = {**{row: name for row, name in ROUTES.items()}, **{row: f"v{i}" for i, row in enumerate(VARIANTS)}}
        halved = {}
        for half, members in halves().items():  # the pieces of each half's series
            folder = Path(tmp) / f"data-{half}"
            for rel in labels:
                if any(rel.startswith(m[:-4] + "_") for m in members):
                    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    (folder / rel).symlink_to(data / rel)
            for row, name in names.items():
                halved[row, half] = score(results, folder, Path(tmp) / "scores.json", Path(tmp) / "labels.json", name)
        for row, name in names.items():
            if row not in table:
                table[row] = score(results, data, Path(tmp) / "scores.json", Path(tmp) / "labels.json", name)
    seconds = time.perf_counter() - t
    lines = [
        f"{len(labels)} pieces of 4,032 five-minute steps cut from the shared NAB series "
        f"({sum(map(len, labels.values()))} anomaly windows inside them), Continuation with every default by the example's route "
        f"(fit on the probationary period, then test-then-train; {seconds:.0f} s), scored by "
        f"`../shared/tools/nab_score.py` over all pieces. Load average (1/5/15 min) before: "
        + "/".join(f"{v:.1f}" for v in load_before) + ", after: " + "/".join(f"{v:.1f}" for v in os.getloadavg()) + ".",
        "", "| NAB score | standard | reward low FP | reward low FN | rows detected in / outside windows (standard) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, r in table.items():
        st = r["standard"]
        lines.append(f"| {key} | " + " | ".join(f"{r[p]['normalized']:.2f}" for p in PROFILES)
                     + f" | {st['tp']} / {st['fp']} |")
    lines += ["", "Standard profile over the pieces of the dev half's series / the held-out half's / all (a row: "
              "the default with one change):", "", "| NAB score | dev pieces | held-out pieces | all |", "| --- | --- | --- | --- |"]
    for row in names:
        lines.append(f"| {row} | {halved[row, 'dev']['standard']['normalized']:.2f} | "
                     f"{halved[row, 'held-out']['standard']['normalized']:.2f} | {table[row]['standard']['normalized']:.2f} |")
    lines += ["", "Per piece, standard profile, raw NAB score (with / without the cycle):", "",
              "| piece | windows | with | without |", "| --- | --- | --- | --- |"]
    a, b = table["with the weekly cycle"]["standard"]["files"], table["without"]["standard"]["files"]
    for rel in sorted(labels):
        lines.append(f"| {rel} | {len(labels[rel])} | {a[rel]['raw']:+.2f} (fp {a[rel]['fp']}) "
                     f"| {b[rel]['raw']:+.2f} (fp {b[rel]['fp']}) |")
    record.append("NAB's two-week series by proxy: the weekly cycle with a single week behind it (nab_two_weeks.py)",
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
