"""Small declarative checks for parameters and for what bundles claim, one AnomalyError each.

A check is a function ``(value, name) -> value`` that raises :class:`AnomalyError` with one line
naming the field and what it must be. Detectors declare ``_param_checks`` (their ``__init__``
parameters) and ``_fitted_checks`` (plain fitted values kept in bundles) with them, so the same
rules guard ``fit`` and loading a bundle that anyone could have written, and sizes that would
allocate absurd memory are refused before anything is built.
"""
from __future__ import annotations

import math
import os
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

from .errors import AnomalyError, shown

__all__ = [
    "SEED_MAX", "Check", "boolean", "check_all", "either", "exact_fields", "hex_digest", "integer", "list_of", "mapping", "none_or", "number",
    "one_of", "path_like", "record", "seed", "shape", "short_repr", "text",
]

Check = Callable[[Any, str], Any]


def _fail(name: str, value, what: str):
    raise AnomalyError(f"{shown(name)}={shown(short_repr(value), 60)}: {what}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 80, 80, 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 8


def short_repr(value) -> str:
    """repr() of a value that may be huge or deep (a bundle's), with bounded work."""
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):  # an int of thousands of digits
        return f"<{type(value).__name__}>"


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    """An int (not a bool) in [lo, hi]."""

    def check(value, name):
        if not isinstance(value, int) or isinstance(value, bool):
            _fail(name, value, "must be an integer" + _range(lo, hi))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            _fail(name, value, "must be an integer" + _range(lo, hi))
        return value

    return check


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Check:
    """A finite int or float (not a bool) in the interval."""

    def check(value, name):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and lo is not None:
            ok = value > lo if lo_open else value >= lo
        if ok and hi is not None:
            ok = value < hi if hi_open else value <= hi
        if not ok:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            span = f" in {left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{right}"
            _fail(name, value, "must be a number" + span)
        return value

    return check


def _range(lo, hi) -> str:
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" >= {lo}"
    if lo is None:
        return f" <= {hi}"
    return f" in [{lo}, {hi}]"


def one_of(*choices) -> Check:
    def check(value, name):
        if not isinstance(value, (str, int, float, bool, type(None))) or value not in choices:
            _fail(name, value, f"unknown; use one of {', '.join(map(str, choices))}")
        return value

    check.choices = choices  # the CLI offers them as a choice
    return check


def boolean() -> Check:
    def check(value, name):
        if not isinstance(value, bool):
            _fail(name, value, "must be true or false")
        return value

    return check


def text(max_len: int = 4096) -> Check:
    def check(value, name):
        if not isinstance(value, str) or len(value) > max_len:
            _fail(name, value, f"must be a string of at most {max_len} characters")
        return value

    return check


def mapping(what: str) -> Check:
    """An object (a JSON object: a dict), its fields checked elsewhere."""

    def check(value, name):
        if not isinstance(value, dict):
            _fail(name, value, f"must be {what}")
        return value

    return check


def hex_digest(length: int = 64) -> Check:
    """Lower-case hex of exactly ``length`` digits (one spelling of a digest)."""

    def check(value, name):
        if not isinstance(value, str) or len(value) != length or set(value) - set("0123456789abcdef"):
            _fail(name, value, f"must be {length} lower-case hex digits")
        return value

    return check


def path_like(max_len: int = 4096) -> Check:
    def check(value, name):
        if not isinstance(value, (str, os.PathLike)) or len(os.fspath(value)) > max_len:
            _fail(name, value, "must be a name or a file path")
        return value

    return check


def none_or(inner: Check) -> Check:
    def check(value, name):
        return None if value is None else inner(value, name)

    return check


def either(*checks: Check, what: str) -> Check:
    """The first check that accepts the value; else ``what`` is the error."""

    def check(value, name):
        for c in checks:
            try:
                return c(value, name)
            except AnomalyError:
                continue
        _fail(name, value, what)

    return check


def list_of(inner: Check, max_len: int = 64, min_len: int = 0) -> Check:
    def check(value, name):
        if not isinstance(value, (list, tuple)) or not min_len <= len(value) <= max_len:
            _fail(name, value, f"must be a list of {min_len} to {max_len} items")
        return [inner(v, f"{name}[{i}]") for i, v in enumerate(value)]

    return check


def shape(max_dims: int = 4, max_side: int = 1 << 16, max_size: int = 1 << 28, min_dims: int = 1) -> Check:
    """A sample shape: ``min_dims`` to ``max_dims`` positive ints, none above ``max_side``, their
    product at most ``max_size``."""

    def check(value, name):
        if not isinstance(value, (list, tuple)) or not min_dims <= len(value) <= max_dims:
            _fail(name, value, f"must be a shape of {min_dims} to {max_dims} sides")
        dims = [integer(1, max_side)(v, f"{name}[{i}]") for i, v in enumerate(value)]
        if math.prod(dims) > max_size:
            _fail(name, value, f"holds more than {max_size:,} values per sample")
        return tuple(dims)

    return check


#: the seeds torch and numpy take (torch.manual_seed: 64 bits; seed + small offsets stay inside)
SEED_MAX = (1 << 63) - 1


def seed() -> Check:
    """A random seed: an int in [0, 2^63 - 1]."""
    return integer(0, SEED_MAX)


def record(checks: Mapping[str, Check], optional: tuple[str, ...] = ()) -> Check:
    """An object with exactly the fields of ``checks`` (those in ``optional`` may be absent):
    an unknown field or a missing one is refused, each field is checked; returns the checked
    values. What a bundle's header objects must be."""

    def check(value, name):
        if not isinstance(value, dict):
            _fail(name, value, "must be an object with fields " + ", ".join(checks))
        exact_fields(value, checks, name, optional)
        return {k: c(value[k], f"{name}.{k}") for k, c in checks.items() if k in value}

    return check


def exact_fields(value: Mapping, names, where: str, optional=()) -> None:
    """Refuse a field of ``value`` not in ``names``, or one of ``names`` missing (not in
    ``optional``): one AnomalyError naming it."""
    unknown = sorted(str(k) for k in value if k not in names)
    if unknown:
        raise AnomalyError(f"{shown(where)}: unknown field '{shown(unknown[0], 80)}'")
    missing = [k for k in names if k not in value and k not in optional]
    if missing:
        raise AnomalyError(f"{shown(where)}: field '{missing[0]}' is missing")


def check_all(values: Mapping[str, Any], checks: Mapping[str, Check], where: str = "") -> dict:
    """Run each check on its value (missing values are checked as None); return the checked
    values. ``where`` prefixes the field names in errors (e.g. 'm.anomaly: params.')."""
    return {name: check(values.get(name), f"{where}{name}") for name, check in checks.items()}
