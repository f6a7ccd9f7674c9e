"""Regenerate docs/report.png: the top of an HTML report, screenshotted by headless Chromium.

LatentDistance (kNN, raw pixels) fitted on the training 7s (80 %; 20 % calibrate the threshold at
1 % FPR), scored on mnist:test?limit=2000; the report is rendered to a temporary file and the
first 1200 x 1500 px are captured, then reduced to a 256-colour PNG (well under 500 KB).
Needs MNIST under $ANOMALY_DATA_DIR and Debian's chromium (apt-get install chromium).
Run:  python docs/make_screenshot.py [--out docs/report.png] [--html keep.html]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

import anomalib_lite as al
from anomalib_lite.evaluation import assess
from anomalib_lite.io import atomic_output
from anomalib_lite.report import render_report

WIDTH, HEIGHT = 1200, 1500


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).with_name("report.png")))
    ap.add_argument("--html", default=None, help="also keep the report here")
    args = ap.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium not found: apt-get install chromium")

    fit_data, cal_data = al.load_data("mnist:train?classes=7").split(0.2, seed=0)
    det = al.LatentDistance(k=5, image_score="pooled", device="cpu").fit(fit_data).calibrate(cal_data, fpr=0.01)
    ev = assess(det, "mnist:test?limit=2000")

    with tempfile.TemporaryDirectory() as tmp:
        page = render_report(ev, Path(args.html) if args.html else Path(tmp) / "report.html", top=8)
        shot = Path(tmp) / "shot.png"
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--force-device-scale-factor=1", f"--user-data-dir={Path(tmp) / 'profile'}",
             "--virtual-time-budget=5000", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}",
             page.resolve().as_uri()],
            check=True, capture_output=True, timeout=180,
        )
        img = Image.open(shot).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        with atomic_output(args.out, "screenshot") as t:
            img.save(t, format="PNG", optimize=True)
    print(f"{args.out}: {img.width} x {img.height}, {Path(args.out).stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
