"""Evaluate a fitted detector on data: the figures `anomaly evaluate` prints and reports show.

:func:`assess` scores the data once and keeps what a report needs (scores, labels, flags, masks,
the bundle's header, a way to fetch images and maps); :func:`evaluate` returns its figures.
Every number comes from scikit-learn through :mod:`anomalib_lite.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import metrics
from .base import Detector
from .data import collect
from .errors import AnomalyError
from .sources import DataSource
from .sources import load as load_data

__all__ = ["Evaluation", "assess", "evaluate", "format_figures", "from_scores", "has_score_map"]

NO_LABELS = "ROC-AUC, AP and F1 need labels: give data with classes (e.g. mnist:test) or a label column"


def has_score_map(det: Detector) -> bool:
    """Whether the detector implements per-pixel maps."""
    return type(det)._score_map_batch is not Detector._score_map_batch


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
    masks: np.ndarray | None = None  # (N, H, W) bool, known for synthetic anomalies

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

    def images(self, indices) -> np.ndarray:
        """Samples ``indices`` as float (k, C, H, W) in [0, 1] (images only)."""
        idx = np.asarray(indices, dtype=np.int64)
        x, _ = collect(self.source.subset(idx), where=str(self.source.spec))
        return x.numpy()

    def maps(self, indices) -> np.ndarray | None:
        """Per-pixel maps (k, H, W) of samples ``indices``, or None without ``score_map``."""
        if self.kind != "image" or not has_score_map(self.detector):
            return None
        idx = np.asarray(indices, dtype=np.int64)
        return self.detector.score_map(self.source.subset(idx))


def _image_figures(ev: Evaluation) -> dict:
    out: dict = {"n": len(ev.scores)}
    if ev.flags is not None:
        out["flagged"] = int(ev.flags.sum())
    if ev.labels is None or not 0 < ev.labels.sum() < len(ev.labels):
        out["note"] = NO_LABELS if ev.labels is None else "labels hold one class only; " + NO_LABELS
        return out
    out.update(metrics.image_metrics(ev.labels, ev.scores, ev.threshold))
    if ev.masks is not None and ev.masks.any() and has_score_map(ev.detector):
        maps = ev.detector.score_map(ev.source)
        out["pixel_roc_auc"] = metrics.roc_auc(ev.masks.reshape(-1).astype(np.int64), maps.reshape(-1))
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
    if ev.flags is not None and raw is not None and type(det).__name__ == "SupervisedRNN":
        out["early_warning"] = metrics.lead_times(ev.flags, raw, det.horizon)
    if ev.flags is not None and getattr(source, "windows", None):
        w = metrics.window_metrics(ev.flags, source.windows, source.references)
        w.pop("leads")
        out["windows"] = w
    return out


def assess(det: Detector, data, *, data_dir=None, download: bool = False, **load_options) -> Evaluation:
    """Score ``data`` (a data spec or a loaded source) once and compute every figure."""
    source = data if isinstance(data, DataSource) else load_data(data, data_dir=data_dir, download=download, **load_options)
    det._require_fitted()
    kind = "series" if getattr(source, "kind", None) == "series" else "image"
    if det.input_kind not in (kind, "any"):
        raise AnomalyError(f"{source.spec}: {kind} data for a {det.input_kind} detector ({type(det).__name__})")
    scores = det.score(source)
    if kind == "series":
        det.reset()  # the next call starts a new stream
    return from_scores(det, source, scores)


def from_scores(det: Detector, source, scores: np.ndarray) -> Evaluation:
    """An :class:`Evaluation` of scores already computed (e.g. while streaming or learning)."""
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
        ev = Evaluation(det, source, "image", scores, labels, threshold, flags, masks=getattr(source, "masks", None))
        ev.figures = _image_figures(ev)
    ev.figures = {"detector": type(det).__name__, "data": source.spec, "kind": ev.kind, **ev.figures}
    return ev


def evaluate(det: Detector, data, **load_options) -> dict:
    """ROC-AUC, AP, precision/recall/F1 and FPR at the threshold, pixel ROC-AUC where masks are
    known, window figures for series: the same dict `anomaly evaluate --json` writes."""
    return assess(det, data, **load_options).figures


def format_figures(figures: dict) -> str:
    """The small table `anomaly evaluate` prints."""
    pct = lambda v: f"{100 * v:.2f} %"
    rows = [("detector", figures["detector"]), ("data", f"{figures['data']} ({figures['n']} {'steps' if figures['kind'] == 'series' else 'samples'})")]
    if "n_anomalous" in figures:
        rows.append(("anomalous", f"{figures['n_anomalous']} of {figures['n']}"))
    for key, name in (("roc_auc", "ROC-AUC"), ("average_precision", "average precision")):
        if key in figures:
            rows.append((name, pct(figures[key])))
    if "threshold" in figures:
        rows.append(("threshold", f"{figures['threshold']:.6g}"))
        rows += [(name, pct(figures[key])) for key, name in
                 (("precision", "precision"), ("recall", "recall"), ("f1", "F1"), ("fpr", "false positive rate"))]
    if "pixel_roc_auc" in figures:
        rows.append(("pixel ROC-AUC", pct(figures["pixel_roc_auc"])))
    if "flagged" in figures:
        rows.append(("flagged", str(figures["flagged"])))
    if "windows" in figures:
        w = figures["windows"]
        rows += [("windows detected", f"{w['detected']}/{w['windows']}"),
                 ("false alarms", f"{w['false_alarms_per_1k']:.2f} per 1,000 steps outside windows"),
                 ("mean lead", f"{w['mean_lead']:.1f} steps")]
    if "early_warning" in figures:
        e = figures["early_warning"]
        rows += [("onsets warned", pct(e["warned"]) if e["onsets"] else "no onsets"),
                 ("mean lead", f"{e['mean_lead']:.1f} steps"),
                 ("false alarms", f"{e['false_alarms_per_1k']:.2f} per 1,000 steps")]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
