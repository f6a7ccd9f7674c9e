"""The `anomaly` command: thin over the Python API (parse, call, print).

Exit codes: 0 ok; 2 bad usage or bad input (one line on stderr saying what and where); 1 an
unexpected failure (a bug: the traceback is shown).
"""
from __future__ import annotations

import csv
import json
import sys

import click

import anomalib_lite as al
import augment
import backbones
from anomalib_lite import nab
from anomalib_lite.io import atomic_output, check_writable

USER_ERRORS: tuple[type[Exception], ...] = (al.AnomalyError, backbones.BackboneError, augment.AugmentError)


class _Group(click.Group):
    """A group that turns user errors from any sub-command into one line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            click.echo(f"anomaly: error: {' '.join(str(e).split())}", err=True)
            ctx.exit(2)


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        click.echo(msg)


def _threads() -> None:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))


# ---------------------------------------------------------------- shared options
def data_options(f):
    f = click.option("--download", is_flag=True, help="Allow downloading public data sets (MNIST).")(f)
    f = click.option(
        "--data-dir", type=click.Path(file_okay=False), default=None,
        help="Where data sets live (default: $ANOMALY_DATA_DIR, else the user cache).",
    )(f)
    return f


def run_options(f):
    f = click.option("--quiet", "-q", is_flag=True, help="No progress bars or summaries.")(f)
    f = click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Samples per step (default: the detector's).")(f)
    f = click.option("--seed", type=int, default=0, show_default=True)(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")(f)
    return f


def series_options(f):
    """How to read a CSV series: value columns, time column, NaN gaps."""
    f = click.option(
        "--nan", "nan_policy", type=click.Choice(["reject", "interpolate"]), default="reject", show_default=True,
        help="NaN gaps (empty cells): reject them, or fill them by linear interpolation "
             "(with --stream: the last value, the next one is not known yet).",
    )(f)
    f = click.option("--time-column", default=None, help="CSV time column (default: one named timestamp/time/date).")(f)
    f = click.option(
        "--column", "columns", multiple=True,
        help="CSV value column; repeat or comma-separate for several (default: all but time and label).",
    )(f)
    return f


def _columns(columns) -> list[str] | None:
    names = [c.strip() for group in columns for c in group.split(",") if c.strip()]
    return names or None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(al.__version__, prog_name="anomaly")
def cli():
    """Find anomalies in images and time series.

    \b
    Example:
      anomaly demo
      anomaly fit latent --data "mnist:train?classes=7" -o digit7.anomaly
      anomaly score digit7.anomaly --data mnist:test -o scores.csv
    """


# ---------------------------------------------------------------- fit
@cli.group(cls=_Group)
def fit():
    """Fit a detector on normal data and save it as a one-file bundle.

    A share of the normal data (--holdout) is kept aside to calibrate the threshold at the
    target false positive rate (--fpr).

    \b
    Example:
      anomaly fit latent --data "mnist:train?classes=7" -o digit7.anomaly
      anomaly fit continuation --data series.csv --column value -o m.anomaly
    """


def calibration_options(f):
    """--holdout and --fpr: the share of normal data kept to calibrate the threshold, and its rate."""
    f = click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True)(f)
    return click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True)(f)


def _fit_and_save(det, data_spec, out, data_dir, download, holdout, fpr, seed, quiet, **load_options):
    out = check_writable(out, "bundle")
    source = al.load_data(data_spec, data_dir=data_dir, download=download, **load_options)
    train, held = source.split(holdout, seed=seed)
    det.fit(train)
    # a series' held-out end is scored as the continuation of the training steps before it
    det.calibrate(held, fpr=fpr, **({"context": train} if det.input_kind == "series" else {}))
    det.save(out)
    size = out.stat().st_size / 1e6
    learned = det.summary()
    _say(
        quiet,
        f"fitted {type(det).__name__} on {len(train)} samples of {data_spec}"
        + (f" ({learned})" if learned else "") + f"; calibrated on "
        f"{len(held)} held-out samples: threshold {det.threshold_:.4g} at fpr {fpr:g}; "
        f"wrote {out} ({size:.1f} MB)",
    )
    return det


@fit.command("latent")
@click.option("--data", "data_spec", required=True, help='Normal data, e.g. "mnist:train?classes=7".')
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Bundle to write (.anomaly).")
@click.option("--method", type=click.Choice(["knn", "gaussian"]), default="knn", show_default=True)
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--image-score", type=click.Choice(["patch", "pooled"]), default="patch", show_default=True,
              help="patch: the largest patch distance (PatchCore; local defects); pooled: distance of the "
                   "globally averaged features (whole-image outliers, e.g. another digit).")
@click.option("--coreset-ratio", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True,
              help="Share of the patch features seen that the bank keeps.")
@click.option("--memory-size", type=click.IntRange(min=1), default=10000, show_default=True,
              help="Cap on the rows of each memory bank.")
@click.option("--reweight", type=click.IntRange(min=0), default=0, show_default=True,
              help="PatchCore's re-weighting of image scores over this many bank neighbours (0 = off).")
@click.option("--coreset", type=click.Choice(["greedy", "random"]), default="greedy", show_default=True)
@click.option("--backbone", default=None, help="Feature extractor (see `anomaly backbones`); default: raw pixels.")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, random, or a weights file.")
@click.option("--layers", default=None, help="Comma-separated backbone layers (default: the backbone's).")
@click.option("--image-size", type=click.IntRange(min=8), default=None, help="Resize for the backbone.")
@click.option("--maps/--no-maps", default=True, show_default=True, help="Learn patch features for heatmaps.")
@click.option("--normalize", is_flag=True, help="L2-normalise each backbone layer's pooled features before joining them.")
@click.option("--search", type=click.Choice(["torch", "faiss"]), default="torch", show_default=True)
@calibration_options
@data_options
@run_options
def fit_latent(data_spec, out, method, k, image_score, coreset_ratio, memory_size, reweight, coreset, backbone,
               weights, layers, image_size, maps, normalize, search, holdout, fpr, data_dir, download, device,
               seed, batch_size, quiet):
    """kNN or Mahalanobis distance in a feature space (raw pixels or a CNN backbone).

    \b
    Example:
      anomaly fit latent --data brick/train --backbone resnet18 --weights random -o brick.anomaly
      anomaly fit latent --data "mnist:train?classes=7" --image-score pooled -o digit7.anomaly
    """
    det = al.LatentDistance(
        method=method, k=k, image_score=image_score, coreset_ratio=coreset_ratio, memory_size=memory_size,
        reweight=reweight, coreset=coreset, backbone=backbone,
        weights=weights, layers=layers.split(",") if layers else None, image_size=image_size,
        maps=maps, normalize=normalize, search=search, device=device, seed=seed, verbose=not quiet,
    )
    if batch_size:
        det.set_params(batch_size=batch_size)
    _fit_and_save(det, data_spec, out, data_dir, download, holdout, fpr, seed, quiet)


def train_options(f):
    """Options shared by the detectors that train a network."""
    f = click.option("--max-time", type=click.FloatRange(min=1), default=None, help="Training time budget in seconds.")(f)
    f = click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)(f)
    f = click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the detector's).")(f)
    f = click.option("--augment", "augment_cfg", type=click.Path(dir_okay=False), default=None,
                     help="Augmentation config (YAML/JSON) applied to training batches.")(f)
    return f


def _image_model_options(f):
    f = click.option("--image-size", type=click.IntRange(min=8), default=None, help="Resize for the backbone.")(f)
    f = click.option("--layers", default=None, help="Comma-separated backbone layers (default: the backbone's).")(f)
    return f


def _train_params(epochs, lr, max_time, augment_cfg, batch_size) -> dict:
    params = {"lr": lr, "max_time": max_time, "augment": augment_cfg}
    if epochs:
        params["epochs"] = epochs
    if batch_size:
        params["batch_size"] = batch_size
    return params


def workers_option(f):
    """--workers: DataLoader processes decoding lazy data (image folders) while training."""
    return click.option(
        "--workers", type=click.IntRange(min=0), default=2, show_default=True,
        help="Processes that decode images while training (0: in the main process; in-memory data never uses them).",
    )(f)


@fit.command("reconstruction")
@click.option("--data", "data_spec", required=True, help='Normal images, e.g. "mnist:train?classes=7".')
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Bundle to write (.anomaly).")
@click.option("--latent-dim", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--width", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--metric", type=click.Choice(["mse", "ssim", "l1"]), default="mse", show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True)
@click.option("--mc-samples", type=click.IntRange(min=1), default=1, show_default=True, help="MC-dropout passes.")
@click.option("--backbone", default=None, help="Reconstruct this backbone's features instead of pixels.")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, random, or a weights file.")
@_image_model_options
@train_options
@workers_option
@calibration_options
@data_options
@run_options
def fit_reconstruction(data_spec, out, latent_dim, width, metric, dropout, mc_samples, backbone, weights,
                       layers, image_size, augment_cfg, epochs, lr, max_time, workers, holdout, fpr, data_dir,
                       download, device, seed, batch_size, quiet):
    """Convolutional autoencoder; score = reconstruction error, maps = per-pixel error.

    \b
    Example:
      anomaly fit reconstruction --data "mnist:train?classes=7" --augment aug.yaml -o ae7.anomaly
    """
    det = al.Reconstruction(
        latent_dim=latent_dim, width=width, metric=metric, dropout=dropout, mc_samples=mc_samples,
        backbone=backbone, weights=weights, layers=layers.split(",") if layers else None,
        image_size=image_size, device=device, seed=seed, verbose=not quiet, num_workers=workers,
        **_train_params(epochs, lr, max_time, augment_cfg, batch_size),
    )
    _fit_and_save(det, data_spec, out, data_dir, download, holdout, fpr, seed, quiet)


@fit.command("synthetic")
@click.option("--data", "data_spec", required=True, help='Normal images, e.g. "mnist:train?classes=7".')
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Bundle to write (.anomaly).")
@click.option("--backbone", default="resnet18", show_default=True)
@click.option("--weights", default="random", show_default=True, help="imagenet, random, or a weights file (e.g. from `anomaly pretrain`).")
@click.option("--synth-ops", default="cutpaste,scar,stroke_blob,local_elastic,perlin", show_default=True,
              help="Comma-separated augment.synth ops.")
@click.option("--severity", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True)
@click.option("--scoring", type=click.Choice(["gaussian", "probability"]), default="gaussian", show_default=True)
@_image_model_options
@train_options
@workers_option
@calibration_options
@data_options
@run_options
def fit_synthetic(data_spec, out, backbone, weights, synth_ops, severity, scoring, layers, image_size,
                  augment_cfg, epochs, lr, max_time, workers, holdout, fpr, data_dir, download, device, seed,
                  batch_size, quiet):
    """Classifier of normal images vs synthesised subtle anomalies (CutPaste-style).

    \b
    Example:
      anomaly fit synthetic --data "mnist:train?classes=7" --image-size 32 -o ood7.anomaly
    """
    det = al.SyntheticOOD(
        backbone=backbone, weights=weights, synth_ops=[o.strip() for o in synth_ops.split(",") if o.strip()],
        severity=severity, scoring=scoring, layers=layers.split(",") if layers else None,
        image_size=image_size, device=device, seed=seed, verbose=not quiet, num_workers=workers,
        **_train_params(epochs, lr, max_time, augment_cfg, batch_size),
    )
    _fit_and_save(det, data_spec, out, data_dir, download, holdout, fpr, seed, quiet)


@cli.command("pretrain")
@click.option("--backbone", required=True, help="Backbone to pretrain (see `anomaly backbones`).")
@click.option("--data", "data_spec", required=True, help='Normal images, e.g. "mnist:train?classes=3".')
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Weights file to write (.safetensors).")
@click.option("--task", type=click.Choice(["transforms", "synthetic", "segment"]), default="transforms", show_default=True,
              help="transforms: which of --transforms was applied; synthetic: normal vs synthesised defects; segment: where the synthesised defects are, patch by patch (textures, local defects).")
@click.option("--transforms", "transform_set", type=click.Choice(["rot4", "rot4_flip", "geom"]), default="geom",
              show_default=True, help="Transformation set for --task transforms (geom: 72 flips x shifts x rotations).")
@click.option("--weights", default="random", show_default=True, help="Starting weights: random, imagenet or a file.")
@_image_model_options
@train_options
@workers_option
@data_options
@run_options
def pretrain_cmd(backbone, data_spec, out, task, transform_set, weights, layers, image_size, augment_cfg,
                 epochs, lr, max_time, workers, data_dir, download, device, seed, batch_size, quiet):
    """Self-supervised pretraining of a backbone on your own normal images.

    The weights file works anywhere --weights PATH does.

    \b
    Example:
      anomaly pretrain --backbone resnet18 --data "mnist:train?classes=3" --image-size 32 -o r18-digit3.safetensors
      anomaly fit latent --data "mnist:train?classes=3" --backbone resnet18 --image-size 32 --weights r18-digit3.safetensors -o d3.anomaly
    """
    from anomalib_lite.pretrain import pretrain

    out = check_writable(out, "weights")
    source = al.load_data(data_spec, data_dir=data_dir, download=download)
    res = pretrain(
        backbone, source, task=task, transforms=transform_set, weights=weights,
        layers=layers.split(",") if layers else None, image_size=image_size, augment=augment_cfg,
        epochs=epochs or 10, lr=lr, max_time=max_time, batch_size=batch_size or 128, num_workers=workers,
        device=device, seed=seed, out=out, verbose=not quiet,
    )
    h = res.history
    _say(quiet, f"pretrained {backbone} ({task}) on {len(source)} images of {data_spec}: {len(h.train_loss)} epochs, "
                f"loss {h.train_loss[0]:.3f} -> {h.train_loss[-1]:.3f} in {h.seconds:.0f} s; wrote {out}")


def _series(data_spec, data_dir, download, columns, time_column, label_column, nan_policy):
    """Load a time series spec (CSV, nab:, -) with the CSV reading options."""
    source = al.load_data(data_spec, data_dir=data_dir, download=download, columns=_columns(columns),
                          time_column=time_column, label_column=label_column, nan=nan_policy)
    if getattr(source, "kind", None) != "series":
        raise al.AnomalyError(f"{data_spec}: not a time series; give a .csv file, nab:CATEGORY/FILE.csv or -")
    return source


def _default(cls, name):
    """A detector parameter's default, from its signature (never copied into an option)."""
    import inspect

    return inspect.signature(cls).parameters[name].default


def _season(value):
    return value if value == "auto" else click.IntRange(min=0).convert(value, None, None)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="Torch intra-op threads (default: 1 for these small networks on the CPU).")(f)


@fit.command("continuation")
@click.option("--data", "data_spec", required=True, help="Normal series: a .csv file, nab:realKnownCause/nyc_taxi.csv, or -.")
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Bundle to write (.anomaly).")
@click.option("--model", type=click.Choice(["lstm", "tcn"]), default=_default(al.Continuation, "model"), show_default=True)
@click.option("--window", type=click.IntRange(min=2), default=_default(al.Continuation, "window"), show_default=True,
              help="Past steps read per forecast (and steps without a score at a stream's start).")
@click.option("--horizon", type=click.IntRange(min=1), default=_default(al.Continuation, "horizon"), show_default=True,
              help="Steps predicted.")
@click.option("--hidden", type=click.IntRange(min=1), default=_default(al.Continuation, "hidden"), show_default=True)
@click.option("--num-layers", type=click.IntRange(min=1), default=_default(al.Continuation, "num_layers"),
              show_default=True, help="LSTM layers.")
@click.option("--season", type=_season, metavar="auto|N", default=_default(al.Continuation, "season"), show_default=True,
              help="Seasonal period in steps (e.g. 288: daily at 5-minute steps), auto (detected), or 0 (none).")
@click.option("--epochs", type=click.IntRange(min=1), default=_default(al.Continuation, "epochs"), show_default=True)
@click.option("--smoothing", type=click.FloatRange(min=0), default=_default(al.Continuation, "smoothing"), show_default=True,
              help="EWMA span of the score (1 = none).")
@click.option("--threshold", type=click.Choice(["calibrated", "moving", "quantile", "dynamic"]), default="calibrated",
              show_default=True, help="calibrated (--fpr on the held-out tail), moving (mean + k std), quantile, dynamic (Telemanom).")
@click.option("--threshold-k", type=click.FloatRange(min=0, min_open=True), default=_default(al.Continuation, "threshold_k"),
              show_default=True)
@click.option("--threshold-window", type=click.IntRange(min=2), default=_default(al.Continuation, "threshold_window"),
              show_default=True)
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True,
              help="Share of the series, at its end, kept to calibrate the threshold (scored as the training part's continuation).")
@click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True)
@threads_option
@series_options
@data_options
@run_options
def fit_continuation(data_spec, out, model, window, horizon, hidden, num_layers, season, epochs, smoothing, threshold,
                     threshold_k, threshold_window, holdout, fpr, threads, columns, time_column, nan_policy, data_dir,
                     download, device, seed, batch_size, quiet):
    """Forecaster (temporal CNN or LSTM) whose prediction error is the anomaly score.

    The series is split by time: the first part trains, the last --holdout calibrates.

    \b
    Example:
      anomaly fit continuation --data series.csv --column value -o m.anomaly
      anomaly fit continuation --data "nab:realKnownCause/nyc_taxi.csv?stop=0.15" -o taxi.anomaly
    """
    det = al.Continuation(
        model=model, window=window, horizon=horizon, hidden=hidden, num_layers=num_layers, season=season,
        epochs=epochs, smoothing=smoothing, threshold=threshold, threshold_k=threshold_k,
        threshold_window=threshold_window, device=device, seed=seed, verbose=not quiet, threads=threads,
    )
    if batch_size:
        det.set_params(batch_size=batch_size)
    _fit_and_save(det, data_spec, out, data_dir, download, holdout, fpr, seed, quiet,
                  columns=_columns(columns), time_column=time_column, nan=nan_policy)


@fit.command("rnn")
@click.option("--data", "data_spec", required=True, help="Labelled series: a .csv file with --label-column, or nab:...")
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Bundle to write (.anomaly).")
@click.option("--label-column", default=None, help="CSV column of 0/1 labels (1 = anomalous step).")
@click.option("--horizon", type=click.IntRange(min=0), default=_default(al.SupervisedRNN, "horizon"), show_default=True,
              help="Warn of anomalies starting within this many steps (0 = detect at onset).")
@click.option("--window", type=click.IntRange(min=1), default=_default(al.SupervisedRNN, "window"), show_default=True)
@click.option("--cell", type=click.Choice(["lstm", "gru"]), default=_default(al.SupervisedRNN, "cell"), show_default=True)
@click.option("--hidden", type=click.IntRange(min=1), default=_default(al.SupervisedRNN, "hidden"), show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=_default(al.SupervisedRNN, "epochs"), show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=_default(al.SupervisedRNN, "val_fraction"),
              show_default=True, help="Last share of the training crops held out for early stopping (by time).")
@threads_option
@series_options
@data_options
@run_options
def fit_rnn(data_spec, out, label_column, horizon, window, cell, hidden, epochs, val_fraction, threads, columns,
            time_column, nan_policy, data_dir, download, device, seed, batch_size, quiet):
    """Supervised early warning: the probability that an anomaly starts within --horizon steps.

    \b
    Example:
      anomaly fit rnn --data labelled.csv --label-column anomaly --horizon 20 -o warn.anomaly
    """
    out = check_writable(out, "bundle")
    source = _series(data_spec, data_dir, download, columns, time_column, label_column, nan_policy)
    if source.anomaly_labels() is None:
        raise al.AnomalyError(f"{data_spec}: no labels; name the 0/1 column with --label-column")
    det = al.SupervisedRNN(window=window, horizon=horizon, cell=cell, hidden=hidden, epochs=epochs,
                           val_fraction=val_fraction, device=device, seed=seed, verbose=not quiet, threads=threads)
    if batch_size:
        det.set_params(batch_size=batch_size)
    det.fit(source).save(out)
    onsets = len(al.metrics.onsets(source.anomaly_labels()))
    _say(quiet, f"fitted SupervisedRNN on {len(source)} steps of {data_spec} ({onsets} anomaly onsets, "
                f"horizon {horizon}); wrote {out}")


# ---------------------------------------------------------------- score
def show_options(f):
    """What to show a person: heatmaps and the HTML report."""
    f = click.option("--report", type=click.Path(dir_okay=False), default=None,
                     help="Write a one-file HTML report (ROC, histograms, top anomalies with heatmaps).")(f)
    f = click.option("--top", type=click.IntRange(min=1), default=None,
                     help="With --maps: only the K highest-scoring samples.")(f)
    f = click.option("--maps", "maps_dir", type=click.Path(file_okay=False), default=None,
                     help="Write a heatmap PNG per sample (image detectors with score_map) to this folder.")(f)
    return f


def _check_show(det, maps_dir, top, report) -> tuple:
    """Check the show options before any work: a detector without maps, unwritable paths."""
    from anomalib_lite.evaluation import has_score_map

    if top is not None and maps_dir is None:
        raise click.UsageError("--top applies with --maps DIR")
    if maps_dir is not None:
        if det.input_kind == "series" or not has_score_map(det):
            raise al.AnomalyError(f"--maps: {type(det).__name__} has no score_map (no per-pixel maps); drop --maps")
        maps_dir = check_writable(maps_dir, "maps", folder=True)
    return maps_dir, None if report is None else check_writable(report, "report")


def _show(ev, maps_dir, top, report) -> list[str]:
    """Write heatmaps and the report; return what was written, for the summary line."""
    from anomalib_lite.report import render_report
    from anomalib_lite.visual import write_heatmaps

    written = []
    if maps_dir is not None:
        files = write_heatmaps(maps_dir, ev, top=top)
        written.append(f"{len(files)} heatmaps to {maps_dir}")
    if report is not None:
        render_report(ev, report)
        written.append(f"report {report}")
    return written


def _load_bundle(path, device, batch_size, quiet):
    det = al.load(path, device=device)
    det.set_params(verbose=not quiet)
    if batch_size and "batch_size" in det.get_params():
        det.set_params(batch_size=batch_size)
    return det


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", required=True, help="Data to score, e.g. mnist:test, series.csv, nab:..., - (stdin).")
@click.option("--output", "-o", "out", default=None, type=click.Path(dir_okay=False), help="Scores CSV to write.")
@click.option("--stream", is_flag=True, help="Series: score CSV lines as they arrive, print one line each (flushed).")
@click.option("--learn", is_flag=True, help="Series (Continuation): keep learning while scoring, test-then-train.")
@click.option("--nab-results", type=click.Path(file_okay=False), default=None,
              help="Series: also write NAB's results file (scores in [0, 1]) under this folder.")
@click.option("--label-column", default=None, help="Series: CSV column of 0/1 labels, for metrics.")
@threads_option
@show_options
@series_options
@data_options
@run_options
def score(bundle, data_spec, out, stream, learn, nab_results, label_column, threads, maps_dir, top, report, columns,
          time_column, nan_policy, data_dir, download, device, seed, batch_size, quiet):
    """Score data with a bundle; write one CSV row per sample (per time step for series).

    Columns: index, score, p_value and is_anomaly (when the bundle is calibrated), label (0 normal,
    1 anomalous, when the data has classes). Prints ROC-AUC and average precision when labels
    are known. Series: timestamp (or index), the value columns, score (NaN until the first
    window is full), p_value, is_anomaly, label. A bad line in --stream mode is reported on
    stderr with its line number and skipped.

    \b
    Example:
      anomaly score digit7.anomaly --data mnist:test -o scores.csv
      anomaly score m.anomaly --data series.csv -o scores.csv
      tail -f live.csv | anomaly score m.anomaly --data - --stream
      anomaly score taxi.anomaly --data nab:realKnownCause/nyc_taxi.csv --nab-results results
      anomaly score digit7.anomaly --data mnist:test -o scores.csv --maps maps --top 20 --report report.html
    """
    if out is not None:
        out = check_writable(out, "scores")
    det = _load_bundle(bundle, device, batch_size, quiet)
    maps_dir, report = _check_show(det, maps_dir, top, report)
    if det.input_kind == "series":
        if threads is not None:
            det.set_params(threads=threads)
        return _score_series(det, data_spec, out, stream, learn, nab_results, label_column, columns,
                             time_column, nan_policy, data_dir, download, quiet, report)
    if stream or learn or nab_results or label_column or columns or time_column or threads:
        raise al.AnomalyError(
            f"{bundle}: --stream, --learn, --nab-results, --threads and the CSV options apply to series bundles"
        )
    from anomalib_lite.evaluation import assess, format_verdict, score_rows

    source = al.load_data(data_spec, data_dir=data_dir, download=download)
    if out is None and maps_dir is None and report is None and len(source) != 1:
        raise click.UsageError("Missing option '--output' / '-o' (or --maps, or --report).")
    ev = assess(det, source)
    if out is None and maps_dir is None and report is None:  # one image: one line
        click.echo(format_verdict(ev, 0))
        return
    scores = ev.scores
    if out is not None:
        head, rows = score_rows(ev)
        with atomic_output(out, "scores") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(head)
            w.writerows(rows)
    written = ([f"{out}"] if out is not None else []) + _show(ev, maps_dir, top, report)
    summary = f"scored {len(scores)} samples of {data_spec}; wrote {', '.join(written)}"
    if det.threshold_ is not None:
        summary += f"; {int((scores > det.threshold_).sum())} flagged as anomalous"
    m = ev.figures
    if "roc_auc" in m:
        summary += f"\nROC-AUC {100 * m['roc_auc']:.2f}  average precision {100 * m['average_precision']:.2f}"
    if "pixel_roc_auc" in m:
        summary += f"  pixel ROC-AUC {100 * m['pixel_roc_auc']:.2f}  PRO {100 * m['pro']:.2f}"
    _say(quiet, summary)


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", required=True,
              help='Labelled data, e.g. mnist:test, "mnist:test?classes=7&synth=stroke_blob", nab:..., a CSV with --label-column.')
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the figures as JSON.")
@click.option("--label-column", default=None, help="Series: CSV column of 0/1 labels.")
@show_options
@series_options
@data_options
@run_options
def evaluate(bundle, data_spec, json_out, label_column, maps_dir, top, report, columns, time_column, nan_policy,
             data_dir, download, device, seed, batch_size, quiet):
    """Figures of a bundle on labelled data: ROC-AUC, AP, and precision, recall, F1 and false
    positive rate at the bundle's threshold; pixel ROC-AUC where masks are known (synthetic
    anomalies: add synth=OP to an image spec); anomaly-window figures for series.

    \b
    Example:
      anomaly evaluate digit7.anomaly --data mnist:test --report report.html
      anomaly evaluate digit7.anomaly --data "mnist:test?classes=7&synth=stroke_blob" --json figures.json
      anomaly evaluate taxi.anomaly --data nab:realKnownCause/nyc_taxi.csv --report taxi.html
    """
    from anomalib_lite.evaluation import assess, format_figures

    json_out = None if json_out is None else check_writable(json_out, "figures")
    det = _load_bundle(bundle, device, batch_size, quiet)
    maps_dir, report = _check_show(det, maps_dir, top, report)
    if det.input_kind == "series":
        columns, time_column = _fitted_layout(det, data_spec, columns, time_column)
        source = _series(data_spec, data_dir, download, columns, time_column, label_column, nan_policy)
    else:
        if label_column or columns or time_column:
            raise al.AnomalyError(f"{bundle}: --label-column and the CSV options apply to series bundles")
        source = al.load_data(data_spec, data_dir=data_dir, download=download)
    ev = assess(det, source)
    written = _show(ev, maps_dir, top, report)
    if json_out is not None:
        with atomic_output(json_out, "figures") as tmp:
            tmp.write_text(json.dumps(ev.figures, indent=1, default=float) + "\n")
        written.append(f"figures {json_out}")
    _say(quiet, format_figures(ev.figures))
    if "note" in ev.figures:
        if written:
            _say(quiet, "wrote " + ", ".join(written))
        raise al.AnomalyError(f"{data_spec}: {ev.figures['note']}")
    if written:
        _say(quiet, "wrote " + ", ".join(written))


def _fitted_layout(det, data_spec, columns, time_column):
    """A CSV (or stdin) is read the way the bundle was fitted, unless the options say otherwise."""
    base = data_spec.split("?")[0]
    if base == "-" or base.lower().endswith(".csv"):
        fitted = det.data_info_ or {}
        return _columns(columns) or fitted.get("columns"), time_column or fitted.get("time_column")
    return columns, time_column


def _score_series(det, data_spec, out, stream, learn, nab_results, label_column, columns, time_column,
                  nan_policy, data_dir, download, quiet, report=None):
    """Score a series file (or stdin) with a series bundle: CSV, NAB results, or a live stream."""
    from anomalib_lite import series_io
    from anomalib_lite.evaluation import from_scores

    fitted = det.data_info_ or {}
    columns, time_column = _fitted_layout(det, data_spec, columns, time_column)
    if learn and not isinstance(det, al.Continuation):
        raise al.AnomalyError(f"--learn: {type(det).__name__} does not learn online; drop --learn")
    if stream:
        if out is not None or nab_results is not None or report is not None:
            raise al.AnomalyError("--stream prints to stdout; drop -o, --nab-results and --report")
        options = (columns, time_column, label_column, nan_policy, learn)
        if data_spec == "-":
            scored, bad = series_io.stream_lines(det, sys.stdin, "stdin", *options)
        else:
            try:
                fh = open(data_spec, newline="", encoding="utf-8")
            except OSError as e:
                raise al.AnomalyError(f"{data_spec}: cannot read ({e.strerror})") from None
            with fh:
                scored, bad = series_io.stream_lines(det, fh, data_spec, *options)
        if bad and not quiet:
            click.echo(f"anomaly: {bad} bad line(s) skipped, {scored} scored", err=True)
        return
    if out is None and nab_results is None and report is None:
        raise click.UsageError("Missing option '--output' / '-o' (or --nab-results, --report or --stream).")
    try:
        source = _series(data_spec, data_dir, download, columns, time_column, label_column, nan_policy)
    except al.AnomalyError as e:
        if columns and "not found" in str(e) and columns == fitted.get("columns"):
            raise al.AnomalyError(f"{e} (the bundle was fitted on columns {', '.join(columns)}; pass --column)") from None
        raise
    scores = series_io.score_series(det, source, learn=learn)
    ev = from_scores(det, source, scores)  # flags and every figure, computed once
    flags, m = ev.flags, ev.figures
    pvals = det.p_values(scores) if det.calibration_scores_ is not None else None
    unit = nab.results_scores(det, scores) if nab_results is not None else None  # before writing anything
    if out is not None:
        series_io.write_score_table(out, source, scores, pvals, flags, source.anomaly_labels())
    summary = f"scored {len(scores)} steps of {data_spec}" + (f"; wrote {out}" if out else "")
    if nab_results is not None:
        path = nab.write_results(nab_results, source, unit, type(det).__name__.lower())
        summary += f"; wrote NAB results {path}"
    if report is not None:
        summary += "; wrote " + ", ".join(_show(ev, None, None, report))
    if flags is not None:
        summary += f"; {int(flags.sum())} flagged as anomalous"
    if "roc_auc" in m:
        summary += f"\nper step: ROC-AUC {100 * m['roc_auc']:.2f}  average precision {100 * m['average_precision']:.2f}"
    if "early_warning" in m:
        e = m["early_warning"]
        summary += (f"\nonsets warned {100 * e['warned']:.0f} % (mean lead {e['mean_lead']:.1f} steps); "
                    f"false alarms {e['false_alarms_per_1k']:.1f} per 1,000 steps")
    if "windows" in m:
        w = m["windows"]
        summary += (f"\nanomaly windows detected {w['detected']}/{w['windows']}; false alarms "
                    f"{w['false_alarms_per_1k']:.2f} per 1,000 steps outside windows")
    _say(quiet, summary)


# ---------------------------------------------------------------- demo
@cli.command()
@click.option("--digit", type=click.IntRange(0, 9), default=7, show_default=True, help="The normal digit.")
@click.option("--download/--no-download", default=True, show_default=True, help="Download MNIST if it is missing.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@run_options
def demo(digit, download, data_dir, device, seed, batch_size, quiet):
    """MNIST outliers: fit on one digit, score all 10,000 test digits, print ROC-AUC.

    \b
    Example:
      anomaly demo --digit 3
    """
    train = al.load_data(f"mnist:train?classes={digit}", data_dir=data_dir, download=download)
    test = al.load_data("mnist:test", data_dir=data_dir, download=download)
    fit_part, held = train.split(0.1, seed=seed)
    det = al.LatentDistance(image_score="pooled", maps=False, device=device, seed=seed, verbose=not quiet)
    if batch_size:
        det.set_params(batch_size=batch_size)
    det.fit(fit_part).calibrate(held, fpr=0.01)
    scores = det.score(test)
    labels = test.anomaly_labels([str(digit)])
    m = al.metrics.image_metrics(labels, scores, det.threshold_)
    click.echo(
        f"MNIST outliers, digit {digit} normal: {det!r} on {len(fit_part)} training digits\n"
        f"ROC-AUC {100 * m['roc_auc']:.2f}  average precision {100 * m['average_precision']:.2f}  "
        f"at the calibrated threshold (fpr 0.01): recall {100 * m['recall']:.1f}, "
        f"false positive rate {100 * m['fpr']:.2f}"
    )


# ---------------------------------------------------------------- augment
@cli.command("augment")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", required=True, help='Images to preview, e.g. "mnist:train?classes=3".')
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--synth", is_flag=True, help="Also show the config's ood: synthesis with masks overlaid.")
@click.option("--backend", type=click.Choice(list(augment.BACKENDS)), default="torchvision", show_default=True)
@click.option("--n", "n", type=click.IntRange(1, 64), default=8, show_default=True, help="Images per row.")
@click.option("--variants", type=click.IntRange(1, 10), default=3, show_default=True, help="Augmented rows (epochs).")
@data_options
@click.option("--quiet", "-q", is_flag=True)
def augment_preview(config, data_spec, out, synth, backend, n, variants, data_dir, download, quiet):
    """Preview an augmentation config as a grid: originals, augmented versions, and with --synth
    the synthesised anomalies with their masks in red.

    \b
    Example:
      anomaly augment aug.yaml --data "mnist:train?classes=3" -o grid.png --synth
    """
    out = check_writable(out, "preview")
    pipeline = augment.Pipeline.from_config(config, backend=backend)
    source = al.load_data(data_spec, data_dir=data_dir, download=download)
    batch = next(al.iter_batches(source, batch_size=n)).x
    grid = augment.preview_grid(batch, pipeline, n=n, synth=synth, variants=variants)
    with atomic_output(out, "preview") as tmp:
        augment.save_png(grid, tmp)
    _say(quiet, f"wrote {out} ({grid.shape[1]}x{grid.shape[0]} px, {len(batch)} images of {data_spec})")


# ---------------------------------------------------------------- backbones / info
@cli.command("backbones")
def list_backbones():
    """List backbones, their layers (* = default) and whether ImageNet weights are cached.

    \b
    Example:
      anomaly backbones
      anomaly fit latent --data "mnist:train?classes=7" --backbone resnet18 --layers layer2,layer3 -o d7.anomaly
    """
    rows = []
    for info in backbones.list_backbones():
        layers = ",".join(f"{n}*" if n in info.default_layers else n for n in info.layers)
        cached = backbones.imagenet_cached(info.name)
        state = "n/a" if cached is None else "cached" if cached else "not cached"
        rows.append((info.name, layers, state))
    width = max(len(r[0]) for r in rows)
    lwidth = max(len(r[1]) for r in rows)
    click.echo(f"{'name':<{width}}  {'layers (* = default)':<{lwidth}}  imagenet weights")
    for name, layers, state in rows:
        click.echo(f"{name:<{width}}  {layers:<{lwidth}}  {state}")


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON header.")
def info(bundle, as_json):
    """Print a bundle's header: detector, parameters, backbone, threshold, data, versions.

    \b
    Example:
      anomaly info digit7.anomaly
    """
    header = al.read_header(bundle)
    if as_json:
        click.echo(json.dumps(header, indent=2, sort_keys=True))
        return
    for key, value in header.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
        else:
            click.echo(f"{key}: {json.dumps(value) if isinstance(value, list) else value}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="anomaly")


if __name__ == "__main__":
    main()
