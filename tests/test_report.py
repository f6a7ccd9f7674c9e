"""HTML reports and heatmaps (no browser): sections, embedded PNGs, labels or none, series
timelines, top-k heatmap files, a planted defect's map, and errors that leave no file behind."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

import anomalib_lite as al
from anomalib_lite import AnomalyError
from anomalib_lite.detectors.base import Detector
from anomalib_lite.evaluation.assessment import assess
from anomalib_lite.evaluation.report import render_report, report
from anomalib_lite.data.series_sources import SeriesSource
from anomalib_lite.data.sources import ArraySource
from anomalib_lite.evaluation.visual import ALPHA, CONTOUR, GAP, heatmap_image, map_scale, write_heatmaps

PNG_SRC = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
IMAGE_IDS = ("header", "verdicts", "roc", "histogram", "top-anomalies", "false-positives", "missed")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digit7(mnist_dir):
    det = al.LatentDistance(k=5, image_score="pooled", memory_size=2000, device="cpu").fit(al.load_data("mnist:train?classes=7&limit=500"))
    return det.calibrate(al.load_data("mnist:test?classes=7&limit=200"), fpr=0.05)


@pytest.fixture(scope="module")
def labelled(digit7):
    return assess(digit7, "mnist:test?limit=300")


def section(page: str, sid: str) -> str:
    """The HTML of section ``sid`` (up to the next section)."""
    start = page.index(f'id="{sid}"')
    end = page.find("<section", start)
    return page[start : end if end > 0 else len(page)]


def pngs(page: str) -> list[Image.Image]:
    out = []
    for b64 in PNG_SRC.findall(page):
        data = base64.b64decode(b64, validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        Image.open(io.BytesIO(data)).verify()
        out.append(Image.open(io.BytesIO(data)))
    return out


def ids(page: str) -> set[str]:
    return set(re.findall(r'<section id="([^"]+)"', page))


def test_image_report_has_every_section_and_valid_embedded_pngs(labelled, tmp_path):
    out = render_report(labelled, tmp_path / "report.html", top=5)
    page = out.read_text(encoding="utf-8")
    assert ids(page) == {*IMAGE_IDS, "per-class"}  # nine other digits: a row each
    assert page.count("<tr><td>") >= 9
    y, flags, t = labelled.labels, labelled.flags, labelled.source.targets
    n_fp, n_fn = min(5, int((flags & (y == 0)).sum())), min(5, int((~flags & (y == 1)).sum()))
    assert n_fp > 0 and n_fn > 0
    images = pngs(page)
    assert len(images) == page.count("<img") == 2 + 5 + n_fp + n_fn  # ROC, histogram, the three galleries
    assert all(im.width > 100 and im.height > 100 for im in images)
    # self-contained: nothing fetched from anywhere
    assert not re.search(r'(src|href)="(?!data:)', page) and "http" not in page and "url(" not in page
    assert "document.body.dataset.imagesOk" in page
    # the header table shows the bundle and the figures
    head = section(page, "header")
    assert "mnist:train?classes=7&amp;limit=500" in head and f"{100 * labelled.figures['roc_auc']:.2f} %" in head
    # top anomalies: the best of five different classes, each its class's highest score
    shown = lambda sid: [int(i) for i in re.findall(r"<b>sample (\d+)</b>", section(page, sid))]
    top = shown("top-anomalies")
    assert len(top) == 5 and len(set(t[top])) == 5 and (y[top] == 1).all()
    assert all(labelled.scores[i] == labelled.scores[t == t[i]].max() for i in top)
    # false positives: the highest-scoring flagged normals; missed: unflagged anomalies, lowest first
    fp = shown("false-positives")
    assert fp == list(np.argsort(-np.where(flags & (y == 0), labelled.scores, -np.inf), kind="stable")[:n_fp])
    missed = shown("missed")
    assert len(missed) == n_fn and (y[missed] == 1).all() and not flags[missed].any()
    assert max(labelled.scores[missed]) <= labelled.threshold < min(labelled.scores[fp])
    # verdicts: the confusion matrix by class and the false positive rate against its target
    verdicts = section(page, "verdicts")
    c = labelled.figures["confusion"]
    assert f"<td>{c['false_positives']}</td><td>{c['true_negatives']}</td>" in verdicts
    check = labelled.figures["fpr_check"]
    assert check["target"] == 0.05 and f"{100 * check['low']:.2f}-{100 * check['high']:.2f} %" in verdicts
    assert ("target outside the interval" in verdicts) == (not check["target_inside"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_report_without_labels_has_the_histogram_and_says_roc_needs_labels(digit7, tmp_path):
    x = al.load_data("mnist:test?limit=80").x
    ev = assess(digit7, ArraySource("unlabelled.npy", x))
    assert ev.labels is None
    page = render_report(ev, tmp_path / "r.html", top=3).read_text()
    assert {"header", "histogram", "top-anomalies", "missed"} <= ids(page) and "roc" not in ids(page)
    assert "ROC-AUC" in section(page, "histogram") and "need labels" in section(page, "histogram")
    assert "Needs labels" in section(page, "missed")
    assert len(pngs(page)) == 1 + 3  # histogram and 3 top heatmaps


@pytest.fixture(scope="module")
def series_eval():
    t = np.arange(1700)
    x = np.sin(2 * np.pi * t / 20) + 0.05 * np.random.default_rng(0).normal(size=t.size)
    det = al.Continuation(window=24, horizon=3, hidden=16, num_layers=1, epochs=3, lr=3e-3, smoothing=3, device="cpu")
    det.fit(x[:600]).calibrate(x[600:1000], fpr=0.01)
    y = x[1000:].copy()
    y[300:306] += 3.0  # a planted spike
    labels = np.zeros(len(y), dtype=np.int64)
    labels[295:320] = 1
    times = 1.7e9 + 300.0 * np.arange(len(y))
    stamps = [np.datetime_as_string(np.datetime64(int(s), "s")) for s in times]
    src = SeriesSource("planted.csv", y[:, None], ["value"], stamps=stamps, times=times, time_column="timestamp",
                       labels=labels, windows=[(295, 319)], references=[300])
    return assess(det, src)


def test_series_report_has_the_timeline_and_the_spike_on_top(series_eval, tmp_path):
    page = render_report(series_eval, tmp_path / "s.html", top=4).read_text()
    assert {"header", "roc", "histogram", "timeline", "top-anomalies", "missed"} <= ids(page)
    images = pngs(page)
    assert len(images) == 3 and max(im.width for im in images) >= 1000  # ROC, histogram, timeline
    first = re.search(r"<tbody><tr><td>1</td><td>([\d,]+)</td>", section(page, "top-anomalies"))
    assert 295 <= int(first.group(1).replace(",", "")) <= 319
    assert "1 true anomaly windows; 0 without any flagged step" in section(page, "missed")


def test_heatmaps_written_for_the_top_k_only(labelled, tmp_path):
    out = tmp_path / "new" / "maps"  # created
    paths = write_heatmaps(out, labelled, top=4)
    best = np.argsort(-labelled.scores, kind="stable")[:4]
    assert [p.name.split("_")[0] for p in paths] == [f"{i:05d}" for i in best]
    assert sorted(out.iterdir()) == sorted(paths)  # nothing else, no temporary files
    for p, i in zip(paths, best):
        assert p.name == f"{i:05d}_score{labelled.scores[i]:.4g}.png"
        im = Image.open(p)
        assert im.format == "PNG" and im.width == 2 * 168 + GAP and im.height > 168 + 20  # two panels, colour bar
    chosen = write_heatmaps(tmp_path / "some", labelled, indices=[3, 1, 2])
    assert [p.name[:5] for p in chosen] == ["00003", "00001", "00002"]


def decode_overlay(img: Image.Image, image: np.ndarray, scale: int, colours: np.ndarray) -> np.ndarray:
    """The colour index (0..255) of every source pixel, read back from the overlay panel."""
    a = np.asarray(img.convert("RGB"), dtype=np.float64)
    h, w = image.shape[-2:]
    rows = np.arange(h) * scale + scale // 2
    cols = (w * scale + GAP) + np.arange(w) * scale + scale // 2
    over = a[np.ix_(rows, cols)]  # (h, w, 3)
    grey = np.round(image[0] * 255)[..., None]
    colour = (over - (1 - ALPHA) * grey) / ALPHA
    d = ((colour[..., None, :] - colours[None, None].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(-1)


def test_a_planted_square_is_where_the_map_and_its_heatmap_peak(digit7, tmp_path):
    sevens = al.load_data("mnist:test?classes=7&limit=100").x
    r0, c0, size = 20, 2, 8
    clear = sevens[:, r0 - 2 :, : c0 + size + 2].max((1, 2)) == 0  # the square does not touch the digit
    x = sevens[clear][:6].copy()
    assert len(x) == 6
    x[:, r0 : r0 + size, c0 : c0 + size] = 128  # a mid-grey square: no 7 has one
    src = ArraySource("planted", np.concatenate([x, sevens[clear][:6]]),  # planted, then the originals
                      np.array([1] * 6 + [0] * 6), ["7", "planted"], ["7"])
    ev = assess(digit7, src)
    assert list(ev.labels) == [1] * 6 + [0] * 6 and (ev.scores[:6] > ev.scores[6:] + 0.5).all()
    square = np.zeros((28, 28), dtype=bool)
    square[r0 - 1 : r0 + size + 1, c0 - 1 : c0 + size + 1] = True  # one pixel of slack: the patch grid
    maps = ev.maps(np.arange(6))
    for m in maps:
        assert square[np.unravel_index(np.argmax(m), m.shape)]
        assert m[square].max() > 1.1 * m[~square].max()
    # the rendered heatmaps show the same maps on one shared scale: read the colours back
    scale = map_scale(maps, ev.scores[:6], ev.threshold)
    assert not scale.exact  # pooled scores: the threshold is carried to the maps' scale
    paths = write_heatmaps(tmp_path, ev, indices=range(6), scale=scale)
    for i, p in enumerate(paths):
        image, m = ev.images([i])[0], maps[i]
        idx = decode_overlay(Image.open(p), image, scale=6, colours=scale.colours())
        assert np.abs(idx.astype(int) - scale.index(m)).max() <= 4
        assert square[np.unravel_index(np.argmax(idx), idx.shape)]


def test_heatmaps_share_one_scale_and_turn_warm_exactly_where_the_verdict_flips(tmp_path, mnist_dir):
    """Patch scores are their map's maximum: an image is flagged iff some pixel is drawn above the
    threshold (colour index >= 128); every file of the run uses the same scale."""
    det = al.LatentDistance(device="cpu", memory_size=2000, image_score="patch")
    det.fit(al.load_data("mnist:train?classes=7&limit=300"))
    det.calibrate(al.load_data("mnist:test?classes=7&limit=150"), fpr=0.1)
    ev = assess(det, "mnist:test?classes=7&limit=40&synth=stroke_blob&severity=1")
    assert ev.flags.any() and not ev.flags.all()
    maps = ev.maps(np.arange(40))
    scale = map_scale(maps[:16], ev.scores[:16], ev.threshold, scores=ev.scores)
    assert scale.exact and scale.anchor == pytest.approx(ev.threshold) and scale.hi >= ev.scores.max() - 1e-6
    paths = write_heatmaps(tmp_path, ev, batch_size=16)  # the scale comes from the first batch
    for i, p in enumerate(paths):
        idx = decode_overlay(Image.open(p), ev.images([i])[0], scale=6, colours=scale.colours())
        assert np.abs(idx.astype(int) - scale.index(maps[i])).max() <= 4, i
        assert (idx >= 128).any() == ev.flags[i], i
    # the true mask is outlined (inside the defect), the colour bar is drawn below the panels
    im = heatmap_image(ev.images([0])[0], maps[0], float(ev.scores[0]), ev.threshold, mask=ev.masks([0])[0],
                       colour_scale=scale, caption=False, colour_bar=True)
    a = np.asarray(im)
    green = (a[:168, 168 + GAP :] == CONTOUR).all(-1)
    big = np.kron(ev.masks([0])[0], np.ones((6, 6), dtype=bool))
    assert green.any() and big[green].all() and not (a[:168, :168] == CONTOUR).all(-1).any()
    assert im.height > 168 + 20 and len(np.unique(a[170:184].reshape(-1, 3), axis=0)) > 50  # a gradient


def test_heatmap_image_sizes_and_image_only():
    grey = np.random.default_rng(0).uniform(0, 1, (1, 28, 28)).astype(np.float32)
    assert heatmap_image(grey, grey[0], 1.0).size == (2 * 168 + GAP, 168)
    assert heatmap_image(grey, None, 1.0, threshold=0.5, label=1).size == (168, 168)
    rgb = np.zeros((3, 100, 120), dtype=np.float32)
    assert heatmap_image(rgb, np.zeros((100, 120)), 0.1, scale=1).size == (2 * 120 + GAP, 100)
    assert heatmap_image(rgb, None, 0.1).size == (240, 200)  # upscaled 2x: at least 160 px


class Brightness(Detector):
    """A detector without score_map: the mean pixel value."""

    input_kind = "image"

    def __init__(self):
        pass

    def _reset(self):
        pass

    def _update(self, batch, fitting):
        pass

    def _score_batch(self, x):
        return x.mean(dim=(1, 2, 3))


def test_a_detector_without_score_map_gives_one_error_line(tmp_path, mnist_dir):
    det = Brightness().fit(al.load_data("mnist:train?classes=7&limit=50"))
    ev = assess(det, "mnist:test?limit=40")
    with pytest.raises(AnomalyError, match=r"^maps: Brightness has no score_map$"):
        write_heatmaps(tmp_path / "maps", ev, top=3)
    assert not (tmp_path / "maps").exists()
    page = render_report(ev, tmp_path / "r.html", top=2).read_text()  # the report shows images only
    assert "has no score_map: images only" in page and len(pngs(page)) == 2 + 2 * 2


def test_unwritable_paths_give_one_error_and_leave_no_file(labelled, digit7, tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(AnomalyError, match="does not exist") as e:
        render_report(labelled, blocker / "r.html")
    assert "\n" not in str(e.value)
    with pytest.raises(AnomalyError, match="file.txt") as e:
        write_heatmaps(blocker / "maps", labelled, top=2)
    assert "\n" not in str(e.value)
    with pytest.raises(AnomalyError, match="is a folder"):
        report(digit7, "mnist:test?limit=20", tmp_path)
    # a failure while writing leaves neither the report nor a temporary file
    out = tmp_path / "half.html"

    def fail(self, text, **kw):
        self.open("w").write(text[:100])
        raise OSError("disk full")

    monkeypatch.setattr("pathlib.Path.write_text", fail)
    with pytest.raises(OSError):
        render_report(labelled, out, top=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_report_scores_a_spec_and_writes_the_page(digit7, tmp_path):
    out = report(digit7, "mnist:test?limit=60", tmp_path / "r.html", top=2)
    page = out.read_text()
    assert ids(page) == {*IMAGE_IDS, "per-class"} and "mnist:test?limit=60" in page
