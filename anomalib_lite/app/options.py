"""The command line's options for each detector and for ``pretrain``, without importing them.

``anomaly fit latent --help`` lists every parameter of :class:`~anomalib_lite.LatentDistance`
with its default, help and choices. Reading them from the class means importing torch (seconds),
so they are read once, by :func:`generate`, into ``options.json`` beside this module, and the
command line reads that file (milliseconds). ``tests/test_cli_startup.py`` checks that the file
equals what :func:`generate` reads from the code; after changing a detector's parameters, run

    python -m anomalib_lite.app.options

Each parameter becomes ``{"name", "kind", "default", "help", "required"[, "choices", "none"]}``
(``none``: the parameter takes None, given as ``none`` on the command line); ``kind``
is ``bool``, ``list`` (comma-separated), ``choice``, ``int``, ``float``, ``str`` or ``int|str``
(a name or a number, e.g. ``season``). Run options (device, seed, verbose, batch size) are the
commands' own and are left out.
"""
from __future__ import annotations

import dataclasses

import json
import re
from pathlib import Path

__all__ = ["FILE", "OTHERS", "ROUTES", "generate", "load", "targets", "values"]

FILE = Path(__file__).with_name("options.json")

#: what ``anomaly fit --data DIR`` (no detector named) fits, by the data's kind; chosen on the dev
#: halves of the inspection set, MNIST and NAB (BENCHMARKS.md, issue 18 and 19)
ROUTES = {
    "images, ImageNet weights cached": "LatentDistance on wide_resnet50_2's ImageNet features (layer2+layer3), "
                                       "patch score (PatchCore as published)",
    "images, offline": "LatentDistance on a resnet18 pretrained on the images themselves to find synthesised "
                       "local changes (pretrain='segment', layer1+layer2), patch score",
    "vectors": "LatentDistance: kNN distance to the normal vectors (a table's columns each standardised on its "
               "training rows)",
    "series": "Continuation with every default (NAB's route: forecast error, neighbours, changes, the weekly "
              "cycle)",
}

#: commands that are not a detector's: command name -> "module:attribute" of the function
OTHERS = {"pretrain": "anomalib_lite.training.pretrain:pretrain"}


def targets() -> dict[str, str]:
    """Command name -> "module:attribute" of the class or function whose parameters it offers:
    every registered detector with a ``command`` (imports the detectors, so torch), then OTHERS."""
    import importlib

    from ..registry import BUILT_IN, DETECTORS

    importlib.import_module(BUILT_IN)  # registers the built-in detectors
    out = {cls.command: f"{cls.__module__}:{cls.__name__}" for cls in DETECTORS.values() if cls.command}
    return {**out, **OTHERS}


RUN = ("device", "seed", "verbose", "batch_size")  # every command sets these from its run options
SKIP = {"pretrain": ("data", "out")}  # given by the command's own --data / --output

_cache: dict = {}


def load() -> dict:
    """The stored options (``options.json``), read once per process."""
    if not _cache:
        _cache.update(json.loads(FILE.read_text(encoding="utf-8")))
    return _cache


def values(params: list[dict], given: dict) -> dict:
    """Option values as the parameters expect them: comma lists split, ints where a parameter
    takes either a name or a number (``none`` is None already: ``cli_options``' option type)."""
    kinds = {p["name"]: p["kind"] for p in params}
    out = {}
    for name, value in given.items():
        if isinstance(value, str) and kinds.get(name) == "list":
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, str) and kinds.get(name) == "int|str" and value.lstrip("-").isdigit():
            value = int(value)
        out[name] = value
    return out


# ---------------------------------------------------------------- reading the code (imports torch)
def _param_docs(target) -> dict[str, str]:
    """Each parameter's description from a numpydoc "Parameters" section (groups share one); a
    parameter a detector documents as one of the run parameters takes its base class's text."""
    import inspect

    docs = _parse_params(inspect.getdoc(target) or "")
    for base in getattr(target, "__mro__", ())[1:]:
        ref = getattr(base, "RUN_PARAMS_DOC", None)
        inherited = _parse_params(base.__doc__ or "") if ref else {}
        for name, text in docs.items():
            if ref and text.startswith(ref) and name in inherited:
                docs[name] = inherited[name]
    return docs


def _parse_params(doc: str) -> dict[str, str]:
    import inspect

    part = re.split(r"\nParameters\n-+\n", inspect.cleandoc(doc))
    if len(part) < 2:
        return {}
    body, out, names = re.split(r"\n\w[\w ]*\n-+\n", part[1])[0], {}, []
    for line in body.splitlines():
        if line and not line[0].isspace():
            names = [n.strip() for n in line.split(" : ")[0].split(",")]
            for n in names:
                out[n] = ""
        elif names:
            for n in names:
                out[n] = (out[n] + " " + line.strip()).strip()
    return {n: re.sub(r":\w+:`~?([^`]+)`|``([^`]+)``", lambda m: m[1] or m[2], t) for n, t in out.items()}


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def describe(command: str, target) -> dict:
    """The options of ``target`` (a detector class or a function) as :func:`load` returns them."""
    import inspect
    import typing

    fn = target.__init__ if isinstance(target, type) else target
    hints, docs = typing.get_type_hints(fn), _param_docs(target)
    checks = getattr(target, "_param_checks", {})
    params = []
    for name, p in inspect.signature(fn).parameters.items():
        if name in ("self", *SKIP.get(command, ()), *RUN) or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        hint, default = str(hints.get(name)), p.default
        required = default is inspect.Parameter.empty
        choices = getattr(checks.get(name), "choices", None)
        row = {"name": name, "help": docs.get(name, ""), "required": required}
        if not required and ("None" in hint or "Optional" in hint or default is None):
            row["none"] = True  # `--patience none` gives None (the help's "None: ...")
        if isinstance(default, bool):
            row.update(kind="bool", default=default)
        elif isinstance(default, (list, tuple)) or "list" in hint:
            row.update(kind="list", default=",".join(default) if default else None)
        elif choices:
            row.update(kind="choice", default=None if required else default, choices=[str(c) for c in choices])
        elif "int" in hint and "str" in hint:
            row.update(kind="int|str", default=None if required else default)
        elif "int" in hint:
            row.update(kind="int", default=None if required else default)
        elif "float" in hint:
            row.update(kind="float", default=None if required else default)
        else:
            row.update(kind="str", default=None if required else _jsonable(default))
        params.append(row)
    summary = (inspect.getdoc(target) or "").split("\n\n")[0]
    caps = getattr(target, "capabilities", None)
    out = {"summary": summary, "input_kind": getattr(target, "input_kind", None), "params": params}
    if caps is None:
        return out
    return {**out, "detector": target.__name__, "capabilities": dataclasses.asdict(caps),
            "examples": list(target.cli_examples)}


def generate() -> dict:
    """Every command's options read from the code (imports the detectors, so torch)."""
    import importlib

    import augment

    out: dict = {"commands": {}}
    for command, where in targets().items():
        module, attr = where.split(":")
        out["commands"][command] = describe(command, getattr(importlib.import_module(module), attr))
    out["augment_backends"] = list(augment.BACKENDS)
    return out


def dumps(spec: dict) -> str:
    return json.dumps(spec, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    FILE.write_text(dumps(generate()), encoding="utf-8")
    print(f"wrote {FILE}")
