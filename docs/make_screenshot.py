"""Regenerate docs/report.png: an HTML report as an inspector sees it, screenshotted by headless
Chromium at 1,400 px wide.

The README's inspection commands on the sample data (``anomaly demo --make-data``: the brick set):
LatentDistance on a randomly initialised resnet18's layer1+layer2, fitted on 90 % of
``brick/train`` (10 % calibrate the threshold at 1 % FPR), evaluated on ``brick/test`` with its
masks. The report is rendered to a temporary file; the first 1400 x 2500 px (header, verdicts at
the threshold, per-class table, plots and the first top anomalies) are captured, then reduced to
a 256-colour PNG. Needs Debian's chromium (apt-get install chromium).
Run:  python docs/make_screenshot.py [--out docs/report.png] [--html keep.html]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

import anomalib_lite as al
from anomalib_lite.evaluation.assessment import assess
from anomalib_lite.io import atomic_output
from anomalib_lite.evaluation.report import render_report
from anomalib_lite.data.sample_data import make_demo_data

WIDTH, HEIGHT = 1400, 2500


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).with_name("report.png")))
    ap.add_argument("--html", default=None, help="also keep the report here")
    args = ap.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium not found: apt-get install chromium")

    out, here = Path(args.out).resolve(), Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the report names the data as the README's commands do: data/brick/...
        try:
            make_demo_data("data")
            fit_data, cal_data = al.load_data("data/brick/train").split(0.1, seed=0)
            det = al.LatentDistance(backbone="resnet18", weights="random", layers=["layer1", "layer2"], device="cpu")
            det.fit(fit_data).calibrate(cal_data, fpr=0.01)
            ev = assess(det, "data/brick/test")
        finally:
            os.chdir(here)
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
        with atomic_output(out, "screenshot") as t:
            img.save(t, format="PNG", optimize=True)
    print(f"{out}: {img.width} x {img.height}, {out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
