"""The `anomaly` command: each command parses its options, calls one API function
(:mod:`anomalib_lite.app.workflows`) and prints what it returns.

The ``fit`` sub-commands are made from the detectors' own signatures: every parameter is an
option with the detector's default and the help of its docstring, so no default is ever copied
here. Exit codes: 0 ok; 2 bad usage or bad input (one line on stderr saying what and where); 1 an
unexpected failure (a bug: the traceback is shown), or one line when another process of a
torchrun job failed. SIGTERM ends a run like Ctrl-C does (temporary outputs are removed). Under
``torchrun ... --no-python anomaly ...`` every process works on its share of the data; rank 0
writes the outputs and prints, the others print only their errors (prefixed with their rank).
"""
from __future__ import annotations

import time

_T0 = time.perf_counter()  # --max-time counts from here: the command's own start

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import click  # noqa: E402

import anomalib_lite as al  # noqa: E402  # names load on first use: --help and usage errors never import torch
from anomalib_lite.app import options as specs  # noqa: E402
from anomalib_lite.app import cli_options as opt  # noqa: E402


def _wf():
    """The workflows (and with them torch), imported when a command does its work."""
    from anomalib_lite.app import workflows

    return workflows


def _is_main() -> bool:
    """Rank 0 or no process group (a group exists only once distributed was imported)."""
    d = sys.modules.get("anomalib_lite.distributed")
    return d is None or d.is_main()


class _Group(click.Group):
    """A group that turns user errors from any sub-command into one line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as e:
            from anomalib_lite.errors import DistributedError, user_errors_loaded

            if not isinstance(e, (*user_errors_loaded(), DistributedError)):
                raise
            d = sys.modules.get("anomalib_lite.distributed")
            who = f"rank {d.rank()}: " if d is not None and d.active() else ""  # which process says it
            click.echo(f"anomaly: {who}error: {' '.join(str(e).split())}", err=True)
            ctx.exit(1 if isinstance(e, DistributedError) else 2)


def _say(msg: str) -> None:
    """The result line: printed by rank 0 whatever --quiet says (--quiet silences progress)."""
    click.echo(msg) if msg and _is_main() else None


# ---------------------------------------------------------------- options from the stored specs
def _values(command: str, given: dict) -> dict:
    """The parameters as the detector (or pretrain) takes them; ``--max-time`` is a budget for the
    whole command, so what start-up (imports, reading the data's index) used is taken off it."""
    out = specs.values(specs.load()["commands"][command]["params"], given)
    if out.get("max_time") is not None:
        out["max_time"] = max(1.0, out["max_time"] - (time.perf_counter() - _T0))
    return out


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(al.__version__, prog_name="anomaly")
def cli():
    """Find anomalies in images and time series.

    \b
    Example:
      anomaly demo
      anomaly demo --make-data data
      anomaly fit latent --data data/brick/train --backbone resnet18 --weights random -o brick.anomaly
      anomaly score brick.anomaly --data data/brick/test -o scores.csv --report report.html
    """


# ---------------------------------------------------------------- fit
def _route_help() -> str:
    """What `anomaly fit --data ...` with no detector fits, by the data's kind (options.ROUTES)."""
    import textwrap

    routes = "\n".join(textwrap.fill(f"{kind}: {what}", 88, initial_indent="  ", subsequent_indent="      ")
                       for kind, what in specs.ROUTES.items())
    return ("With no detector named, fit chooses the route documented as best for the data's kind (the image "
            "routes: the best measured on the inspection set's dev half, BENCHMARKS.md) and says which in its "
            f"result line (anomaly info shows it later):\n\n\b\n{routes}")


_FIT_HELP = f"""Fit a detector on normal data and save it as a one-file bundle; a share of the data
(--holdout; the end of a series) calibrates the threshold at a false positive rate (--fpr).

{_route_help()}

\b
Example:
  anomaly fit --data data/brick/train -o brick.anomaly
  anomaly fit latent --data data/brick/train --backbone resnet18 --weights random -o brick.anomaly
"""


@cli.group(cls=_Group, invoke_without_command=True, help=_FIT_HELP)
@click.option("--data", "data_spec", default=None, help="Normal data (a data spec); with no detector named: fit the route for its kind.")
@click.option("--output", "-o", "out", default=None, type=click.Path(dir_okay=False), help="Bundle to write (.anomaly).")
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True,
              help="Share kept to calibrate the threshold (a series: its end).")
@click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True,
              help="Target false positive rate of the threshold.")
@click.option("--sign", type=click.Path(dir_okay=False), default=None, help="Private key file (anomaly keygen) that signs the bundle.")
@opt.series
@opt.data
@opt.run
@click.pass_context
def fit(ctx, data_spec, out, holdout, fpr, sign, columns, time_column, label_column, nan, data_dir, download, device,
        seed, batch_size, quiet):
    if ctx.invoked_subcommand is not None:
        if data_spec is not None or out is not None:
            raise click.UsageError(f"fit {ctx.invoked_subcommand}: put --data and -o after the detector's name")
        return
    if data_spec is None or out is None:
        raise click.UsageError("fit: name a detector (anomaly fit --help lists them) or give --data and -o "
                               "to fit the route for the data's kind")
    load = opt.load_options(columns, time_column, label_column, nan, data_dir, download)
    _say(_wf().fit_and_save(None, data_spec, out, holdout=holdout, fpr=fpr, seed=seed, sign=sign, device=device,
                            verbose=not quiet and _is_main(), **load))


#: fit sub-command -> detector class name: every registered detector with a command (options.json,
#: generated from the registry by `python -m anomalib_lite.app.options`), with the examples it declares
FIT = {name: spec["detector"] for name, spec in specs.load()["commands"].items() if "detector" in spec}
EXAMPLES = {name: specs.load()["commands"][name]["examples"] for name in FIT}


def _fit_command(name: str, class_name: str) -> click.Command:
    spec = specs.load()["commands"][name]
    calibrates = spec["capabilities"]["calibrates"]  # False: the detector sets its own threshold

    def run(data_spec, out, sign, quiet, device, seed, batch_size, **rest):
        # a calibrating fit's --holdout and --fpr are the command's; otherwise --fpr is the detector's own
        holdout, fpr = (rest.pop("holdout"), rest.pop("fpr")) if calibrates else (None, 0.01)
        load = opt.load_options(**{k: rest.pop(k) for k in ("columns", "time_column", "label_column", "nan", "data_dir",
                                                          "download") if k in rest})
        det = al.DETECTORS[class_name](**_values(name, rest), device=device, seed=seed, verbose=not quiet and _is_main())
        if batch_size:
            det.set_params(batch_size=batch_size)
        _say(_wf().fit_and_save(det, data_spec, out, holdout=holdout, fpr=fpr, seed=seed,
                                sign=sign, **load))

    data_help = ("Labelled series (a data spec whose steps carry 0/1 labels: a CSV's label column, NAB's windows)."
                 if spec["capabilities"].get("early_warning") else "Normal data (a data spec).")
    params = [click.Option(["--data", "data_spec"], required=True, help=data_help),
              click.Option(["--output", "-o", "out"], required=True, type=click.Path(dir_okay=False),
                           help="Bundle to write (.anomaly)."),
              *opt.detector_options(name),
              click.Option(["--sign"], type=click.Path(dir_okay=False), default=None,
                           help="Private key file (anomaly keygen) that signs the bundle.")]
    if calibrates:
        params += [click.Option(["--holdout"], type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
                                show_default=True, help="Share kept to calibrate the threshold (a series: its end)."),
                   click.Option(["--fpr"], type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01,
                                show_default=True, help="Target false positive rate of the threshold.")]
    csv = spec["input_kind"] in ("series", "any")  # (a detector that takes vectors reads a CSV table's rows)
    shell = opt.run(opt.data(opt.series(lambda **kw: kw) if csv else lambda **kw: kw))
    params += shell.__click_params__[::-1]
    examples = "\n".join(f"  anomaly fit {name} {e}" for e in EXAMPLES[name])
    return click.Command(name, callback=run, params=params, help=f"{spec['summary']}\n\n\b\nExample:\n{examples}")


for _name, _class in FIT.items():
    fit.add_command(_fit_command(_name, _class))


def add_detector(cls) -> None:
    """``anomaly fit COMMAND`` for a detector registered outside this package (a plugin: its
    ``command``, options and examples described from the class itself, which imports torch)."""
    specs.load()["commands"][cls.command] = specs.describe(cls.command, cls)
    FIT[cls.command], EXAMPLES[cls.command] = cls.__name__, list(cls.cli_examples)
    fit.add_command(_fit_command(cls.command, cls.__name__))


@cli.command("pretrain")
@click.option("--data", "data_spec", required=True, help='Normal images, e.g. "mnist:train?classes=3".')
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Weights file (.safetensors).")
@opt.data
@opt.run
def pretrain_cmd(data_spec, out, data_dir, download, device, seed, batch_size, quiet, **rest):
    """Self-supervised pretraining of a backbone on your own normal images; the weights file
    works anywhere --weights PATH does.

    \b
    Example:
      anomaly pretrain --backbone resnet18 --data "mnist:train?classes=3" --image-size 32 -o r18-digit3.safetensors
      anomaly pretrain --backbone resnet18 --data data/brick/train --task segment --max-time 30 -o r18-brick.safetensors
    """
    extra = {"batch_size": batch_size} if batch_size else {}
    _say(_wf().pretrain_and_save(data_spec, out, data_dir=data_dir, download=download, device=device, seed=seed,
                                 verbose=not quiet and _is_main(), **_values("pretrain", rest), **extra))


pretrain_cmd.params[2:2] = opt.detector_options("pretrain")


# ---------------------------------------------------------------- score / evaluate
def _bundle(path, device, batch_size, quiet, verify, threads=None):
    return _wf().load_bundle(path, device=device, verify=verify, verbose=not quiet and _is_main(),
                          batch_size=batch_size, threads=threads)


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", required=True, help="Data to score, e.g. mnist:test, part.png, \"lot/*.png\", series.csv, nab:..., - (stdin).")
@click.option("--output", "-o", "out", default=None, help="Scores CSV to write (- prints it).")
@click.option("--stream", is_flag=True, help="Series: score CSV lines as they arrive, print one line each (flushed).")
@click.option("--learn", is_flag=True, help="Series (Continuation): keep learning while scoring, test-then-train.")
@click.option("--nab-results", type=click.Path(file_okay=False), default=None, help="Series: also write NAB's results file under this folder.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Series: torch threads (default: 1 for small networks).")
@opt.scoring
def score(bundle, data_spec, out, stream, learn, nab_results, threads, maps, top, report, context, verify, columns,
          time_column, label_column, nan, data_dir, download, device, seed, batch_size, quiet):
    """Score data with a bundle: one CSV row per sample (per time step for series).

    Columns: index, path (image files), score, p_value and is_anomaly (calibrated bundles), label
    (0 normal, 1 anomalous, when known); one image and no output: one line. Series: time, values,
    score (NaN until the first window is full), p_value, is_anomaly, label; --stream answers each
    line as it arrives (a bad line is reported on stderr with its number and skipped).

    \b
    Example:
      anomaly score brick.anomaly --data data/brick/test/hole/000.png
      anomaly score digit7.anomaly --data mnist:test -o scores.csv --maps maps --top 20 --report report.html
      tail -f data/series.csv | anomaly score m.anomaly --data - --stream
      anomaly score taxi.anomaly --data nab:realKnownCause/nyc_taxi.csv --nab-results results
    """
    det = _bundle(bundle, device, batch_size, quiet, verify, threads)
    load = opt.load_options(columns, time_column, label_column, nan, data_dir, download)
    if stream:
        scored, bad = _wf().stream(det, data_spec, learn=learn, outputs=(out, nab_results, report, maps), counts=(kinds := {}),
                                context=context,
                                **{k: load[k] for k in ("columns", "time_column", "label_column", "nan")})
        if bad and not quiet:
            wf = _wf()
            click.echo(f"anomaly: {wf.plural(bad, 'bad line')} skipped, {scored} scored "
                       f"({wf.series_io.skipped_summary(kinds)})", err=True)
        return
    text = _wf().score_and_write(det, data_spec, bundle=bundle, out=out, maps=maps, top=top, report=report,
                                 nab_results=nab_results, learn=learn, verify=verify, context=context, **load)
    _say(text)


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", required=True, help='Labelled data, e.g. mnist:test, brick/test, nab:..., a CSV with --label-column.')
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the figures as JSON.")
@opt.scoring
def evaluate(bundle, data_spec, json_out, maps, top, report, context, verify, columns, time_column, label_column, nan,
             data_dir, download, device, seed, batch_size, quiet):
    """Figures of a bundle on labelled data: ROC-AUC, AP, precision, recall, F1 and false positive
    rate at the bundle's threshold; pixel ROC-AUC and PRO where masks are known (MVTec's
    ground_truth, or synth=OP), a table per defect class; anomaly-window figures for series.

    \b
    Example:
      anomaly evaluate brick.anomaly --data data/brick/test --report report.html
      anomaly evaluate digit7.anomaly --data "mnist:test?classes=7&synth=stroke_blob" --json figures.json
    """
    det = _bundle(bundle, device, batch_size, quiet, verify)
    load = opt.load_options(columns, time_column, label_column, nan, data_dir, download)
    figures, text = _wf().evaluate_and_write(det, data_spec, bundle=bundle, json_out=json_out, maps=maps, top=top,
                                             report=report, verify=verify, context=context, **load)
    _say(text)
    if "note" in figures:
        raise al.AnomalyError(f"{data_spec}: {figures['note']}")


# ---------------------------------------------------------------- demo, augment, backbones, info, keygen
@cli.command()
@click.option("--digit", type=click.IntRange(0, 9), default=7, show_default=True, help="The normal digit.")
@click.option("--download/--no-download", default=True, show_default=True, help="Download MNIST if it is missing.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where MNIST lives (default: $ANOMALY_DATA_DIR, else the user cache).")
@click.option("--make-data", "make_data", type=click.Path(file_okay=False), default=None,
              help="Instead: write sample data for every command of the README into this folder (an MVTec-style "
                   "inspection set DIR/brick, DIR/series.csv, DIR/labelled.csv).")
@opt.run
def demo(digit, download, data_dir, make_data, device, seed, batch_size, quiet):
    """MNIST outliers: fit on one digit, score all 10,000 test digits, print ROC-AUC. With
    --make-data DIR: write sample data instead (no MNIST needed).

    \b
    Example:
      anomaly demo --digit 3
      anomaly demo --make-data data
    """
    if make_data is not None:
        from anomalib_lite.data.sample_data import make_demo_data  # numpy and scikit-image's photographs: no torch

        click.echo(make_demo_data(make_data, seed=seed))
        return
    click.echo(_wf().demo(digit, data_dir=data_dir, download=download, device=device, seed=seed, batch_size=batch_size,
                          verbose=not quiet))


@cli.command("augment")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", required=True, help='Images to preview, e.g. "mnist:train?classes=3".')
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--synth", is_flag=True, help="Also show the config's ood: synthesis with masks overlaid.")
@click.option("--backend", type=click.Choice(specs.load()["augment_backends"]), default="torchvision", show_default=True)
@click.option("--n", "n", type=click.IntRange(1, 64), default=8, show_default=True, help="Images per row.")
@click.option("--variants", type=click.IntRange(1, 10), default=3, show_default=True, help="Augmented rows (epochs).")
@opt.data
@click.option("--quiet", "-q", is_flag=True)
def augment_preview(config, data_spec, out, synth, backend, n, variants, data_dir, download, quiet):
    """Preview an augmentation config as a grid: originals, augmented versions, and with --synth
    the synthesised anomalies with their masks in red.

    \b
    Example:
      anomaly augment aug.yaml --data "mnist:train?classes=3" -o grid.png --synth
    """
    _say(_wf().augment_preview(config, data_spec, out, backend=backend, n=n, synth=synth, variants=variants,
                                   data_dir=data_dir, download=download))


@cli.command("backbones")
def list_backbones():
    """List backbones, their layers (* = default) and whether ImageNet weights are cached.

    \b
    Example:
      anomaly backbones
    """
    click.echo(_wf().backbones_table())


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON header.")
@opt.verify
def info(bundle, as_json, verify):
    """Print a bundle's header: detector, parameters, what it learned, threshold, data, versions.

    \b
    Example:
      anomaly info digit7.anomaly
    """
    from anomalib_lite.bundles.header import describe_header, read_header  # the header alone: no torch

    click.echo(describe_header(read_header(bundle, verify=verify), as_json))


@cli.command("export")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False), help="ONNX model to write (.onnx).")
@opt.verify
@click.option("--quiet", "-q", is_flag=True)
def export_cmd(bundle, out, verify, quiet):
    """Export a LatentDistance or Reconstruction bundle as one ONNX model for onnxruntime: images
    (N, C, H, W) float32 in [0, 1] in, score (N,) and score_map (N, H, W) out, the threshold in
    its metadata. Needs the export extra (pip install "anomalib_lite[export]").

    \b
    Example:
      anomaly export digit7.anomaly -o digit7.onnx
      python examples/serve_onnx.py digit7.onnx digits/ -o scores.csv
    """
    _say(_wf().export(bundle, out, verify=verify))


@cli.command()
@click.option("--output", "-o", "out", required=True, type=click.Path(dir_okay=False),
              help="Private key file to write (the public key goes to OUT.pub).")
def keygen(out):
    """Make an Ed25519 key pair for signed bundles: keep the private key where bundles are fitted,
    give the public key to the machines that score.

    \b
    Example:
      anomaly keygen -o line.key
      anomaly fit latent --data data/brick/train --sign line.key -o parts.anomaly
      anomaly score parts.anomaly --data data/brick/test/hole/000.png --verify line.key.pub
    """
    from anomalib_lite.bundles import signing

    private, public = signing.generate_keys(out)
    click.echo(f"wrote private key {private} (keep it secret) and public key {public}")


def main() -> None:
    """Entry point: SIGTERM unwinds like Ctrl-C (outputs are written whole or not at all); under
    torchrun, join the process group first."""
    stopped: list[int] = []

    def stop(signum, frame):
        stopped.append(signum)
        if hasattr(signal, "SIGCHLD"):  # torch's DataLoader raises when a worker stopped with us dies
            signal.signal(signal.SIGCHLD, lambda *_: None)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    group = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    if group:  # torchrun: only then is torch.distributed imported before a command needs it
        from anomalib_lite import distributed

        try:
            distributed.init_from_env()
        except (al.DistributedError, al.AnomalyError) as e:
            click.echo(f"anomaly: error: {e}", err=True)
            sys.exit(1)
    warnings.formatwarning = lambda message, *args, **kw: f"anomaly: warning: {message}\n"  # one line, no source
    if not _is_main():  # rank 0 speaks for the job; the others only report errors
        warnings.simplefilter("ignore")
    code = 1
    try:
        cli(prog_name="anomaly")
    except BaseException as e:  # click ends every command with SystemExit (0 on success)
        if not stopped:
            code = e.code if isinstance(e, SystemExit) else 1
            raise
        # stopped: whatever unwinding raised (a DataLoader worker killed with its group), one line
        click.echo("anomaly: stopped (SIGTERM); no output was half-written", err=True)
        code = 128 + stopped[0]
        sys.exit(code)
    finally:
        if "anomalib_lite.distributed" in sys.modules:
            sys.modules["anomalib_lite.distributed"].shutdown(synchronise=code in (0, None))


if __name__ == "__main__":
    main()
