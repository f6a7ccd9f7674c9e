"""Evaluate a fitted detector on data: the figures `anomaly evaluate` prints and reports show.

:func:`assess` scores the data once and keeps what a report needs (scores, labels, flags, masks,
the bundle's header, a way to fetch images and maps); :func:`evaluate` returns its figures.
Every number comes from scikit-learn through :mod:`anomalib_lite.scoring.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..scoring import metrics
from ..detectors.base import Detector
from ..data.batches import collect
from ..errors import AnomalyError, plural
from ..data.sources import DataSource
from ..data.sources import load as load_data

__all__ = [
    "Evaluation", "assess", "evaluate", "format_figures", "format_fpr_check", "format_verdict", "from_scores", "has_score_map",
    "plural", "score_rows",
]

NO_LABELS = "ROC-AUC, AP and F1 need labels: give data with classes (e.g. mnist:test) or a label column"


def has_score_map(det: Detector) -> bool:
    """Whether the detector gives per-pixel maps: its class implements them, and it was not fitted
    on vectors (which have no pixels to map)."""
    shape = getattr(det, "input_shape_", None)
    return type(det)._score_map_batch is not Detector._score_map_batch and (shape is None or len(shape) == 3)


@dataclass
class Evaluation:
    """One scoring pass of a detector over a data source, with what figures and reports need."""

    detector: Detector
    source: Any
    kind: str  # "image" or "series"
    scores: np.ndarray
    labels: np.ndarray | None  # 0/1 per sample (per step: the detector's target, e.g. early warning)
    threshold: float | None
    flags: np.ndarray | None  # bool per sample, where the detector can flag
    figures: dict = field(default_factory=dict)

    @property
    def header(self) -> dict:
        """The bundle's identity: detector, backbone, weights, threshold, data fitted on."""
        det = self.detector
        params = det.get_params()
        info = det.data_info_ or {}
        return {
            "detector": type(det).__name__,
            "backbone": params.get("backbone") if isinstance(params.get("backbone"), str) else None,
            "weights": params.get("weights") if params.get("backbone") else None,
            "threshold": self.threshold,
            "fpr": getattr(det, "fpr_", None),
            "fitted_on": info.get("spec"),
            "fitted_samples": info.get("n"),
            "normal_classes": info.get("classes"),
            "data": getattr(self.source, "spec", None),
        }

    @cached_property
    def p_values(self) -> np.ndarray | None:
        """The scores' p-values against the detector's calibration scores, once per pass (the
        scores table, the verdict and the drift check read them); None when not calibrated."""
        if self.threshold is None or getattr(self.detector, "calibration_scores_", None) is None:
            return None
        return self.detector.p_values(self.scores)

    def images(self, indices) -> np.ndarray:
        """Samples ``indices`` as float (k, C, H, W) in [0, 1] (images only)."""
        idx = np.asarray(indices, dtype=np.int64)
        x, _ = collect(self.source.subset(idx), where=str(self.source.spec))
        return x.numpy()

    def masks(self, indices) -> np.ndarray | None:
        """Ground-truth defect masks (k, H, W) of samples ``indices``, or None where unknown."""
        if self.kind != "image" or not getattr(self.source, "has_masks", False):
            return None
        return self.source.read_masks(np.asarray(indices, dtype=np.int64))

    def names(self, indices) -> list[str]:
        """What outputs call samples ``indices``: their file paths, else their indices."""
        name = getattr(self.source, "name", None)
        return [name(int(i)) if name else str(int(i)) for i in indices]

    def maps(self, indices) -> np.ndarray | None:
        """Per-pixel maps (k, H, W) of samples ``indices``, or None without ``score_map``."""
        if self.kind != "image" or not has_score_map(self.detector):
            return None
        idx = np.asarray(indices, dtype=np.int64)
        return self.detector.score_map(self.source.subset(idx))


#: pixels kept per map for pixel figures before maps and masks are pooled to fewer
_PIXEL_BUDGET = 1 << 27


def _image_figures(ev: Evaluation, maps: np.ndarray | None = None) -> dict:
    out: dict = {"n": len(ev.scores)}
    if ev.flags is not None:
        out["flagged"] = int(ev.flags.sum())
    if ev.labels is None or not 0 < ev.labels.sum() < len(ev.labels):
        out["note"] = NO_LABELS if ev.labels is None else "labels hold one class only; " + NO_LABELS
        return out
    out.update(metrics.image_metrics(ev.labels, ev.scores, ev.threshold))
    if ev.flags is not None:
        out.update(_at_threshold(ev))
    masks = ev.masks(np.arange(len(ev.scores))) if maps is not None else None
    if masks is not None and masks.any():
        maps, masks = _pooled(maps, masks)
        out.update(metrics.pixel_metrics(masks, maps))
    per_class = _per_class(ev, maps, masks)
    if per_class:
        out["per_class"] = per_class
    return out


def _at_threshold(ev: Evaluation) -> dict:
    """The verdicts at the threshold: the confusion matrix, and the false positive rate achieved
    on the normal samples against the rate the threshold was calibrated for (with its interval)."""
    y, f = np.asarray(ev.labels) == 1, np.asarray(ev.flags, dtype=bool)
    confusion = {"true_positives": int((f & y).sum()), "false_negatives": int((~f & y).sum()),
                 "false_positives": int((f & ~y).sum()), "true_negatives": int((~f & ~y).sum())}
    return {"confusion": confusion, "fpr_check": metrics.fpr_interval(f[~y], getattr(ev.detector, "fpr_", None))}


def _pooled(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps average-pooled (masks: any defect pixel) by the smallest factor that keeps them
    under the pixel budget, so pixel figures of large sets fit in memory."""
    f = int(np.ceil(np.sqrt(maps.size / _PIXEL_BUDGET)))
    if f <= 1:
        return maps, masks
    n, h, w = maps.shape
    h2, w2 = h // f, w // f
    m = maps[:, : h2 * f, : w2 * f].reshape(n, h2, f, w2, f).mean(axis=(2, 4))
    k = masks[:, : h2 * f, : w2 * f].reshape(n, h2, f, w2, f).any(axis=(2, 4))
    return m, k


def _per_class(ev: Evaluation, maps, masks) -> dict:
    """Figures per anomalous class against the normal samples: image ROC-AUC, and pixel ROC-AUC
    and PRO where masks are known (MVTec's per-defect table)."""
    src = ev.source
    names, targets = getattr(src, "class_names", None), getattr(src, "targets", None)
    if names is None or targets is None:
        return {}
    labels = np.asarray(ev.labels)
    normal = labels == 0
    classes = [c for c in np.unique(targets[labels == 1])]
    if len(classes) < 2 and masks is None:
        return {}
    out = {}
    for c in classes:
        sel = normal | (targets == c)
        row = {"n": int((targets == c).sum()), "roc_auc": metrics.roc_auc(labels[sel], ev.scores[sel])}
        if ev.flags is not None:  # recall of this class at the threshold
            row["flagged"] = int(np.asarray(ev.flags)[targets == c].sum())
            row["recall"] = row["flagged"] / row["n"]
        if masks is not None and masks[targets == c].any():
            row.update(metrics.pixel_metrics(masks[sel], maps[sel]))
        out[str(names[c])] = row
    return out


def _series_figures(ev: Evaluation, det: Detector, source) -> dict:
    out: dict = {"n": len(ev.scores), "scored": int(np.isfinite(ev.scores).sum())}
    if ev.flags is not None:
        out["flagged"] = int(ev.flags.sum())
    y = ev.labels
    if y is None or not 0 < y[np.isfinite(ev.scores)].sum() < np.isfinite(ev.scores).sum():
        out["note"] = NO_LABELS
    else:
        out.update(metrics.image_metrics(y, ev.scores, ev.threshold))
    raw = source.anomaly_labels()
    events = None  # a label column's anomalies, each with the steps after it whose input still holds it
    if raw is not None and not getattr(source, "windows", None) and not det.capabilities.early_warning \
            and np.asarray(raw).any():
        events = metrics.label_events(raw, after=int(getattr(det, "window", 0) or 0))
    if ev.flags is not None and "threshold" in out and getattr(det, "fpr_", None) is not None:
        # the achieved rate against the calibrated one, on the scored steps that are normal (for an
        # early warning: no onset ahead and no anomaly under way, the steps it was calibrated on;
        # else no anomaly in the window the detector reads)
        normal = np.isfinite(ev.scores) & (np.asarray(y) == 0)
        if raw is not None:
            normal &= np.asarray(raw) == 0
        if events:
            normal &= ~metrics.in_spans(events[0], len(normal))
        if normal.any():
            out["fpr_check"] = metrics.fpr_interval(np.asarray(ev.flags, dtype=bool)[normal], det.fpr_)
    if ev.flags is not None and raw is not None and det.capabilities.early_warning:
        out["early_warning"] = metrics.lead_times(ev.flags, raw, det.horizon)
    if ev.flags is not None and getattr(source, "windows", None):
        w = metrics.window_metrics(ev.flags, source.windows, source.references)
        w.pop("leads")
        out["windows"] = w
    elif ev.flags is not None and events:
        spans, starts = events
        w = metrics.window_metrics(ev.flags, spans, starts)
        leads = w.pop("leads")
        w["mean_delay"] = -float(np.mean(leads)) if leads else float("nan")  # (steps after the start)
        del w["mean_lead"]
        w["after"] = int(getattr(det, "window", 0) or 0)
        out["events"] = w
    return out


def assess(det: Detector, data, *, data_dir=None, download: bool = False, **load_options) -> Evaluation:
    """Score ``data`` (a data spec or a loaded source) once and compute every figure."""
    source = data if isinstance(data, DataSource) else load_data(data, data_dir=data_dir, download=download, **load_options)
    det._require_fitted()
    kind = "series" if getattr(source, "kind", None) == "series" else "image"
    if det.input_kind not in (kind, "any"):
        raise AnomalyError(f"{source.spec}: {kind} data for a {det.input_kind} detector ({type(det).__name__})")
    if kind == "image" and getattr(source, "has_masks", False) and has_score_map(det):
        parts = list(det._scores_and_maps(source))  # one pass: the maps make the scores too
        scores = np.concatenate([p[0] for p in parts])
        maps = np.concatenate([p[1] for p in parts])
        return from_scores(det, source, scores, maps)
    scores = det.decision_function(source)
    if kind == "series":
        det.reset()  # the next call starts a new stream
    return from_scores(det, source, scores)


def from_scores(det: Detector, source, scores: np.ndarray, maps: np.ndarray | None = None) -> Evaluation:
    """An :class:`Evaluation` of scores already computed (e.g. while streaming or learning);
    ``maps`` (N, H, W), when given for images with known masks, give the pixel figures."""
    threshold = getattr(det, "threshold_", None)
    if getattr(source, "kind", None) == "series":
        flags = det.flag(scores) if det.can_flag() else None
        raw = source.anomaly_labels()
        labels = None if raw is None else det.targets(raw)
        ev = Evaluation(det, source, "series", scores, labels, threshold, flags)
        ev.figures = _series_figures(ev, det, source)
    else:
        labels = source.anomaly_labels((det.data_info_ or {}).get("classes"))
        flags = None if threshold is None else scores > threshold
        ev = Evaluation(det, source, "image", scores, labels, threshold, flags)
        ev.figures = _image_figures(ev, maps)
    ev.figures = {"detector": type(det).__name__, "data": source.spec, "kind": ev.kind, **ev.figures}
    return ev


def score_rows(ev: Evaluation) -> tuple[list[str], list[list]]:
    """The scores table of images: ``index``, ``path`` (for files: relative to the data spec; a
    table's rows: their id column, by its name), ``score``, ``p_value`` and ``is_anomaly`` (calibrated detectors), ``label`` (when known)."""
    n, pvals = len(ev.scores), ev.p_values
    calibrated = pvals is not None
    named = getattr(ev.source, "names", None) is not None
    tail = (["p_value", "is_anomaly"] if calibrated else []) + (["label"] if ev.labels is not None else [])
    ident = (getattr(ev.source, "table", None) or {}).get("id_column")  # a table's rows: named as its id column
    name = "path" if not ident else ident if ident not in ("index", "score", *tail) else "name"
    head = ["index"] + ([name] if named else []) + ["score"] + tail
    names = ev.names(range(n)) if named else None
    rows = []
    for i, s in enumerate(ev.scores):
        row = [i] + ([names[i]] if named else []) + [f"{s:.6g}"]
        if calibrated:
            row += [f"{pvals[i]:.6g}", int(s > ev.threshold)]
        if ev.labels is not None:
            row.append(int(ev.labels[i]))
        rows.append(row)
    return head, rows


def format_verdict(ev: Evaluation, i: int = 0) -> str:
    """One line for one sample: ``part.png: score 2.31, p-value 0.0099, ANOMALY (threshold 1.9)``."""
    s = float(ev.scores[i])
    text = f"{ev.names([i])[0]}: score {s:.4g}"
    if ev.p_values is not None:
        p = float(ev.p_values[i])
        verdict = "ANOMALY" if s > ev.threshold else "normal"
        text += f", p-value {p:.3g}, {verdict} (threshold {ev.threshold:.4g})"
    return text


def evaluate(det: Detector, data, **load_options) -> dict:
    """ROC-AUC, AP, precision/recall/F1 and FPR at the threshold, pixel ROC-AUC where masks are
    known, window figures for series: the same dict `anomaly evaluate --json` writes."""
    return assess(det, data, **load_options).figures


def format_fpr_check(c: dict) -> str:
    """``2.00 % achieved (1 of 50 normals; 95 % interval 0.05-10.65 %), target 1.00 %: inside``;
    a target outside the interval is flagged in capitals: the threshold does not hold here."""
    text = (f"{100 * c['fpr']:.2f} % achieved ({c['false_positives']} of {plural(c['normals'], 'normal')}; "
            f"{100 * c['level']:.0f} % interval {100 * c['low']:.2f}-{100 * c['high']:.2f} %)")
    if "target" in c:
        text += f", target {100 * c['target']:.2f} %: " + ("inside" if c["target_inside"] else "OUTSIDE THE INTERVAL")
    return text


def format_figures(figures: dict) -> str:
    """The small table `anomaly evaluate` prints."""
    pct = lambda v: f"{100 * v:.2f} %"
    unit = "step" if figures["kind"] == "series" else "sample"
    rows = [("detector", figures["detector"]), ("data", f"{figures['data']} ({plural(figures['n'], unit)})")]
    if "n_anomalous" in figures:
        rows.append(("anomalous", f"{figures['n_anomalous']} of {figures['n']}"))
    for key, name in (("roc_auc", "ROC-AUC"), ("average_precision", "average precision")):
        if key in figures:
            rows.append((name, pct(figures[key])))
    if "threshold" in figures:
        rows.append(("threshold", f"{figures['threshold']:.6g}"))
        rows += [(name, pct(figures[key])) for key, name in (("precision", "precision"), ("recall", "recall"), ("f1", "F1"))]
        check = figures.get("fpr_check")
        rows.append(("false positive rate", format_fpr_check(check) if check else pct(figures["fpr"])))
    if "pixel_roc_auc" in figures:
        rows.append(("pixel ROC-AUC", pct(figures["pixel_roc_auc"])))
    if "pro" in figures:
        rows.append(("PRO (to FPR 0.3)", pct(figures["pro"])))
    if "flagged" in figures:
        rows.append(("flagged", str(figures["flagged"])))
    if "windows" in figures:
        w = figures["windows"]
        rows += [("windows detected", f"{w['detected']}/{w['windows']}"),
                 ("false alarms", f"{w['false_alarms_per_1k']:.2f} per 1,000 steps outside windows"),
                 ("mean lead", f"{w['mean_lead']:.1f} steps")]
    if "events" in figures:
        w = figures["events"]
        rows += [("anomalies detected", f"{w['detected']}/{w['windows']} (a flag from the first labelled step to "
                                        f"{plural(w['after'], 'step')} after the last: the detector's window)"),
                 ("false alarms", f"{w['false_alarms_per_1k']:.2f} per 1,000 steps outside them"),
                 ("mean delay", f"{w['mean_delay'] + 0.0:.1f} steps from the start to the first flag"
                  if w["detected"] else "-")]
    if "early_warning" in figures:
        e = figures["early_warning"]
        rows += [("onsets warned", pct(e["warned"]) if e["onsets"] else "no onsets"),
                 ("mean lead", f"{e['mean_lead']:.1f} steps"),
                 ("false alarms", f"{e['false_alarms_per_1k']:.2f} per 1,000 steps")]
    width = max(len(r[0]) for r in rows)
    text = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
    per = figures.get("per_class")
    if per:
        w = max(len("class"), *(len(k) for k in per))
        lines = [f"{'class'.ljust(w)}  {'n':>5}  {'image':>8}  {'pixel':>8}  {'PRO':>8}  {'recall':>8}"]
        for name, r in per.items():
            cell = lambda key: f"{100 * r[key]:7.2f}%" if key in r else f"{'-':>8}"
            lines.append(f"{name.ljust(w)}  {r['n']:>5}  {cell('roc_auc')}  {cell('pixel_roc_auc')}  {cell('pro')}  "
                         f"{cell('recall')}")
        text += ("\n\nper class (ROC-AUC against the normal samples; recall at the threshold):\n"
                 + "\n".join(lines))
    return text
