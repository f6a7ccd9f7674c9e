"""The `anomaly` command: thin over the Python API (parse, call, print).

Exit codes: 0 ok; 2 bad usage or bad input (one line on stderr saying what and where); 1 an
unexpected failure (a bug: the traceback is shown).
"""
from __future__ import annotations

import csv
import json

import click

import anomalib_lite as al
import augment
import backbones
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
    """


def _fit_and_save(det, data_spec, out, data_dir, download, holdout, fpr, seed, quiet):
    out = check_writable(out, "bundle")
    source = al.load_data(data_spec, data_dir=data_dir, download=download)
    train, held = source.split(holdout, seed=seed)
    det.fit(train)
    det.calibrate(held, fpr=fpr)
    det.save(out)
    size = out.stat().st_size / 1e6
    _say(
        quiet,
        f"fitted {type(det).__name__} on {len(train)} samples of {data_spec}; calibrated on "
        f"{len(held)} held-out samples: threshold {det.threshold_:.4g} at fpr {fpr:g}; "
        f"wrote {out} ({size:.1f} MB)",
    )
    return det


@fit.command("latent")
@click.option("--data", "data_spec", required=True, help='Normal data, e.g. "mnist:train?classes=7".')
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Bundle to write (.anomaly).")
@click.option("--method", type=click.Choice(["knn", "gaussian"]), default="knn", show_default=True)
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--memory-size", type=click.IntRange(min=1), default=10000, show_default=True)
@click.option("--coreset", type=click.Choice(["greedy", "random"]), default="greedy", show_default=True)
@click.option("--backbone", default=None, help="Feature extractor (see `anomaly backbones`); default: raw pixels.")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, random, or a weights file.")
@click.option("--layers", default=None, help="Comma-separated backbone layers (default: the backbone's).")
@click.option("--image-size", type=click.IntRange(min=8), default=None, help="Resize for the backbone.")
@click.option("--maps/--no-maps", default=True, show_default=True, help="Learn patch features for heatmaps.")
@click.option("--search", type=click.Choice(["torch", "faiss"]), default="torch", show_default=True)
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True)
@click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True)
@data_options
@run_options
def fit_latent(data_spec, out, method, k, memory_size, coreset, backbone, weights, layers,
               image_size, maps, search, holdout, fpr, data_dir, download, device, seed,
               batch_size, quiet):
    """kNN or Mahalanobis distance in a feature space (raw pixels or a CNN backbone).

    \b
    Example:
      anomaly fit latent --data "mnist:train?classes=7" -o digit7.anomaly
      anomaly fit latent --data parts/train --backbone resnet18 --image-size 224 -o parts.anomaly
    """
    det = al.LatentDistance(
        method=method, k=k, memory_size=memory_size, coreset=coreset, backbone=backbone,
        weights=weights, layers=layers.split(",") if layers else None, image_size=image_size,
        maps=maps, search=search, device=device, seed=seed, verbose=not quiet,
    )
    if batch_size:
        det.set_params(batch_size=batch_size)
    _fit_and_save(det, data_spec, out, data_dir, download, holdout, fpr, seed, quiet)


# ---------------------------------------------------------------- score
def _load_bundle(path, device, batch_size, quiet):
    det = al.load(path, device=device)
    det.set_params(verbose=not quiet)
    if batch_size and "batch_size" in det.get_params():
        det.set_params(batch_size=batch_size)
    return det


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", required=True, help="Data to score, e.g. mnist:test.")
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Scores CSV to write.")
@data_options
@run_options
def score(bundle, data_spec, out, data_dir, download, device, seed, batch_size, quiet):
    """Score data with a bundle; write one CSV row per sample.

    Columns: index, score, p_value and is_anomaly (when the bundle is calibrated), label (0 normal,
    1 anomalous, when the data has classes). Prints ROC-AUC and average precision when labels
    are known.

    \b
    Example:
      anomaly score digit7.anomaly --data mnist:test -o scores.csv
    """
    out = check_writable(out, "scores")
    det = _load_bundle(bundle, device, batch_size, quiet)
    source = al.load_data(data_spec, data_dir=data_dir, download=download)
    scores = det.score(source)
    labels = source.anomaly_labels((det.data_info_ or {}).get("classes"))
    calibrated = det.threshold_ is not None
    columns = ["index", "score"] + (["p_value", "is_anomaly"] if calibrated else [])
    columns += ["label"] if labels is not None else []
    pvals = det.p_values(scores) if calibrated else None
    with atomic_output(out, "scores") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for i, s in enumerate(scores):
            row = [i, f"{s:.6g}"]
            if calibrated:
                row += [f"{pvals[i]:.6g}", int(s > det.threshold_)]
            if labels is not None:
                row.append(int(labels[i]))
            w.writerow(row)
    summary = f"scored {len(scores)} samples of {data_spec}; wrote {out}"
    if calibrated:
        summary += f"; {int((scores > det.threshold_).sum())} flagged as anomalous"
    if labels is not None and 0 < labels.sum() < len(labels):
        m = al.metrics.image_metrics(labels, scores)
        summary += f"\nROC-AUC {100 * m['roc_auc']:.2f}  average precision {100 * m['average_precision']:.2f}"
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
    det = al.LatentDistance(maps=False, device=device, seed=seed, verbose=not quiet)
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
    """List backbones, their layers (* = default) and whether ImageNet weights are cached."""
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
