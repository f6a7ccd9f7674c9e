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
from collections.abc import Callable, Mapping
from typing import Any

from .errors import AnomalyError

__all__ = [
    "Check", "boolean", "check_all", "either", "integer", "list_of", "none_or", "number", "one_of", "path_like",
    "shape", "text",
]

Check = Callable[[Any, str], Any]


def _fail(name: str, value, what: str):
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise AnomalyError(f"{name}={shown}: {what}")


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


def check_all(values: Mapping[str, Any], checks: Mapping[str, Check], where: str = "") -> dict:
    """Run each check on its value (missing values are checked as None); return the checked
    values. ``where`` prefixes the field names in errors (e.g. 'm.anomaly: params.')."""
    return {name: check(values.get(name), f"{where}{name}") for name, check in checks.items()}
