"""What the ``anomaly`` command does, as Python functions: each CLI command parses its options and
calls one of these, which return the lines it prints.

* :func:`load_source`: a data spec, read the way a bundle was fitted (series: its columns);
* :func:`fit_and_save`: fit on a data spec, calibrate on a held-out share, save the bundle;
* :func:`score_and_write`: scores CSV (``-`` for stdout), heatmaps, HTML report, NAB results, or
  one line for one image;
* :func:`evaluate_and_write`: the figures table, JSON, heatmaps and report;
* :func:`stream`: CSV lines scored as they arrive (:func:`anomalib_lite.runtime.series_io.stream_lines`);
* :func:`export`: a bundle as an ONNX model (:mod:`anomalib_lite.runtime.export`);
* :func:`demo`, :func:`describe_header`.

Outputs are checked before any work: writable, and never the same file as anything the run reads
(each file of the data, masks, the bundle, key files, configs) nor a heatmap folder holding the
data (:func:`anomalib_lite.io.check_outputs`).
"""
from __future__ import annotations

import contextlib
import csv
import functools
import glob
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .. import distributed
from ..scoring import metrics
from ..evaluation import nab
from ..runtime import series_io
from ..detectors.base import Detector
from ..errors import AnomalyError
from ..evaluation.assessment import (
    NO_LABELS,
    Evaluation,
    assess,
    format_figures,
    format_verdict,
    from_scores,
    has_score_map,
    plural,
    score_rows,
)
from ..bundles.header import describe_header
from ..io import atomic_output, check_outputs, check_writable
from .options import ROUTES
from ..data.sources import load as load_data
from ..data.sources import SizesDiffer, channel_note, fit_hint, is_series_spec, read_as_fitted, rows_as_samples, spec_files, spec_path
from ..data.series_sources import ColumnNotFound
from ..scoring.thresholds import SurpriseScore, drift

__all__ = ["augment_preview", "backbones_table", "demo", "describe_header", "evaluate_and_write", "export",
           "fit_and_save", "load_bundle", "load_source", "pretrain_and_save", "score_and_write", "stream"]


def _threads_for_load(fn):
    """Run a command's torch work with :func:`anomalib_lite.threads.threads_for_load`: torch's
    thread count less the other processes' runnable threads, read once as the command starts
    (beside a busy process, a second thread stalls every parallel step); the caller's count is
    restored afterwards."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from .. import threads

        with threads.torch_threads(threads.threads_for_load()[0]):
            return fn(*args, **kwargs)

    return run


def _data_named(fn):
    """A command's errors about its data name the data spec: an array checker deep in a detector
    says ``data: ...`` (it never saw a file name); the command says ``lot7/*.png: ...``."""

    @functools.wraps(fn)
    def run(det, spec, *args, **kwargs):
        try:
            return fn(det, spec, *args, **kwargs)
        except AnomalyError as e:
            text = str(e)
            if not text.startswith("data:") or spec is None:
                raise
            raise AnomalyError(f"{spec}:{text[5:]}") from None

    return run


def load_source(spec: str, det: Detector | None = None, *, data_dir=None, download: bool = False, columns=None,
                time_column: str | None = None, label_column: str | None = None, nan: str = "reject"):
    """Load ``spec``; for a series detector a CSV is read with the columns it was fitted on
    (unless ``columns`` / ``time_column`` say otherwise) and the spec must be a series; image
    files are read at the size the bundle's images were resized to (its fit's ``?size=``),
    unless ``spec`` gives its own."""
    series = det is not None and det.input_kind == "series"
    base, given = str(spec).split("?")[0], str(spec)
    fitted = (getattr(det, "data_info_", None) or {}) if det is not None else {}
    if det is not None and not series:
        shape = getattr(det, "input_shape_", None)
        spec = read_as_fitted(str(spec), fitted.get("spec"), shape[0] if shape and len(shape) == 3 else None)
        if is_series_spec(spec) and not rows_as_samples(spec):  # (before reading it as a series)
            raise AnomalyError(f"{given}: a time series, but {type(det).__name__} takes images or vectors (a table "
                               f"whose rows are samples, not steps in time: {base}?rows=samples)")
    table = rows_as_samples(spec)
    if (series or table) and (base == "-" or base.lower().endswith(".csv")):
        columns, time_column = columns or fitted.get("columns"), time_column or fitted.get("time_column")
    if det is not None and not series and not table and (columns or time_column or label_column):
        raise AnomalyError(f"{spec}: --column, --time-column and --label-column apply to CSV files")
    options = dict(columns=columns, time_column=time_column, label_column=label_column, nan=nan) \
        if series or table or det is None else {}

    def named(e: Exception) -> str:  # (messages name the spec the user gave, not the options added to it)
        text = str(e)
        return given + text[len(spec):] if spec != given and text.startswith(f"{spec}:") else text

    try:
        source = load_data(spec, data_dir=data_dir, download=download, **options)
    except ColumnNotFound as e:
        if columns and columns == fitted.get("columns"):  # the bundle's columns, not the user's
            raise AnomalyError(f"{e} (the bundle was fitted on columns {', '.join(columns)}; pass --column)") from None
        raise
    except SizesDiffer as e:
        shape = getattr(det, "input_shape_", None)
        if det is None or not shape or len(shape) != 3 or getattr(det, "tiling_", None):  # (tiled: a tile's shape)
            raise AnomalyError(named(e)) from None
        h, w = shape[1:]
        raise AnomalyError(f"{named(e)} (the bundle was fitted on {h}x{w} images: ?size={h if h == w else f'{h}x{w}'})") \
            from None
    except AnomalyError as e:
        if spec == given:
            raise
        raise AnomalyError(named(e)) from None
    if spec != given:
        source.spec = given
    note = channel_note(source, given) if det is not None else None
    if note:
        warnings.warn(note)
    kind = getattr(source, "kind", "image")
    if series and kind != "series":
        raise AnomalyError(f"{spec}: not a time series; give a .csv file, nab:CATEGORY/FILE.csv or -")
    return source


def _check_outputs(outputs: dict, spec, *files, det: Detector | None = None, folders=(), verify=None,
                   data_dir=None) -> None:
    """Refuse outputs that would replace anything the run reads: every file of the data ``spec``
    (each image of a folder or glob, masks), ``files`` (the bundle, key files, configs), the
    verify key (given, or $ANOMALY_VERIFY_KEY), and files named by the detector's parameters
    (an augmentation config, a weights file). Before any work; one AnomalyError."""
    from ..bundles.signing import verify_key_from_env

    if verify is None and any(p is not None and str(p) != "-" for p in [*outputs.values(), *folders]):
        verify = verify_key_from_env()
    named = list(det.get_params(deep=False).values()) if det is not None else []
    root = spec_path(str(spec)) if spec is not None else None
    inputs = [*(spec_files(str(spec), data_dir) if spec is not None else []),
              *(p for p in (*files, verify, *named) if _is_file(p))]
    check_outputs(outputs, inputs, folders=folders, roots=[root] if root is not None and root.is_dir() else [])


def _is_file(p) -> bool:
    try:
        return isinstance(p, (str, os.PathLike)) and bool(str(p)) and Path(p).is_file()
    except (OSError, ValueError):
        return False


def load_bundle(path, *, device: str = "auto", verify=None, verbose: bool = False, batch_size: int | None = None,
                threads: int | None = None) -> Detector:
    """A bundle loaded for scoring, with the run's settings (``batch_size`` where the detector has
    one; ``threads`` only for the detectors that take it: one error otherwise)."""
    from ..bundles.bundle import load

    det = load(path, device=device, verify=verify)
    det.set_params(verbose=verbose)
    if batch_size and "batch_size" in det.get_params():
        det.set_params(batch_size=batch_size)
    if threads is not None:
        if "threads" not in det.get_params():
            raise AnomalyError(f"--threads: {type(det).__name__} does not take it (series detectors do)")
        det.set_params(threads=threads)
    return det


def choose_detector(source, *, device: str = "auto", seed: int = 0, verbose: bool = False) -> tuple[Detector, str]:
    """The documented best route for the data's kind (what ``anomaly fit`` fits when no detector is
    named): ``(detector, route)``, the route one of :data:`ROUTES`."""
    import backbones
    from ..detectors import Continuation, LatentDistance

    run = dict(device=device, seed=seed, verbose=verbose)
    if getattr(source, "kind", "image") == "series":
        return Continuation(**run), "series"
    x, _ = source.read([0])
    sample_dims = np.asarray(x).ndim - 1
    if sample_dims < 2:  # a table's columns are in their own units; an array's features share one (embeddings)
        return LatentDistance(scaling="feature" if getattr(source, "table", None) else "none", **run), "vectors"
    # patch scores: on the inspection set's dev half the pooled evidence of CNN features cost the
    # combined score 8 to 21 points (good parts from another place drift as a whole; BENCHMARKS.md)
    if backbones.weights.imagenet_cached("wide_resnet50_2"):
        return LatentDistance(backbone="wide_resnet50_2", weights="imagenet", layers=["layer2", "layer3"],
                              image_score="patch", **run), "images, ImageNet weights cached"
    return LatentDistance(backbone="resnet18", weights="random", layers=["layer1", "layer2"], pretrain="segment",
                          image_score="patch", **run), "images, offline"


#: folds of the cross-fitted calibration (5 extra fits)
CROSS_FOLDS = 5
#: a series' time blocks: its training steps scored out of fold join its held-out end (3 extra
#: fits; chosen over 5 on NAB's dev half, benchmarks/series_calibration.py)
SERIES_FOLDS = 3


def cross_fits(det: Detector, n_held: int, fpr: float) -> bool:
    """Whether ``fit`` calibrates by cross-fitting: when ``n_held`` held-out samples cannot certify
    ``fpr`` (a conformal threshold needs 1/fpr - 1 of them) and the samples are exchangeable
    (images, vectors; a series' calibration is its held-out end)."""
    return det.input_kind != "series" and (n_held + 1) * fpr < 1 - 1e-9


def cross_folds(n: int, spec: str) -> int:
    """The folds cross-fitting cuts ``n`` samples into: :data:`CROSS_FOLDS`, fewer for a small set
    (each fold needs 2 samples, so a handful of images can still be fitted and calibrated)."""
    folds = min(CROSS_FOLDS, n // 2)
    if folds < 2:
        raise AnomalyError(f"{spec}: cannot fit a detector and calibrate its threshold on {plural(n, 'sample')}; "
                           "give at least 4 normal samples")
    return folds


@contextlib.contextmanager
def _budget_shared(det: Detector, fits: int):
    """Within it, each of ``fits`` fits gets an equal share of ``det``'s ``max_time`` (the
    command's budget covers them all); the whole budget is put back after. The calibrating fits
    are the kept model on most of the data, so they train as long as it does: their out-of-fold
    scores are then what the kept model's would be."""
    budget = det.get_params().get("max_time")
    if budget is None:
        yield
        return
    det.set_params(max_time=max(1.0, budget / fits))
    try:
        yield
    finally:
        det.set_params(max_time=budget)


def fit_calibrated(det: Detector, source, spec: str, holdout: float, fpr: float, seed: int) -> tuple:
    """Fit ``det`` and calibrate its threshold at ``fpr``, as ``fit`` does: on a held-out
    ``holdout`` share, or, when that share cannot certify ``fpr``, by cross-fitting on all of
    ``source``. A series holds out its end; its training steps, scored out of
    :data:`SERIES_FOLDS` time blocks, calibrate with it (when they are long enough for blocks of
    more than the horizon). A ``max_time`` budget is shared by every fit. Returns ``(train,
    held, folds)`` (``folds`` None without cross-fitting)."""
    if cross_fits(det, round(len(source) * holdout), fpr):  # (the share split() holds out)
        folds = cross_folds(len(source), spec)  # every sample calibrates, out of fold
        with _budget_shared(det, folds + 1):
            det.fit(source)
            det.cross_calibrate(source, fpr=fpr, folds=folds, seed=seed)
        return source, source, folds
    train, held = source.split(holdout, seed=seed)
    blocks = det.input_kind == "series" and det.blocks_needed(SERIES_FOLDS) <= len(train)  # (before the fit: no season)
    with _budget_shared(det, SERIES_FOLDS + 1 if blocks else 1):
        try:
            det.fit(train)
        except AnomalyError as e:  # a series too short: say which part of it the fit read
            if det.input_kind != "series" or not str(e).startswith("data:"):
                raise
            raise AnomalyError(f"{e} (fit read the first {len(train):,} of its {len(source):,} steps; the last "
                               f"{len(held):,} calibrate: --holdout)") from None
        if det.input_kind != "series":
            det.calibrate(held, fpr=fpr)
        elif blocks and det.blocks_needed(SERIES_FOLDS) <= len(train):  # (the season found may leave too few steps)
            det.cross_calibrate(train, fpr=fpr, folds=SERIES_FOLDS, after=held)  # (labelled steps left out)
            return train, held, SERIES_FOLDS
        else:
            det.calibrate(held, fpr=fpr, context=train)
    return train, held, None


def _check_normal(spec: str, source) -> None:
    """Images labelled anomalous (an MVTec test folder, ``?synth=``) are not fitted or pretrained on
    as normal: one error that names the normal part of the data (a series' labels are the supervised detector's
    targets, and a forecaster learns through them)."""
    found = None if getattr(source, "kind", "image") == "series" else source.labelled_anomalous()
    if found is None:
        return
    (count, bad), n = found, len(source)
    normal = f"classes={','.join(map(str, source.normal_names))}"
    if rows_as_samples(spec):  # a table's rows, labelled by its label column
        raise AnomalyError(f"{spec}: {count} of {n} rows are labelled anomalous; fit learns "
                           f"what normal looks like: give {spec}&{normal}")
    if getattr(getattr(source, "x", None), "ndim", 0) == 2:  # vectors with 0/1 labels (an .npz's y)
        raise AnomalyError(f"{spec}: {count} of {n} samples are labelled anomalous; fit learns "
                           f"what normal looks like: give {spec}{'&' if '?' in spec else '?'}{normal}")
    raise AnomalyError(f"{spec}: {count} of {n} images are labelled anomalous (classes "
                       f"{', '.join(bad[:6])}); fit and pretrain learn what normal looks like: give "
                       f"{spec.split('?')[0]}?{normal}, or the category's train/ folder")


def normal_steps(source, det: Detector) -> np.ndarray | None:
    """The steps of a labelled series that calibrate a series detector's threshold
    (:meth:`~anomalib_lite.detectors.series.SeriesDetector.calibrating_steps`); None where no
    step is labelled anomalous. NAB's probationary periods hold no anomaly window, so their
    thresholds are unchanged."""
    labels = source.anomaly_labels() if getattr(source, "kind", None) == "series" else None
    if labels is None or not np.asarray(labels).any():
        return None
    return det.calibrating_steps(np.asarray(labels) > 0)


@_threads_for_load
@_data_named
def fit_and_save(det: Detector | None, spec: str, out, *, holdout: float | None = 0.1, fpr: float = 0.01,
                 seed: int = 0, sign=None, device: str = "auto", verbose: bool = False, **load_options) -> str:
    """Fit ``det`` on the data ``spec`` less a ``holdout`` share (series: the end), calibrate the
    threshold at ``fpr`` on that share (series: as the training part's continuation), save the
    bundle to ``out`` (signed with the key file ``sign``). ``holdout=None``: fit on everything,
    no calibration (the supervised detector). ``det=None``: the route :func:`choose_detector`
    picks for the data's kind (on ``device``), recorded in the bundle. Returns the summary line."""
    out = check_writable(out, "bundle")
    _check_outputs({"bundle": out}, spec, sign, det=det, data_dir=load_options.get("data_dir"))
    t = time.perf_counter()
    route, source = None, None
    if det is None:  # the data read once, with every option given, decides the route
        source = load_source(spec, None, **load_options)
        det, route = choose_detector(source, device=device, seed=seed, verbose=verbose)
    else:
        source = load_source(spec, det, **load_options)
    _check_normal(spec, source)
    hint = fit_hint(spec, source)
    if hint:
        warnings.warn(hint)
    if det.get_params().get("max_time") is not None:  # the budget covers reading the data too
        det.set_params(max_time=max(1.0, det.max_time - (time.perf_counter() - t)))
    if holdout is None:
        det.fit(source)
        train, held, folds = source, None, None
    else:
        train, held, folds = fit_calibrated(det, source, spec, holdout, fpr, seed)
    cross = folds is not None
    if route is not None:
        det.data_info_ = {**(det.data_info_ or {}), "route": f"{route}: {ROUTES[route]}"}
    det.save(out, sign=sign)  # under torchrun: rank 0 writes, the others return here
    if not distributed.is_main():
        return ""
    learned = det.summary()
    unit = "step" if det.input_kind == "series" else "sample"
    text = (f"chose the route for {route} ({ROUTES[route]}); " if route else "")
    text += f"fitted {type(det).__name__} on {plural(len(train), unit)} of {spec}" + (f" ({learned})" if learned else "")
    table = getattr(source, "table", None)  # a table's rows (?rows=samples), read as a series' steps are
    if table:
        columns, label, ident = table["columns"], table.get("label_column"), table.get("id_column")
    elif det.input_kind == "series":
        columns, label = getattr(source, "columns", None), getattr(source, "label_column", None)
        ident = getattr(source, "id_column", None)
    else:
        columns = label = ident = None
    guessed = getattr(source, "time_guessed", False) and getattr(source, "time_column", None)
    if columns:  # what became an input, and what did not
        text += f" (input columns: {', '.join(columns)}" + "".join(
            f"; {what}: column '{name}', not an input" for what, name in (("labels", label), ("row names", ident))
            if name) + (f"; time: column '{guessed}', found by its dates (--time-column names another)"
                        if guessed else "") + ")"
    if det.input_kind == "series" and route and len(columns or ()) > 1 and not getattr(source, "time_column", None) \
            and spec_path(spec):  # no time column and several: a table of features is as likely as a series
        text += (f" (no time column: its rows were read as the steps of one series; rows that are independent "
                 f"samples: {str(spec).split('?')[0]}?rows=samples)")
    normal = normal_steps(source, det) if det.input_kind == "series" and not det.capabilities.early_warning else None
    if normal is not None:  # what a forecaster does with labelled anomalies (the early warning learns from them)
        column = getattr(source, "label_column", None)
        text += (f"; {int(np.asarray(source.anomaly_labels()).astype(bool).sum()):,} steps labelled anomalous"
                 + (f" (column '{column}')" if column else "") + " not learned"
                 + (f", they and the {det.window} after each ({int((~normal).sum()):,} steps) left out of the threshold"
                    if held is not None else ""))
    if cross and det.input_kind == "series":
        text += (f"; calibrated on {plural(len(held), 'held-out step')} and the {len(train):,} training steps, "
                 f"each scored by one of {folds} fits without its block of them: threshold "
                 f"{det.threshold_:.4g} at fpr {fpr:g}")
    elif cross:
        text += (f"; calibrated by {folds}-fold cross-fitting on all {len(held)} samples (each scored by a "
                 f"model fitted without it): threshold {det.threshold_:.4g} at fpr {fpr:g}")
    elif held is not None:
        text += f"; calibrated on {plural(len(held), 'held-out ' + unit)}"
        if det.input_kind == "series":  # completed to one period of the season (calibrate)?
            extra = len(det.calibration_scores_) - len(det.holdout_scores_)
            text += f" and the {plural(extra, 'scored training step')} before them (the season's period: {det.season_})" if extra else ""
        text += f": threshold {det.threshold_:.4g} at fpr {fpr:g}"
    return text + f"; wrote {out} ({Path(out).stat().st_size / 1e6:.1f} MB)" + (" signed" if sign else "")


def _check_show(det: Detector, maps, top, report) -> None:
    if top is not None and maps is None:
        raise AnomalyError("--top applies with --maps DIR")
    if maps is not None:
        if det.input_kind == "series" or not has_score_map(det):
            vectors = det.input_kind != "series" and len(getattr(det, "input_shape_", ()) or ()) == 1
            raise AnomalyError("--maps: the bundle scores vectors, which have no pixels to map; drop --maps "
                               "(--report lists the top samples with their values)" if vectors else
                               f"--maps: {type(det).__name__} has no score_map (no per-pixel maps); drop --maps")
        check_writable(maps, "maps", folder=True)
    if report is not None:
        check_writable(report, "report")


def _show(ev: Evaluation, maps, top, report, files: list | None = None) -> list[str]:
    """Write the heatmaps and the report; what to print, and each file written into ``files``."""
    from ..evaluation.report import render_report
    from ..evaluation.visual import write_heatmaps

    written, files = [], [] if files is None else files
    with distributed.local():  # rank 0 alone (maps of the top samples are scored here)
        if maps is not None:
            pngs = write_heatmaps(maps, ev, top=top)
            files += pngs
            written.append(f"{plural(len(pngs), 'heatmap')} to {maps}")
        if report is not None:
            render_report(ev, report)
            files.append(report)
            written.append(f"report {report}")
    return written


def _write_rows(out, head, rows) -> None:
    """A CSV table to ``out`` (atomically), or to stdout for ``-``."""
    if str(out) == "-":
        w = csv.writer(sys.stdout)
        w.writerow(head)
        w.writerows(rows)
        sys.stdout.flush()
        return
    with atomic_output(out, "scores") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        w.writerows(rows)


def _context_note(det: Detector, asked: int) -> str:
    """What ``--context`` compared each image with, said where it is fewer than asked ("" without it)."""
    if not asked:
        return ""
    k = det.context_images
    return f"mutual scoring: {k} of the data's images as context, --context {asked}" + (", all it holds" if k < asked else "")


def _set_context(det: Detector, source, images: int, bundle) -> None:
    """``--context N``: score each image also against N images drawn from the data scored
    (:meth:`~anomalib_lite.LatentDistance.set_context`)."""
    if images:
        if not hasattr(det, "set_context"):
            raise AnomalyError(f"{bundle or type(det).__name__}: --context applies to latent bundles of images "
                               f"(mutual scoring), not to {type(det).__name__}")
        det.set_context(source, images=images, seed=getattr(det, "seed", 0))


@_threads_for_load
@_data_named
def score_and_write(det: Detector, spec: str, *, bundle=None, out=None, maps=None, top=None, report=None,
                    nab_results=None, learn: bool = False, verify=None, context: int = 0, **load_options) -> str:
    """Score the data ``spec`` and write what was asked: a scores CSV (``out``; ``-`` prints it),
    heatmaps, a report, NAB's results (series). One image and no outputs: its one-line verdict.
    ``context``: mutual scoring against that many images of the data (:func:`_set_context`).
    Returns what to print ("" when the scores went to stdout)."""
    _check_show(det, maps, top, report)
    _check_outputs({"scores": out, "report": report}, spec, bundle, folders=[maps, nab_results], verify=verify,
                   data_dir=load_options.get("data_dir"))
    if out is not None and str(out) != "-":
        check_writable(out, "scores")
    series = det.input_kind == "series"
    if not series and (learn or nab_results is not None):
        raise AnomalyError(f"{bundle or type(det).__name__}: --learn and --nab-results apply to series bundles")
    source = load_source(spec, det, **load_options)
    _set_context(det, source, context, bundle)
    if not series and out is None and maps is None and report is None:
        if len(source) != 1:
            raise AnomalyError("give -o FILE (or -o - for stdout), --maps or --report; one image alone prints its verdict")
        return format_verdict(assess(det, source), 0)
    if series and out is None and nab_results is None and report is None:
        raise AnomalyError("give -o FILE (or -o -), --nab-results DIR, --report FILE or --stream")
    if series:
        scores = series_io.score_series(det, source, learn=learn)
        ev = from_scores(det, source, scores)
    else:
        ev = assess(det, source)
        _warn_drift(det, ev)
    written = []
    if distributed.is_main():  # under torchrun: every rank holds all the scores, rank 0 writes
        with _all_or_none() as files:
            written = _write_outputs(det, ev, source, out, nab_results, files)
            written += _show(ev, maps, top, report, files)
    n = len(ev.scores)
    note = _context_note(det, context)
    text = (f"scored {plural(n, 'step' if series else 'sample')} of {spec}" + (f" ({note})" if note else "")
            + (f"; wrote {', '.join(written)}" if written else ""))
    if ev.flags is not None:
        text += f"; {int(np.sum(ev.flags))} flagged as anomalous"
    return "" if str(out) == "-" and not written else text + _figures_line(ev.figures)


def _warn_drift(det: Detector, ev: Evaluation) -> None:
    """One warning when the scored images or vectors no longer look like the calibration data
    (:func:`~anomalib_lite.scoring.thresholds.drift`): the threshold's promise is not guaranteed
    there. Not for series, whose neighbouring steps are not exchangeable."""
    d = drift(ev.p_values) if ev.p_values is not None else None
    if d is not None:
        fpr = getattr(det, "fpr_", None)
        rate = f"its {100 * fpr:g} % false-positive rate" if fpr else "its false-positive rate"
        hint = ("; or, for a batch of images that share the drift, such as a new lot, score with --context 60"
                if getattr(det, "context_images", None) == 0 and len(getattr(det, "input_shape_", None) or ()) == 3
                else "")
        warnings.warn(f"{d['low']:,} of {d['n']:,} samples score above three quarters of the calibration scores "
                      f"(a quarter is expected of data like it): most are anomalous, or the data drifted since "
                      f"calibration and {rate} is no longer guaranteed for it (fit or calibrate on normal samples "
                      f"of this data{hint})", stacklevel=2)


def _nab_alarms(source, unit: np.ndarray) -> str:
    """What the NAB score's alarms (>= its alarm level) find, when the series has anomaly windows:
    NAB's scorer picks its own threshold, the detector's calibrated flags are another rule."""
    windows = getattr(source, "windows", None)
    if not windows:
        return ""
    m = metrics.window_metrics(unit >= SurpriseScore().alarm_level, windows, getattr(source, "references", None))
    return f" (its alarms: {m['detected']} of {m['windows']} anomaly windows, {m['false_alarms']} outside)"


@contextlib.contextmanager
def _all_or_none():
    """A list for the outputs a run writes, each added once finished; when a later one fails,
    those already written are removed, so a run leaves all its outputs or none."""
    files: list = []
    try:
        yield files
    except BaseException:
        for path in files:
            Path(path).unlink(missing_ok=True)
        raise


def _write_outputs(det, ev: Evaluation, source, out, nab_results, files: list) -> list[str]:
    """Write the scores (and NAB's results); what to print, and each file written into ``files``."""
    written = []
    if ev.kind == "series":
        pvals = det.p_values(ev.scores) if det.calibration_scores_ is not None else None
        unit = nab.results_scores(det, ev.scores, values=source.values, step_seconds=getattr(source, "step_seconds", None)) if nab_results is not None else None  # before writing anything
        if out is not None:
            head, rows = series_io.score_table(source, ev.scores, pvals, ev.flags, source.anomaly_labels())
            _write_rows(out, head, rows)
            files += [out] if str(out) != "-" else []
        if nab_results is not None:
            path = nab.write_results(nab_results, source, unit, type(det).__name__.lower())
            files.append(path)
            written.append(f"NAB results {path}" + _nab_alarms(source, unit))
    elif out is not None:
        _write_rows(out, *score_rows(ev))
        files += [out] if str(out) != "-" else []
    if out is not None and str(out) != "-":
        written.insert(0, str(out))
    return written


def _figures_line(m: dict) -> str:
    text = ""
    if "roc_auc" in m:
        text += f"\nROC-AUC {100 * m['roc_auc']:.2f}  average precision {100 * m['average_precision']:.2f}"
    if "pixel_roc_auc" in m:
        text += f"  pixel ROC-AUC {100 * m['pixel_roc_auc']:.2f}  PRO {100 * m['pro']:.2f}"
    if "early_warning" in m:
        e = m["early_warning"]
        text += (f"\nonsets warned {100 * e['warned']:.0f} % (mean lead {e['mean_lead']:.1f} steps); "
                 f"false alarms {e['false_alarms_per_1k']:.1f} per 1,000 steps")
    if "windows" in m:
        w = m["windows"]
        text += (f"\nanomaly windows detected {w['detected']}/{w['windows']}; false alarms "
                 f"{w['false_alarms_per_1k']:.2f} per 1,000 steps outside windows")
    if "events" in m:
        w = m["events"]
        text += (f"\nlabelled anomalies detected {w['detected']}/{w['windows']}; false alarms "
                 f"{w['false_alarms_per_1k']:.2f} per 1,000 steps outside them and the {w['after']} steps after each")
    return text


def check_labels(det: Detector, source) -> None:
    """``evaluate`` needs labels of both kinds; say so before any scoring."""
    from ..data.sources import NORMAL_NAMES, ImageFolderSource

    image = getattr(source, "kind", "image") != "series"
    labels = source.anomaly_labels((det.data_info_ or {}).get("classes")) if image else source.anomaly_labels()
    n_anomalous = -1 if labels is None else int(np.sum(np.asarray(labels) > 0))
    names = source.class_names if isinstance(source, ImageFolderSource) else None
    if names and (labels is None or n_anomalous == len(labels)):  # a folder whose normal class has another name
        raise AnomalyError(f"{source.spec}: no sub-folder is named as normal data ({', '.join(NORMAL_NAMES)}) nor as "
                           f"the classes the bundle was fitted on; sub-folders found: {', '.join(map(str, names[:8]))}"
                           f"; rename the normal one 'good'")
    if labels is None:
        raise AnomalyError(f"{source.spec}: no labels; {NO_LABELS}")
    if not 0 < n_anomalous < len(labels):
        kind = "anomalous" if n_anomalous else "normal"
        raise AnomalyError(f"{source.spec}: every label says {kind}; {NO_LABELS}")


@_threads_for_load
@_data_named
def evaluate_and_write(det: Detector, spec: str, *, bundle=None, json_out=None, maps=None, top=None, report=None,
                       verify=None, context: int = 0, **load_options) -> tuple[dict, str]:
    """Figures of ``det`` on labelled data, written as asked; returns (figures, text to print).
    Data without labels: ``figures["note"]`` says so (what could be written is written)."""
    _check_show(det, maps, top, report)
    _check_outputs({"figures": json_out, "report": report}, spec, bundle, folders=[maps], verify=verify,
                   data_dir=load_options.get("data_dir"))
    if json_out is not None:
        check_writable(json_out, "figures")
    source = load_source(spec, det, **load_options)
    check_labels(det, source)  # before scoring: figures need both classes
    _set_context(det, source, context, bundle)
    ev = assess(det, source)
    if not distributed.is_main():  # under torchrun: rank 0 writes
        return ev.figures, ""
    with _all_or_none() as files:
        written = _show(ev, maps, top, report, files)
        if json_out is not None:
            with atomic_output(json_out, "figures") as tmp:
                tmp.write_text(json.dumps(ev.figures, indent=1, default=float) + "\n")
            written.append(f"figures {json_out}")
    note = _context_note(det, context)
    return ev.figures, (format_figures(ev.figures) + (f"\n{note}" if note else "")
                        + (f"\nwrote {', '.join(written)}" if written else ""))


@_threads_for_load
@_data_named
def stream(det: Detector, spec: str, *, learn: bool = False, columns=None, time_column=None, label_column=None,
           nan: str = "reject", outputs=(), counts: dict | None = None, context: int = 0) -> tuple[int, int]:
    """``anomaly score --stream``: CSV lines from stdin (``-``) or a file, scored as they arrive;
    returns (lines scored, bad lines skipped); ``counts`` gets the skipped lines by kind. Bytes
    that are not UTF-8 make their line a bad line (reported), not the end of the stream.
    ``outputs``: file outputs asked for as well, which a stream cannot write (one error);
    ``context``: ``--context``, which a stream has no batch for (one error)."""
    if det.input_kind != "series":
        raise AnomalyError(f"--stream: {type(det).__name__} scores images; --stream reads series lines")
    if context:
        raise AnomalyError("--context draws images from the data scored; a stream (--stream) has no batch to draw from")
    if any(outputs):
        raise AnomalyError("--stream prints to stdout; drop -o, --nab-results, --maps and --report")
    if "?" in str(spec) and not Path(str(spec)).exists():  # (a file may be named so)
        raise AnomalyError(f"{spec}: --stream reads each line as it comes, with no ?options (start, stop, grid, ...); "
                           "drop them, or score the series without --stream")
    if glob.has_magic(str(spec)) and not Path(str(spec)).exists():
        raise AnomalyError(f"{spec}: --stream reads one file (or - for stdin) line by line; for the files a glob "
                           "matches, score them without --stream, or pipe them: tail -q -n +2 FILES | anomaly score ... "
                           "--data - --stream (a header line first)")
    fitted = det.data_info_ or {}
    options = (columns or fitted.get("columns"), time_column or fitted.get("time_column"), label_column, nan, learn)
    if str(spec) == "-":
        raw = getattr(sys.stdin, "buffer", None)
        fh = sys.stdin if raw is None else io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        try:
            return series_io.stream_lines(det, fh, "stdin", *options, counts=counts)
        finally:
            if raw is not None:
                fh.detach()  # sys.stdin keeps its buffer
    try:
        fh = open(spec, newline="", encoding="utf-8", errors="replace")
    except OSError as e:
        raise AnomalyError(f"{spec}: cannot read ({e.strerror})") from None
    with fh:
        return series_io.stream_lines(det, fh, str(spec), *options, counts=counts)


def export(bundle, out, *, verify=None) -> str:
    """``anomaly export``: the bundle ``bundle`` as an ONNX model at ``out`` (checked before the
    bundle is read; written atomically). Returns the summary line."""
    from ..bundles.bundle import load
    from ..runtime.export import _require_onnx, export_onnx, metadata

    _require_onnx()
    out = check_writable(out, "ONNX model")
    _check_outputs({"ONNX model": out}, None, bundle, verify=verify)
    det = load(bundle, device="cpu", verify=verify)
    export_onnx(det, out, bundle=bundle)
    meta = metadata(det, bundle)
    shape = "x".join(str(s) for s in meta["input"]["shape"])
    threshold = "none (not calibrated)" if det.threshold_ is None else f"{det.threshold_:.6g}"
    return (f"exported {meta['detector']} from {bundle} to {out} ({Path(out).stat().st_size / 1e6:.1f} MB): "
            + (f"input vectors {shape} float32 (the values as fit read them)" if len(meta["input"]["shape"]) == 2
               else f"input images {shape} float32 in [0, 1]")
            + f"; outputs {', '.join(meta['outputs'])}; threshold {threshold}")


@_threads_for_load
def pretrain_and_save(spec: str, out, *, data_dir=None, download: bool = False, **options) -> str:
    """``anomaly pretrain``: :func:`anomalib_lite.training.pretrain.pretrain` on a data spec's images,
    weights written to ``out`` (never over the data). Returns the summary line."""
    from ..training.loop import describe
    from ..training.pretrain import JUDGED, pretrain

    _check_outputs({"weights": out}, spec, *options.values(), data_dir=data_dir)
    t = time.perf_counter()
    source = load_source(spec, data_dir=data_dir, download=download)
    _check_normal(spec, source)
    if options.get("max_time") is not None:  # the budget covers reading the data too
        options["max_time"] = max(1.0, options["max_time"] - (time.perf_counter() - t))
    res = pretrain(data=source, out=out, **options)
    h, asked = res.history, res.epochs
    kept = res.kept_loss()
    line = (f"pretrained {options.get('backbone')} ({options.get('task')}) on {plural(len(source), 'image')} of {spec}: "
            f"{describe(h, asked, res.patience, 'image')}"
            + (f" (chance {res.chance:.3f})" if res.chance is not None else "") + f" in {h.seconds:.0f} s; wrote {out}")
    if h.stopped == "early_stopping" and res.held_out < JUDGED:
        warnings.warn(f"pretrain: early stopping judged epochs by {plural(res.held_out, 'held-out image')}, too few to "
                      f"tell a better epoch from noise, and kept epoch {res.kept_epoch + 1} of the {asked} asked; "
                      "--patience none trains every epoch (within --max-time) and keeps the last")
    elif res.learned() is False:
        warnings.warn(f"pretrain: the kept weights do no better than chance at the pretext task (held-out loss "
                      f"{kept:.3f}, chance {res.chance:.3f}): they are hardly changed from the start; train longer "
                      "(--epochs, --max-time, --patience none), on more images, or keep --weights as they were")
    return line


def augment_preview(config, spec: str, out, *, backend: str = "torchvision", n: int = 8, synth: bool = False,
                    variants: int = 3, data_dir=None, download: bool = False) -> str:
    """``anomaly augment``: a PNG grid of ``n`` images of ``spec``, augmented ``variants`` times by
    the config (and its synthesised anomalies with masks when ``synth``). Returns the summary line."""
    import augment

    from ..data.batches import iter_batches

    _check_outputs({"preview": out}, spec, config, data_dir=data_dir)
    check_writable(out, "preview")
    pipeline = augment.Pipeline.from_config(config, backend=backend)
    batch = next(iter_batches(load_source(spec, data_dir=data_dir, download=download), batch_size=n)).x
    grid = augment.preview_grid(batch, pipeline, n=n, synth=synth, variants=variants)
    with atomic_output(out, "preview") as tmp, open(tmp, "wb") as fh:
        augment.save_png(grid, fh)  # into the temporary file (no second temporary file of its own)
    return f"wrote {out} ({grid.shape[1]}x{grid.shape[0]} px, {len(batch)} images of {spec})"


def backbones_table() -> str:
    """``anomaly backbones``: each backbone's layers (* = default) and whether ImageNet weights
    are in the local cache."""
    import backbones

    rows = [("name", "layers (* = default)", "imagenet weights")]
    for b in backbones.list_backbones():
        cached = backbones.imagenet_cached(b.name)
        layers = ",".join(f"{n}*" if n in b.default_layers else n for n in b.layers)
        rows.append((b.name, layers, "n/a" if cached is None else "cached" if cached else "not cached"))
    w1, w2 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in rows)


@_threads_for_load
def demo(digit: int = 7, *, data_dir=None, download: bool = True, device: str = "auto", seed: int = 0,
         batch_size: int | None = None, verbose: bool = False) -> str:
    """MNIST outliers: fit on one digit's training images, score all 10,000 test digits."""
    from ..detectors import LatentDistance

    train = load_data(f"mnist:train?classes={digit}", data_dir=data_dir, download=download)
    test = load_data("mnist:test", data_dir=data_dir, download=download)
    det = LatentDistance(image_score="pooled", maps=False, device=device, seed=seed, verbose=verbose)
    if batch_size:
        det.set_params(batch_size=batch_size)
    fit_part, _, _ = fit_calibrated(det, train, train.spec, 0.1, 0.01, seed)  # (as fit calibrates)
    m = metrics.image_metrics(test.anomaly_labels([str(digit)]), det.decision_function(test), det.threshold_)
    return (f"MNIST outliers, digit {digit} normal: {det!r} on {len(fit_part)} training digits\n"
            f"ROC-AUC {100 * m['roc_auc']:.2f}  average precision {100 * m['average_precision']:.2f}  "
            f"at the calibrated threshold (fpr 0.01): recall {100 * m['recall']:.1f}, "
            f"false positive rate {100 * m['fpr']:.2f}")
