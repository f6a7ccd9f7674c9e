"""One self-contained HTML report of an evaluation: figures, ROC curve, score histograms, the
top-ranked samples and the anomalies that looked most normal (with heatmaps), and for series a
timeline of values, scores, flags and true windows.

Every image is a PNG embedded as base64, there are no external resources, so the file reads the
same offline and can be mailed around. Section ids are stable (``header``, ``verdicts``, ``roc``,
``histogram``, ``timeline``, ``top-anomalies``, ``false-positives``, ``missed``) for links and tests.
Images: the verdicts at the threshold (a confusion matrix by class, the false positive rate
achieved against its target with a 95 % interval, flagged when the target lies outside it), then
galleries of the top anomalies of every class, the false positives and the missed anomalies, each
heatmap on one colour scale anchored at the threshold with the true defect outlined
(:mod:`anomalib_lite.evaluation.visual`), captions in the page's own text. Plots use matplotlib's Agg
canvas directly (no pyplot state). A tiny script sets ``data-images-ok="<ok>/<total>"`` on
``<body>`` once the page has loaded, counting the images that decoded, ``data-heat-shrunk`` (the
heatmaps the browser had to shrink to fit: none at 1,400 px) and ``data-caption-px``.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import itertools
import math
from pathlib import Path

import numpy as np

from ..errors import AnomalyError
from .assessment import NO_LABELS, Evaluation, assess
from ..io import atomic_output, check_writable
from .assessment import format_fpr_check
from .visual import colour_stops, heatmap_image, map_scale, true_labels

__all__ = ["render_report", "report"]

ROC_POINTS = 500  # the ROC curve is drawn through at most this many points
DPI = 100
MAX_LINE_POINTS = 4000  # longer timelines are drawn as a min/max envelope per bucket
PANEL = 256  # heatmap panels in the report are this many pixels high (two fit a card at 100 % zoom)
MAX_CHANNELS = 4  # value panels on the timeline; further columns are listed, not drawn

_NAMES = {
    "n": "samples", "scored": "steps scored", "flagged": "flagged", "n_anomalous": "anomalous",
    "roc_auc": "ROC-AUC", "average_precision": "average precision", "threshold": "threshold",
    "precision": "precision", "recall": "recall", "f1": "F1", "fpr": "false positive rate",
    "pixel_roc_auc": "pixel ROC-AUC", "pro": "PRO (to FPR 0.3)", "note": "note",
}
_PERCENT = {"roc_auc", "average_precision", "precision", "recall", "f1", "fpr", "pixel_roc_auc", "pro", "warned"}
_HEADER_NAMES = {
    "detector": "detector", "backbone": "backbone", "weights": "weights", "threshold": "threshold",
    "fpr": "target false positive rate", "fitted_on": "fitted on", "fitted_samples": "fitted samples",
    "normal_classes": "normal classes", "data": "scored data",
}


# ---------------------------------------------------------------------------- formatting
def _fmt(value, key: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "—"
        return f"{100 * v:.2f} %" if key in _PERCENT else f"{v:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) if value else "—"
    return str(value)


def _rows(d: dict, prefix: str = "", unit: str = "samples") -> list[tuple[str, str]]:
    rows = []
    for key, value in d.items():
        if key in ("detector", "data", "kind", "per_class", "confusion", "fpr_check") and not prefix:
            continue  # in the title already, or a table of its own
        if isinstance(value, dict):
            rows += _rows(value, f"{prefix}{key.replace('_', ' ')}: ", unit)
        else:
            name = unit if key == "n" and not prefix else _NAMES.get(key, key.replace("_", " "))
            rows.append((prefix + name, _fmt(value, key)))
    return rows


def _table(rows: list[tuple[str, str]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _png(data: bytes, alt: str, cls: str = "") -> str:
    b64 = base64.b64encode(data).decode("ascii")
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


# ---------------------------------------------------------------------------- plots
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _style(ax) -> None:
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _thin(n: int, most: int) -> np.ndarray:
    """At most ``most`` indices of 0..n-1, evenly spread, first and last kept."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(np.int64))


def _has_both(labels, scores) -> bool:
    if labels is None:
        return False
    y = np.asarray(labels)[np.isfinite(scores)]
    return 0 < y.sum() < y.size


def _roc_png(ev: Evaluation) -> bytes:
    from sklearn.metrics import roc_curve

    ok = np.isfinite(ev.scores)
    fpr, tpr, _ = roc_curve(np.asarray(ev.labels)[ok], ev.scores[ok])
    keep = _thin(len(fpr), ROC_POINTS)
    auc = ev.figures.get("roc_auc")
    fig = _figure(5.6, 4.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#9ca3af", linestyle=":", linewidth=1, label="chance")
    ax.plot(fpr[keep], tpr[keep], color="#2563eb", linewidth=2,
            label="ROC" + (f" (AUC {100 * auc:.1f} %)" if auc is not None else ""))
    if ev.threshold is not None and "fpr" in ev.figures and "recall" in ev.figures:
        ax.plot([ev.figures["fpr"]], [ev.figures["recall"]], "o", color="#dc2626", markersize=7,
                label=f"threshold {ev.threshold:.4g}")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate",
           ylabel="true positive rate (recall)")
    ax.legend(loc="lower right", frameon=False)
    _style(ax)
    return _save(fig)


def _hist_png(ev: Evaluation, labelled: bool) -> bytes:
    s = np.asarray(ev.scores, dtype=np.float64)
    ok = np.isfinite(s)
    fig = _figure(5.6, 4.0)
    ax = fig.add_subplot()
    finite = s[ok]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if ev.threshold is not None and np.isfinite(ev.threshold):
        lo, hi = min(lo, ev.threshold), max(hi, ev.threshold)
    n_bins = int(np.clip(np.sqrt(max(finite.size, 1)), 10, 60))
    bins = np.linspace(lo, hi if hi > lo else lo + 1, n_bins + 1)
    if labelled:
        y = np.asarray(ev.labels)[ok]
        for value, name, colour in ((0, "normal", "#2563eb"), (1, "anomalous", "#ea580c")):
            part = finite[y == value]
            ax.hist(part, bins=bins, density=True, alpha=0.55, color=colour,
                    label=f"{name} ({part.size:,})")
        ax.set_ylabel("density (area 1 per group)")
    else:
        ax.hist(finite, bins=bins, color="#6b7280", alpha=0.8, label=f"all samples ({finite.size:,})")
        ax.set_ylabel("count")
    if ev.threshold is not None and np.isfinite(ev.threshold):
        ax.axvline(ev.threshold, color="#dc2626", linestyle="--", linewidth=1.5,
                   label=f"threshold {ev.threshold:.4g}")
    ax.set_xlabel("anomaly score")
    ax.legend(frameon=False)
    _style(ax)
    return _save(fig)


def _envelope(y: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a line through per-bucket min and max, so spikes survive thinning."""
    n = len(y)
    if n <= most:
        return np.arange(n), y
    edges = np.linspace(0, n, most // 2 + 1).astype(np.int64)
    xs, ys = [], []
    for a, b in itertools.pairwise(edges):
        seg = y[a:b]
        if not np.isfinite(seg).any():
            xs += [a]
            ys += [np.nan]
            continue
        i, j = a + int(np.nanargmin(seg)), a + int(np.nanargmax(seg))
        for k in sorted((i, j)):
            xs.append(k)
            ys.append(y[k])
    return np.asarray(xs), np.asarray(ys)


def _time_axis(src) -> tuple[np.ndarray, str]:
    """x positions for each step: dates when the series has ISO timestamps, else step numbers."""
    times, stamps = getattr(src, "times", None), getattr(src, "stamps", None)
    if getattr(src, "dated", False):
        ms = np.round(np.asarray(times, dtype=np.float64) * 1000).astype("int64")
        return ms.astype("datetime64[ms]"), "time (UTC)"
    if times is not None and stamps:
        return np.asarray(times, dtype=np.float64), src.time_column or "time"
    return np.arange(len(src.values)), "step"


def _timeline_png(ev: Evaluation) -> bytes:
    src = ev.source
    values = np.asarray(src.values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    columns = list(getattr(src, "columns", None) or [f"value {j}" for j in range(values.shape[1])])
    shown = min(values.shape[1], MAX_CHANNELS)
    x, xlabel = _time_axis(src)
    flags = None if ev.flags is None else np.asarray(ev.flags, dtype=bool)
    windows = getattr(src, "windows", None) or []
    fig = _figure(12, 1.9 * (shown + 1) + 0.5)
    axes = fig.subplots(shown + 1, 1, sharex=True)
    series = [(values[:, j], columns[j], "#374151") for j in range(shown)]
    series.append((np.asarray(ev.scores, dtype=np.float64), "anomaly score", "#2563eb"))
    for ax, (y, name, colour) in zip(axes, series):
        for n, (a, b) in enumerate(windows):
            ax.axvspan(x[a], x[min(b, len(x) - 1)], color="#fdba74", alpha=0.45, linewidth=0,
                       label="true window" if n == 0 else None)
        xi, yi = _envelope(y, MAX_LINE_POINTS)
        ax.plot(x[xi], yi, color=colour, linewidth=0.8, label=name)
        if flags is not None and flags.any():
            f = np.flatnonzero(flags)
            ax.plot(x[f], y[f], "o", color="#dc2626", markersize=3, linestyle="none",
                    label=f"flagged ({f.size:,})")
        if name == "anomaly score" and ev.threshold is not None:
            ax.axhline(ev.threshold, color="#dc2626", linestyle="--", linewidth=1,
                       label=f"threshold {ev.threshold:.4g}")
        ax.set_ylabel(name if len(name) <= 18 else name[:17] + "…")
        _style(ax)
        ax.legend(loc="upper left", frameon=False, fontsize=8, ncol=4)
    axes[-1].set_xlabel(xlabel)
    return _save(fig)


# ---------------------------------------------------------------------------- sections
def _kpis(ev: Evaluation) -> str:
    f = ev.figures
    cards = []
    for key, name in (("roc_auc", "ROC-AUC"), ("average_precision", "average precision"),
                      ("f1", "F1 at threshold"), ("pixel_roc_auc", "pixel ROC-AUC"), ("pro", "PRO")):
        if key in f:
            cards.append((name, _fmt(f[key], key)))
    if "flagged" in f:
        cards.append(("flagged", f"{f['flagged']:,} of {f['n']:,}"))
    check = f.get("fpr_check")
    if check is not None:
        name = "false positive rate" + (f" (target {100 * check['target']:.2f} %)" if "target" in check else "")
        cards.append((name, _fmt(check["fpr"], "fpr") + ("" if check.get("target_inside", True) else " ⚠")))
    if "windows" in f:
        cards.append(("windows detected", f"{f['windows']['detected']} of {f['windows']['windows']}"))
    if "events" in f:
        cards.append(("anomalies detected", f"{f['events']['detected']} of {f['events']['windows']}"))
    if ev.threshold is not None:
        cards.append(("threshold", f"{ev.threshold:.4g}"))
    return '<div class="kpis">' + "".join(
        f'<div class="kpi"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div></div>'
        for k, v in cards) + "</div>"


def _header_section(ev: Evaluation) -> str:
    head = [(_HEADER_NAMES.get(k, k), _fmt(v, "fpr" if k == "fpr" else "")) for k, v in ev.header.items()]
    figs = _rows(ev.figures, unit="steps" if ev.kind == "series" else "samples")
    return (
        '<section id="header"><h2>Detector and figures</h2>' + _kpis(ev) + '<div class="two">'
        f'<div><h3>Bundle</h3>{_table(head)}</div><div><h3>Figures</h3>{_table(figs)}</div>'
        "</div></section>"
    )


def _per_class_section(ev: Evaluation) -> str:
    """MVTec's per-defect table: each anomalous class against the normal samples."""
    per = ev.figures.get("per_class")
    if not per:
        return ""
    head = ["class", "samples", "image ROC-AUC", "pixel ROC-AUC", "PRO (to FPR 0.3)", "recall at the threshold"]
    rows = [[name, f"{r['n']:,}", _fmt(r["roc_auc"], "roc_auc"), _fmt(r.get("pixel_roc_auc"), "pixel_roc_auc"),
             _fmt(r.get("pro"), "pro"), _fmt(r.get("recall"), "recall")] for name, r in per.items()]
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return ('<section id="per-class"><h2>Per defect class</h2><p>Each anomalous class against the normal samples.</p>'
            f'<table class="list"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></section>')


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _plots_section(ev: Evaluation) -> str:
    labelled = _has_both(ev.labels, ev.scores)
    note = ev.figures.get("note") or NO_LABELS
    if labelled:
        roc = ('<section id="roc"><h2>ROC curve</h2>'
               + _png(_roc_png(ev), "ROC curve", "plot") + "</section>")
        hist_note = "Scores of normal and anomalous samples" + (
            "; the dashed line is the threshold." if ev.threshold is not None else ".")
    else:
        roc = ""
        hist_note = "Scores of all samples. " + note
    hist = ('<section id="histogram"><h2>Score histogram</h2>' + _png(_hist_png(ev, labelled), "score histogram", "plot")
            + _note(hist_note) + "</section>")
    return f'<div class="two plots">{roc}{hist}</div>'


def _card(img_png: bytes, name: str, caption: str, verdict: str | None, truth: str | None) -> str:
    badge = "" if verdict is None else f'<span class="badge {"bad" if verdict == "ANOMALY" else "ok"}">{verdict}</span> '
    true = "" if truth is None else f'<span class="true">true: {html.escape(truth)}</span>'
    return (f'<figure class="card">{_png(img_png, name, "heat")}'
            f'<figcaption><b>{html.escape(name)}</b><br>{badge}{html.escape(caption)} {true}</figcaption></figure>')


def by_class(ev: Evaluation, candidates: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` of ``candidates`` (already in order of preference), taken from every class in
    turn (each class's best first), so one frequent class does not fill the gallery."""
    targets = getattr(ev.source, "targets", None)
    if targets is None or len(candidates) == 0:
        return np.asarray(candidates[:k], dtype=np.int64)
    queues = {}
    for i in candidates:
        queues.setdefault(int(targets[i]), []).append(int(i))
    out, lists = [], list(queues.values())
    for r in range(max(len(q) for q in lists)):
        out += [q[r] for q in lists if r < len(q)]
        if len(out) >= k:
            break
    return np.asarray(out[:k], dtype=np.int64)


def _galleries(ev: Evaluation, top: int) -> list[tuple[str, str, str, np.ndarray]]:
    """(section id, title, text, indices) of each gallery: top anomalies of every class, false
    positives, missed anomalies (false negatives)."""
    s = np.nan_to_num(np.asarray(ev.scores, dtype=np.float64), nan=-np.inf)
    order = np.argsort(-s, kind="stable")
    y = None if ev.labels is None else np.asarray(ev.labels)
    flags = None if ev.flags is None else np.asarray(ev.flags, dtype=bool)
    anomalous = order if y is None or y.sum() == 0 else order[y[order] == 1]
    top_idx = by_class(ev, anomalous, top)
    per_class = y is not None and getattr(ev.source, "targets", None) is not None
    out = [("top-anomalies", "Top anomalies",
            f"The {len(top_idx)} highest-scoring " + ("anomalies, taken from every class in turn" if per_class and y.sum()
                                                       else f"of {len(s):,} samples"), top_idx)]
    if y is None or not 0 < y.sum() < len(y):
        return out
    if flags is not None:
        fp = order[(y[order] == 0) & flags[order]][:top]
        out.append(("false-positives", "False positives: normal samples flagged",
                    f"{int(((y == 0) & flags).sum()):,} of the {int((y == 0).sum()):,} normal samples score above the "
                    f"threshold {ev.threshold:.4g}; the {len(fp)} highest", fp))
        fn_all = np.flatnonzero((y == 1) & ~flags)
        fn = by_class(ev, fn_all[np.argsort(s[fn_all], kind="stable")], top)
        out.append(("missed", "Missed: anomalies below the threshold (false negatives)",
                    f"{len(fn_all):,} of the {int(y.sum()):,} anomalies score at or below the threshold "
                    f"{ev.threshold:.4g} and go unflagged; the {len(fn)} lowest, from every class in turn", fn))
    else:
        low = np.flatnonzero(y == 1)
        low = low[np.argsort(s[low], kind="stable")][:top]
        out.append(("missed", "Missed: the most normal-looking anomalies",
                    f"The {len(low)} lowest-scoring of the {int(y.sum()):,} labelled anomalies (no threshold)", low))
    return out


def _legend(ev: Evaluation, scale) -> str:
    if scale is None:
        return _note(f"{type(ev.detector).__name__} has no score_map: images only.")
    anchored = scale.anchor is not None
    mid = f"threshold {scale.anchor:.3g}" + ("" if scale.exact else " (scaled)") if anchored else ""
    return (f'<div class="legend"><div class="bar" style="background:linear-gradient(to right, {colour_stops(scale)})">'
            + ('<i></i>' if anchored else "") + f'</div><div class="ticks"><span>{scale.lo:.3g}</span>'
            f'<span class="mid">{mid}</span><span class="end">{scale.hi:.3g}</span></div>'
            f"<small>{html.escape(scale.describe())}; one scale for every heatmap on this page; true defects "
            "outlined in green</small></div>")


def _missed_needs_labels(ev: Evaluation, galleries) -> str:
    """The missed-anomalies section where there are no labels to find them by (one gallery only)."""
    if len(galleries) != 1:
        return ""
    return ('<section id="missed"><h2>Missed anomalies</h2>'
            + _note("Needs labels: " + (ev.figures.get("note") or NO_LABELS)) + "</section>")


#: feature columns a vector gallery shows (the rest are counted)
VECTOR_COLUMNS = 12


def _vector_sections(ev: Evaluation, galleries) -> str:
    """The galleries of vectors (a table's rows, an array's samples): each a table of its samples'
    name, score, verdict, true label and values, named by the fit's columns where known."""
    idx = np.concatenate([g[3] for g in galleries]).astype(np.int64)
    values = ev.images(idx) if idx.size else np.zeros((0, 0))
    d = values.shape[1] if values.ndim == 2 else 0
    columns = ((getattr(ev.detector, "data_info_", None) or {}).get("columns") or [f"x{k}" for k in range(d)])[:d]
    shown_cols = columns[:VECTOR_COLUMNS]
    more = f" (and {d - len(shown_cols)} more columns)" if d > len(shown_cols) else ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["sample", "score", "verdict", "true", *shown_cols])
    labels, names = true_labels(ev, idx), ev.names(idx)
    out, at = [], 0
    for sid, title, text, part in galleries:
        rows = []
        for j in range(at, at + len(part)):
            i = int(idx[j])
            verdict = "" if ev.flags is None else ("ANOMALY" if ev.flags[i] else "normal")
            cells = [names[j], f"{ev.scores[i]:.4g}", verdict, labels[j] or "",
                     *(f"{v:.4g}" for v in values[j][: len(shown_cols)])]
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        at += len(part)
        body = (f'<table class="list vectors"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
                if rows else _note("None."))
        out.append(f'<section id="{sid}"><h2>{html.escape(title)}</h2><p>{html.escape(text)}{more}.</p>{body}</section>')
    return "".join(out) + _missed_needs_labels(ev, galleries)


def _image_sections(ev: Evaluation, top: int) -> str:
    galleries = _galleries(ev, top)
    shape = getattr(ev.detector, "input_shape_", None)
    if shape is not None and len(shape) == 1:  # vectors: no pixels to show
        return _vector_sections(ev, galleries)
    idx = np.concatenate([g[3] for g in galleries]).astype(np.int64)
    images = ev.images(idx) if idx.size else None
    maps = ev.maps(idx) if idx.size else None
    masks = ev.masks(idx) if idx.size else None
    names = ev.names(idx)
    named = getattr(ev.source, "names", None) is not None
    scale = None
    if maps is not None and np.isfinite(maps).any():
        scale = map_scale(maps, ev.scores[idx], ev.threshold)
    labels = true_labels(ev, idx)
    cards = []
    for j, i in enumerate(idx):
        png = io.BytesIO()
        img = heatmap_image(images[j], None if maps is None else maps[j], float(ev.scores[i]), ev.threshold,
                            mask=None if masks is None else masks[j], colour_scale=scale, height=PANEL, caption=False)
        img.save(png, format="PNG")
        verdict = None if ev.flags is None else ("ANOMALY" if ev.flags[i] else "normal")
        cards.append(_card(png.getvalue(), names[j] if named else f"sample {int(i)}", f"score {ev.scores[i]:.4g}",
                           verdict, labels[j]))
    out, at = [], 0
    for sid, title, text, part in galleries:
        panels = "left the image, right the image under its anomaly map" + (
            " with the true defect outlined" if masks is not None and sid != "false-positives" else "")
        body = "".join(cards[at : at + len(part)]) if len(part) else ""
        at += len(part)
        grid = f'<div class="grid">{body}</div>' if body else _note("None.")
        legend = _legend(ev, scale) if sid == "top-anomalies" else ""
        out.append(f'<section id="{sid}"><h2>{html.escape(title)}</h2><p>{html.escape(text)}; {panels}.</p>'
                   + legend + grid + "</section>")
    return "".join(out) + _missed_needs_labels(ev, galleries)


def _verdicts_section(ev: Evaluation) -> str:
    """The verdicts at the threshold: a confusion matrix by class (recall of each defect class,
    false positive rate of the normals) and the achieved false positive rate against its target."""
    f = ev.figures
    c, check = f.get("confusion"), f.get("fpr_check")
    if c is None:
        return ""
    normals = c["false_positives"] + c["true_negatives"]
    normal = ", ".join((ev.detector.data_info_ or {}).get("classes") or getattr(ev.source, "normal_names", None) or [])
    rows = [[f"{normal} (normal)" if normal else "normal", f"{normals:,}", f"{c['false_positives']:,}", f"{c['true_negatives']:,}",
             "false positive rate " + _fmt(c["false_positives"] / max(normals, 1), "fpr")]]
    per = f.get("per_class") or {}
    if per and all("flagged" in r for r in per.values()):
        rows += [[name, f"{r['n']:,}", f"{r['flagged']:,}", f"{r['n'] - r['flagged']:,}",
                  "recall " + _fmt(r["recall"], "recall")] for name, r in per.items()]
    else:
        n = c["true_positives"] + c["false_negatives"]
        rows.append(["anomalous", f"{n:,}", f"{c['true_positives']:,}", f"{c['false_negatives']:,}",
                     "recall " + _fmt(c["true_positives"] / max(n, 1), "recall")])
    table = _grid_table(["true class", "samples", "flagged", "passed", "at the threshold"], rows)
    ok = check is None or check.get("target_inside", True)
    flag = ("" if ok else '<span class="badge bad">target outside the interval</span> ')
    line = f'<p class="fpr {"ok" if ok else "bad"}">{flag}False positive rate: {html.escape(format_fpr_check(check))}.'
    if not ok:
        line += (" The threshold does not hold the rate it was calibrated for on this data: the data may have "
                 "shifted since calibration, or recalibrate on normal samples like these.")
    return (f'<section id="verdicts"><h2>Verdicts at the threshold {ev.threshold:.4g}</h2>{line}</p>'
            f"{table}</section>")


def _step_rows(ev: Evaluation, idx) -> list[list[str]]:
    src = ev.source
    stamps = getattr(src, "stamps", None)
    values = np.asarray(src.values)
    windows = getattr(src, "windows", None) or []
    rows = []
    for r, i in enumerate(idx):
        inside = any(a <= i <= b for a, b in windows)
        rows.append([str(r + 1), f"{int(i):,}", stamps[i] if stamps else "—", f"{ev.scores[i]:.4g}",
                     ", ".join(f"{v:.4g}" for v in np.atleast_1d(values[i])[:MAX_CHANNELS]),
                     "—" if ev.flags is None else ("yes" if ev.flags[i] else "no"),
                     ("yes" if inside else "no") if windows else ("—" if ev.labels is None else ("yes" if ev.labels[i] else "no"))])
    return rows


def _grid_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="list"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _series_sections(ev: Evaluation, top: int) -> str:
    src = ev.source
    s = np.asarray(ev.scores, dtype=np.float64)
    cols = list(getattr(src, "columns", []) or [])
    extra = f" ({len(cols) - MAX_CHANNELS} more columns not drawn: {', '.join(cols[MAX_CHANNELS:])})" if len(cols) > MAX_CHANNELS else ""
    out = ('<section id="timeline"><h2>Timeline</h2>' + _png(_timeline_png(ev), "timeline", "wide")
           + _note("Values and the anomaly score over time; red points are flagged steps, shaded spans the "
                   "true anomaly windows." + extra) + "</section>")
    order = np.argsort(-np.nan_to_num(s, nan=-np.inf), kind="stable")[: min(top, int(np.isfinite(s).sum()))]
    head = ["rank", "step", "time", "score", "value", "flagged", "true anomaly"]
    out += ('<section id="top-anomalies"><h2>Top anomalies</h2>'
            f"<p>The {len(order)} highest-scoring steps.</p>" + _grid_table(head, _step_rows(ev, order)) + "</section>")
    out += '<section id="missed"><h2>Missed</h2>'
    windows = getattr(src, "windows", None) or []
    stamps = getattr(src, "stamps", None)
    if windows:
        rows = []
        for a, b in windows:
            part = s[a : b + 1]
            best = float(np.nanmax(part)) if np.isfinite(part).any() else float("nan")
            hit = "—" if ev.flags is None else ("yes" if np.asarray(ev.flags)[a : b + 1].any() else "no")
            when = f"{stamps[a]} – {stamps[b]}" if stamps else f"{a:,} – {b:,}"
            rows.append([when, f"{b - a + 1:,}", _fmt(best), hit])
        missed = sum(r[3] == "no" for r in rows)
        out += (f"<p>{len(windows)} true anomaly windows; {missed} without any flagged step.</p>"
                + _grid_table(["window", "steps", "highest score", "detected"], rows))
    elif _has_both(ev.labels, s):
        y = np.asarray(ev.labels)
        anomalous = np.flatnonzero((y == 1) & np.isfinite(s))
        low = anomalous[np.argsort(s[anomalous], kind="stable")[:top]]
        out += ("<p>The lowest-scoring labelled anomalous steps.</p>"
                + _grid_table(head, _step_rows(ev, low)))
    else:
        out += _note("Needs labels: " + (ev.figures.get("note") or NO_LABELS))
    return out + "</section>"


# ---------------------------------------------------------------------------- page
CSS = """
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f9fafb;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1200px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:0 0 10px}h3{font-size:13px;margin:0 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.sub{color:var(--muted);margin:0 0 14px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin:0 0 16px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.two.plots{margin-bottom:16px}.two.plots section{margin:0}
@media (max-width:900px){.two{grid-template-columns:1fr}}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 14px}
.kpi{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:130px;background:var(--bg)}
.kpi .v{font-size:20px;font-weight:600}.kpi .k{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
table.kv th{text-align:left;font-weight:500;color:var(--muted);width:45%;padding:3px 8px 3px 0;vertical-align:top}
table.kv td{padding:3px 0;font-variant-numeric:tabular-nums;word-break:break-word}
table.kv tr+tr{border-top:1px solid var(--line)}
table.list th,table.list td{padding:4px 8px;text-align:left;border-bottom:1px solid var(--line);font-variant-numeric:tabular-nums}
table.list th{color:var(--muted);font-weight:500}
img.plot,img.wide{max-width:100%;height:auto;display:block}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:12px}
figure.card{margin:0;border:1px solid var(--line);border-radius:8px;padding:8px;background:var(--bg)}
img.heat{display:block;max-width:100%;height:auto}
figcaption{color:var(--fg);font-size:14px;margin-top:6px;word-break:break-all}
figcaption .true{color:var(--muted)}
.badge{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px;font-weight:600;letter-spacing:.03em}
.badge.bad{background:#fee2e2;color:#991b1b}.badge.ok{background:#dcfce7;color:#166534}
p.fpr.bad{color:#991b1b}
.note{color:var(--muted);font-style:italic;margin:8px 0 0}
.legend{margin:0 0 14px;font-size:13px;color:var(--muted);max-width:560px}
.legend .bar{position:relative;height:14px;border-radius:2px}
.legend .bar i{position:absolute;left:50%;top:-4px;bottom:-4px;border-left:2px solid var(--fg)}
.legend .ticks{display:grid;grid-template-columns:1fr auto 1fr;color:var(--fg);margin-top:4px}
.legend .ticks .end{text-align:right}
.legend small{display:block;margin-top:6px}
footer{color:var(--muted);font-size:12px;text-align:center}
"""

SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (im) { return im.complete && im.naturalWidth > 0; }).length;
  document.body.dataset.imagesOk = ok + "/" + imgs.length;
  var heat = Array.prototype.slice.call(document.querySelectorAll("img.heat"));
  var shrunk = heat.filter(function (im) { return im.clientWidth < im.naturalWidth - 1; }).length;
  document.body.dataset.heatShrunk = shrunk + "/" + heat.length;
  var cap = document.querySelector("figcaption");
  if (cap) { document.body.dataset.captionPx = parseFloat(getComputedStyle(cap).fontSize); }
});
"""


def render_report(ev: Evaluation, out, top: int = 8) -> Path:
    """Write the HTML report of ``ev`` to ``out`` (whole or not at all); returns the path."""
    out = check_writable(out, "report")
    if not isinstance(top, (int, np.integer)) or isinstance(top, bool) or top < 1:
        raise AnomalyError(f"report: top={top!r} must be a positive integer")
    f = ev.figures
    n = len(ev.scores)
    unit = "steps" if ev.kind == "series" else "samples"
    title = f"{type(ev.detector).__name__} on {f.get('data') or getattr(ev.source, 'spec', 'data')}"
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    n_scored = int(np.isfinite(np.asarray(ev.scores, dtype=np.float64)).sum())
    scored = f"{n:,} {unit}" + (f", {n_scored:,} scored" if n_scored != n else " scored")
    parts = [_header_section(ev), _verdicts_section(ev) if ev.kind == "image" else "", _per_class_section(ev),
             _plots_section(ev)]
    parts.append(_series_sections(ev, int(top)) if ev.kind == "series" else _image_sections(ev, int(top)))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Anomaly report: {html.escape(title)}</title><style>{CSS}</style>"
        f"<script>{SCRIPT}</script></head>\n<body><main>"
        f"<h1>Anomaly report: {html.escape(title)}</h1>"
        f'<p class="sub">{scored} · written {when} by anomalib_lite</p>\n'
        + "\n".join(parts)
        + "<footer>anomalib_lite · self-contained report, no external resources</footer>"
        "</main></body></html>\n"
    )
    with atomic_output(out, "report") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def report(det, data, out, top: int = 8, **load_options) -> Path:
    """Score ``data`` (a data spec or source) with the fitted ``det`` and write the HTML report."""
    check_writable(out, "report")  # fail before scoring
    return render_report(assess(det, data, **load_options), out, top=top)
