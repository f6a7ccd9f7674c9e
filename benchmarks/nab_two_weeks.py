"""NAB's two-week series, by proxy: does the weekly cycle of ``nab.results_scores`` cost on
series too short for a robust weekly reference?

Most of NAB's realAWSCloudwatch series are two weeks of 5-minute steps (4,032), so the cycle
works there in the second week against a single week. Those series are not in the shared set;
this proxy cuts every shared series with 5-minute steps into consecutive 4,032-step pieces (the
4,032-step series are one piece each; shorter ones and the remainder are dropped), keeps the
anomaly windows that fall inside a piece, runs ``examples/nab.py``'s route on each piece
(``nab.run_protocol`` with every default), and scores the NAB scores with and without the cycle
(``step_seconds`` given or not) with NAB's scorer over all pieces.
Run:  python benchmarks/nab_two_weeks.py
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import record

import anomalib_lite as al
from anomalib_lite import nab
from anomalib_lite.series_sources import nab_files

TOOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "nab_score.py"
PIECE = 4032  # two weeks at 5 minutes


def scorer():
    spec = importlib.util.spec_from_file_location("nab_score", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_score"] = module
    spec.loader.exec_module(module)
    return module


def pieces():
    """(name, piece) for every 4,032-step piece of the shared series with 5-minute steps."""
    for name in nab_files():
        src = al.load_data(f"nab:{name}")
        if src.step_seconds != 300:
            continue
        for j, start in enumerate(range(0, len(src) - PIECE + 1, PIECE)):
            yield f"{name[:-4]}_{j}.csv", src.slice(start, start + PIECE)


def main() -> None:
    ns = scorer()
    load_before = os.getloadavg()
    t = time.perf_counter()
    results: dict[str, dict[str, np.ndarray]] = {"with the weekly cycle": {}, "without": {}}
    labels = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rel, piece in pieces():
            path = Path(tmp) / "data" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("timestamp,value\n" + "".join(f"{s},{v:.10g}\n" for s, v in zip(piece.stamps, piece.values[:, 0])))
            labels[rel] = [[piece.stamps[a] + ".000000", piece.stamps[b] + ".000000"] for a, b in piece.windows]
            det = al.Continuation(device="cpu")
            scores, _ = nab.run_protocol(det, piece)
            for key, step in (("with the weekly cycle", piece.step_seconds), ("without", None)):
                results[key][rel] = nab.results_scores(det, scores, values=piece.values, step_seconds=step)
        (Path(tmp) / "labels.json").write_text(json.dumps(labels))
        corpus = ns.Corpus(str(Path(tmp) / "data"), str(Path(tmp) / "labels.json"))
        base = {}
        for p, prof in ns.DEFAULT_PROFILES.items():
            w = ns.sweep_weights(corpus, prof)
            base[p] = (ns.null_baseline(corpus, w, prof["fnWeight"]), prof["tpWeight"] * corpus.n_windows)
        table = {}
        for key, unit in results.items():
            s = np.concatenate([unit[x.rel][x.first_scored :] for x in corpus.series])
            table[key] = ns.score_detector(corpus, s, ns.DEFAULT_PROFILES, base)
    seconds = time.perf_counter() - t
    lines = [
        f"{len(labels)} pieces of 4,032 five-minute steps cut from the shared NAB series "
        f"({corpus.n_windows} anomaly windows inside them), Continuation with every default by the example's route "
        f"(fit on the probationary period, then test-then-train; {seconds:.0f} s), scored by "
        f"`../shared/tools/nab_score.py` over all pieces. Load average (1/5/15 min) before: "
        + "/".join(f"{v:.1f}" for v in load_before) + ", after: " + "/".join(f"{v:.1f}" for v in os.getloadavg()) + ".",
        "", "| NAB score | standard | reward low FP | reward low FN | rows detected in / outside windows (standard) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, r in table.items():
        st = r["standard"]
        lines.append(f"| {key} | " + " | ".join(f"{r[p]['normalized']:.2f}" for p in ns.DEFAULT_PROFILES)
                     + f" | {st['tp']} / {st['fp']} |")
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
