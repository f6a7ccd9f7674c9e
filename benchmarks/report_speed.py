"""HTML report speed and size on all 10,000 MNIST test digits.

Fit LatentDistance (kNN, raw pixels) on the training 7s (80 %; the other 20 % calibrate the
threshold at 1 % FPR), score mnist:test once (assess), then time render_report (ROC curve,
histograms, top anomalies and missed anomalies with heatmaps) and write_heatmaps for the top 100;
report the HTML file's size. Targets: the report in under 10 s after scoring, under 5 MB.
Run:  python benchmarks/report_speed.py [--top 8] [--out report.html] [--no-record]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import record
import torch

import anomalib_lite as al
from anomalib_lite.evaluation.assessment import assess
from anomalib_lite.evaluation.report import render_report
from anomalib_lite.evaluation.visual import write_heatmaps


def main() -> None:
    ap = record.parser()
    ap.add_argument("--top", type=int, default=8, help="samples per heatmap section of the report")
    ap.add_argument("--out", default=None, help="keep the report here (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    t = time.perf_counter()
    fit_data, cal_data = al.load_data("mnist:train?classes=7").split(0.2, seed=0)
    det = al.LatentDistance(k=5, image_score="pooled", device="cpu").fit(fit_data).calibrate(cal_data, fpr=0.01)
    t_fit = time.perf_counter() - t
    print(f"fit + calibrate on {len(fit_data)} + {len(cal_data)} sevens: {t_fit:.1f} s", flush=True)

    t = time.perf_counter()
    ev = assess(det, "mnist:test")
    t_score = time.perf_counter() - t
    print(f"assess on {len(ev.scores)} digits: {t_score:.1f} s, ROC-AUC {ev.figures['roc_auc']:.4f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "report.html"
        t = time.perf_counter()
        render_report(ev, out, top=args.top)
        t_report = time.perf_counter() - t
        size = out.stat().st_size
        print(f"render_report: {t_report:.2f} s, {size / 1e6:.2f} MB", flush=True)

        t = time.perf_counter()
        paths = write_heatmaps(Path(tmp) / "heatmaps", ev, top=100)
        t_maps = time.perf_counter() - t
        maps_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1e3
        print(f"write_heatmaps top 100: {t_maps:.2f} s ({maps_kb:.1f} kB per PNG)", flush=True)

    verdict = "within" if t_report < 10 and size < 5e6 else "OVER"
    body = (
        f"LatentDistance (kNN k=5, raw pixels) fitted on {len(fit_data):,} training 7s, calibrated on "
        f"{len(cal_data):,} (FPR 1 %); all {len(ev.scores):,} test digits scored once "
        f"(ROC-AUC {100 * ev.figures['roc_auc']:.1f} %).\n\n"
        "| step | time (s) | output |\n|---|---|---|\n"
        f"| fit + calibrate | {t_fit:.1f} | |\n"
        f"| assess (score 10,000 digits) | {t_score:.1f} | |\n"
        f"| render_report (top={args.top}) | **{t_report:.2f}** | **{size / 1e6:.2f} MB** HTML |\n"
        f"| write_heatmaps, top 100 | {t_maps:.2f} | {maps_kb:.1f} kB per PNG |\n\n"
        f"Targets: report under 10 s after scoring and under 5 MB: {verdict}."
    )
    record.publish("HTML report: speed and size on 10,000 MNIST digits", body, args.no_record)


if __name__ == "__main__":
    main()
