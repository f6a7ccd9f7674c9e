"""The command line's shared options, as click decorators: the detectors' parameters read from
``options.json`` (:mod:`.options`: their defaults, help and choices, without importing torch),
and the groups of options several commands share (how to read a series, where data live, the
run's device and seed, the outputs that show scores). Imports click and :mod:`.options` only, so
``anomaly --help`` stays instant.
"""
from __future__ import annotations

import click

from . import options as specs

__all__ = ["context", "data", "detector_options", "load_options", "run", "scoring", "series", "show", "verify"]


class _OrNone(click.ParamType):
    """A value of ``kind`` (int, float or str), or ``none`` for a parameter that takes None (the
    help's "None: ...", e.g. ``--backbone none``, ``--patience none``)."""

    def __init__(self, kind):
        self.kind, self.name = kind, f"{'text' if kind is str else kind.__name__}|none"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        try:
            return self.kind(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not {'an integer' if self.kind is int else 'a number'} or none", param, ctx)


def detector_options(command: str) -> list[click.Option]:
    """One option per parameter of a detector (or of pretrain), its default, help and choices as
    :mod:`anomalib_lite.app.options` stored them from the code."""
    opts = []
    for p in specs.load()["commands"][command]["params"]:
        flag, required = "--" + p["name"].replace("_", "-"), p["required"]
        kw = dict(help=p["help"], show_default=not required and p["default"] is not None, required=required)
        if p["kind"] == "bool":
            opts.append(click.Option([f"{flag}/--no-{flag[2:]}"], default=p["default"], **kw))
            continue
        kind = {"int": int, "float": float, "choice": click.Choice(p.get("choices") or [])}.get(p["kind"], str)
        if kind in (int, float, str) and p.get("none"):
            kind = _OrNone(kind)
        kw.update(type=kind, **({} if required else {"default": p["default"]}),  # click 8.3: default=None fills it
                  **({"metavar": "A,B,..."} if p["kind"] == "list" else {}))
        opts.append(click.Option([flag, p["name"]], **kw))
    return opts


def data(f):
    """--data-dir and --download: where data sets live."""
    f = click.option("--download", is_flag=True, help="Allow downloading public data sets (MNIST).")(f)
    return click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                        help="Where data sets live (default: $ANOMALY_DATA_DIR, else the user cache).")(f)


def run(f):
    """--device, --seed, --batch-size, --quiet."""
    f = click.option("--quiet", "-q", is_flag=True, help="No progress bars (the result line is still printed).")(f)
    f = click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Samples per step (default: the detector's).")(f)
    f = click.option("--seed", type=int, default=0, show_default=True)(f)
    return click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")(f)


def series(f):
    """How to read a CSV (a series, or a table's rows with ?rows=samples): value columns, time
    column, labels, NaN gaps."""
    f = click.option("--nan", "nan", type=click.Choice(["reject", "interpolate"]), default="reject", show_default=True,
                     help="NaN gaps: reject them or fill them linearly (--stream: with the last value).")(f)
    f = click.option("--label-column", default=None, help="CSV: column of 0/1 labels (default: label/anomaly/...).")(f)
    f = click.option("--time-column", default=None, help="CSV: time column (default: timestamp/time/date).")(f)
    return click.option("--column", "columns", multiple=True,
                        help="CSV: value column; repeat or comma-separate (default: all but the time, label and id "
                             "ones; id, key, *_id, ... name rows).")(f)


def load_options(columns=(), time_column=None, label_column=None, nan="reject", data_dir=None, download=False) -> dict:
    return dict(columns=[c.strip() for g in columns for c in g.split(",") if c.strip()] or None, nan=nan,
                time_column=time_column, label_column=label_column, data_dir=data_dir, download=download)


def show(f):
    f = click.option("--report", type=click.Path(dir_okay=False), default=None,
                     help="Write a one-file HTML report (ROC, histograms, top anomalies with heatmaps).")(f)
    f = click.option("--top", type=click.IntRange(min=1), default=None, help="With --maps: only the K highest-scoring samples.")(f)
    return click.option("--maps", "maps", type=click.Path(file_okay=False), default=None,
                        help="Write a heatmap PNG per sample (named after its image) to this folder.")(f)


context = click.option("--context", type=click.IntRange(min=0), default=0, metavar="N",
                        help="Images (latent bundles): also compare each image with N images drawn from the data "
                             "scored (mutual scoring; 60 is a good N): a drift the whole batch shares is not flagged; "
                             "scores never rise.")
verify = click.option("--verify", type=click.Path(dir_okay=False), default=None,
                       help="Public key file: refuse a bundle not signed with its private key (default: $ANOMALY_VERIFY_KEY).")


def scoring(f):
    """The options ``score`` and ``evaluate`` share: what to show, --context, --verify, how to
    read a series, where data live, the run's device and seed."""
    return show(context(verify(series(data(run(f))))))
