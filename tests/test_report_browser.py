"""The report in a real browser: headless Chromium loads it offline at 1,400 px, every embedded
image decodes (the page's own check sets data-images-ok), heatmaps show at their own size with
captions of at least 13 px, the sections are there, and it screenshots."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch
from PIL import Image

import anomalib_lite as al
from anomalib_lite.evaluation.assessment import assess
from anomalib_lite.evaluation.report import render_report

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def page(mnist_dir, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        det = al.LatentDistance(k=5, image_score="pooled", memory_size=2000, device="cpu").fit(
            al.load_data("mnist:train?classes=7&limit=300"))
        det.calibrate(al.load_data("mnist:test?classes=7&limit=100"), fpr=0.05)
        ev = assess(det, "mnist:test?limit=200")
    finally:
        torch.set_num_threads(before)
    return render_report(ev, tmp_path_factory.mktemp("report") / "report.html", top=4)


def test_every_image_decodes_in_chromium_and_the_sections_are_there(page, tmp_path):
    n_img = page.read_text().count("<img")
    assert n_img >= 2 + 4 + 1  # ROC, histogram, top anomalies, at least one false positive or miss
    r = chromium(tmp_path, "--window-size=1400,1000", "--dump-dom", page.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    body = re.search(r"<body[^>]*>", r.stdout)
    assert body, r.stdout[:500]
    ok = re.search(r'data-images-ok="(\d+)/(\d+)"', body.group(0))
    assert ok, f"the page's load check did not run: {body.group(0)}"
    assert int(ok.group(2)) == n_img and ok.group(1) == ok.group(2)
    shrunk = re.search(r'data-heat-shrunk="(\d+)/(\d+)"', body.group(0))
    assert shrunk and shrunk.group(1) == "0" and int(shrunk.group(2)) == n_img - 2  # every heatmap at 100 %
    assert float(re.search(r'data-caption-px="([\d.]+)"', body.group(0)).group(1)) >= 13
    for sid in ("header", "verdicts", "roc", "histogram", "top-anomalies", "false-positives", "missed"):
        assert f'id="{sid}"' in r.stdout


def test_screenshot(page, tmp_path):
    shot = tmp_path / "shot.png"
    r = chromium(tmp_path, "--window-size=1400,1600", f"--screenshot={shot}", page.as_uri())
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    im = Image.open(shot)
    assert im.size == (1400, 1600)
    colours = im.convert("RGB").resize((60, 80)).getcolors(60 * 80)
    assert colours is not None and len(colours) > 20  # rendered content, not a blank page
