"""The registry of detector classes a bundle may name, and what every bundle holds of any detector.

Below :mod:`anomalib_lite.detectors.base` and :mod:`anomalib_lite.bundles.bundle` (imports neither): ``@register``
adds a class when its module is imported; :func:`find` looks a name up, importing
:mod:`anomalib_lite.detectors` first when it is not registered yet (a plugin lookup, as a registry
of entry points does), so the bundle layer never imports the detectors it loads.
"""
from __future__ import annotations

import importlib

from . import validate as v

__all__ = ["COMMON_FITTED", "DETECTORS", "external", "find", "register"]

#: detector classes by name: the only classes a bundle may name
DETECTORS: dict[str, type] = {}

#: the package whose import registers the built-in detectors
BUILT_IN = "anomalib_lite.detectors"


def register(cls: type) -> type:
    """Make a detector class loadable from bundles (the only classes a bundle may name)."""
    DETECTORS[cls.__name__] = cls
    return cls


def find(name: str) -> type | None:
    """The registered class called ``name`` (the built-in detectors registered on first need), or None."""
    if name not in DETECTORS:
        importlib.import_module(BUILT_IN)
    return DETECTORS.get(name)


#: plain fitted values every detector keeps in its bundle, with their checks
COMMON_FITTED: dict[str, v.Check] = {
    "input_shape_": v.shape(),
    "n_seen_": v.integer(0, 1 << 62),
    "threshold_": v.none_or(v.number()),
    "fpr_": v.none_or(v.number(0, 1, lo_open=True, hi_open=True)),
}


def external(value) -> bool:
    """Whether a learned module is a frozen extractor with torchvision's ImageNet weights (a bundle
    names those weights instead of holding them)."""
    source = getattr(value, "weights_source", None)
    return isinstance(source, str) and source.startswith("imagenet") and getattr(value, "frozen", False)
