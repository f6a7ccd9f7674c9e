"""What each op accepts: parameter kinds, defaults and bounds, in backend-neutral units.

Units: angles in degrees, sizes and shifts as fractions of the image size, intensities in [0, 1],
blur and elastic sigmas in pixels. A range is ``[low, high]``, drawn uniformly per sample; a
single number means a fixed value, or ``[-x, x]`` for symmetric parameters (rotation, shifts,
brightness). This module is data plus the checks that turn user values into canonical ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import AugmentError


@dataclass(frozen=True)
class Param:
    """One parameter: ``kind`` is range, int_range, number, int, bool or choice."""

    kind: str
    default: object
    low: float = -math.inf
    high: float = math.inf
    symmetric: bool = False  # a single number x means [-x, x]
    choices: tuple[str, ...] = ()
    help: str = ""
    open_low: bool = False  # the low bound itself is not allowed


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_bounds(v, spec: Param, where: str) -> None:
    above_low = v > spec.low if spec.open_low else v >= spec.low
    if not (above_low and v <= spec.high):
        bracket = "(" if spec.open_low else "["
        raise AugmentError(
            f"{where}: {_fmt(v)} is outside {bracket}{_fmt(spec.low)}, {_fmt(spec.high)}]"
        )


def check_value(value, spec: Param, where: str):
    """Return the canonical form of ``value`` (tuples for ranges) or raise AugmentError."""
    kind = spec.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise AugmentError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "choice":
        if value not in spec.choices:
            raise AugmentError(
                f"{where}: unknown value {value!r}; valid values are: {', '.join(spec.choices)}"
            )
        return value
    integral = kind in ("int", "int_range")
    if kind in ("number", "int"):
        if not _is_number(value) or (integral and int(value) != value):
            what = "an integer" if integral else "a number"
            raise AugmentError(f"{where}: expected {what}, got {value!r}")
        _check_bounds(value, spec, where)
        return int(value) if integral else float(value)
    # ranges
    if _is_number(value):
        pair = (-value, value) if spec.symmetric else (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value)):
        pair = tuple(value)
    else:
        what = (
            "an integer or a [low, high] pair of integers"
            if integral
            else "a number or a [low, high] pair"
        )
        raise AugmentError(f"{where}: expected {what}, got {value!r}")
    if integral and any(int(v) != v for v in pair):
        raise AugmentError(f"{where}: expected integers, got {value!r}")
    if pair[0] > pair[1]:
        raise AugmentError(f"{where}: range ({_fmt(pair[0])}, {_fmt(pair[1])}) is reversed")
    for v in pair:
        _check_bounds(v, spec, where)
    return tuple(int(v) for v in pair) if integral else tuple(float(v) for v in pair)


def check_int(value, where: str) -> int:
    """A non-negative integer (seed, epoch)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise AugmentError(f"{where}: expected a non-negative integer, got {value!r}")
    return int(value)


def check_indices(indices, n: int, where: str) -> np.ndarray:
    """The global sample indices of a batch of n (default 0..n-1) as int64."""
    if indices is None:
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(indices.cpu() if hasattr(indices, "cpu") else indices)
    if idx.shape != (n,) or (n and (idx.dtype.kind not in "iu" or idx.min() < 0)):
        raise AugmentError(
            f"{where}: expected {n} non-negative integers (one per image), got "
            f"{idx.dtype} array of shape {idx.shape}"
        )
    return idx.astype(np.int64)


def check_params(given: dict, specs: dict[str, Param], where: str, reserved=()) -> dict:
    """Validate ``given`` against ``specs``; fill defaults; reject unknown keys."""
    unknown = [k for k in given if k not in specs and k not in reserved]
    if unknown:
        valid = ", ".join(sorted([*specs, *reserved]))
        raise AugmentError(f"{where}: unknown key {unknown[0]!r}; valid keys are: {valid}")
    out = {}
    for name, spec in specs.items():
        value = given.get(name, spec.default)
        out[name] = check_value(value, spec, f"{where}: key {name!r}")
    return out


def to_plain(value):
    """Canonical value -> YAML/JSON-friendly value (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


# ---- training ops -------------------------------------------------------------------------

_FILL = Param("number", 0.0, 0.0, 1.0, help="intensity of pixels moved in from outside")
_MODE = Param("choice", "constant", choices=("constant", "edge", "reflect"))


def _deg(default, high=360.0):
    return Param("range", default, -high, high, symmetric=True, help="degrees")


@dataclass(frozen=True)
class OpSpec:
    params: dict[str, Param] = field(default_factory=dict)
    geometric: bool = False
    help: str = ""


OPS: dict[str, OpSpec] = {
    "hflip": OpSpec({}, True, "mirror left-right"),
    "vflip": OpSpec({}, True, "mirror top-bottom"),
    "rotate": OpSpec(
        {"degrees": _deg((-15.0, 15.0)), "fill": _FILL, "mode": _MODE},
        True,
        "rotate about the centre; positive is clockwise on screen",
    ),
    "scale": OpSpec(
        {"factor": Param("range", (0.9, 1.1), 0.05, 20.0), "fill": _FILL, "mode": _MODE},
        True,
        "zoom about the centre, same factor on both axes",
    ),
    "affine": OpSpec(
        {
            "translate": Param(
                "range", (0.0, 0.0), -1.0, 1.0, True, help="fraction of size, per axis"
            ),
            "scale": Param("range", (1.0, 1.0), 0.05, 20.0),
            "shear": _deg((0.0, 0.0), 80.0),
            "rotate": _deg((0.0, 0.0)),
            "fill": _FILL,
            "mode": _MODE,
        },
        True,
        "translate, scale, shear (x axis) and rotate in one step",
    ),
    "perspective": OpSpec(
        {
            "distortion": Param(
                "range",
                (0.02, 0.08),
                0.0,
                0.5,
                help="sigma of each corner's inward shift, fraction of size",
            ),
            "fill": _FILL,
            "mode": Param("choice", "constant", choices=("constant", "edge")),
        },
        True,
        "view the image through a random quadrilateral (imgaug PerspectiveTransform)",
    ),
    "crop_and_pad": OpSpec(
        {
            "fraction": Param(
                "range",
                (-0.1, 0.1),
                -0.45,
                1.0,
                True,
                help="per side: negative crops, positive pads; resized back",
            ),
            "fill": _FILL,
            "mode": _MODE,
        },
        True,
        "crop or pad each side independently, then resize to the original size",
    ),
    "brightness": OpSpec(
        {"delta": Param("range", (-0.1, 0.1), -1.0, 1.0, True)}, False, "add delta to every pixel"
    ),
    "contrast": OpSpec(
        {"factor": Param("range", (0.8, 1.2), 0.0, 10.0)},
        False,
        "scale distances from grey 0.5 by factor",
    ),
    "gamma": OpSpec({"gamma": Param("range", (0.8, 1.25), 0.05, 20.0)}, False, "x ** gamma"),
    "gaussian_noise": OpSpec(
        {"sigma": Param("range", (0.0, 0.05), 0.0, 1.0), "per_channel": Param("bool", False)},
        False,
        "add N(0, sigma) noise; sigma drawn per sample",
    ),
    "salt_pepper": OpSpec(
        {"amount": Param("range", (0.0, 0.02), 0.0, 1.0), "per_channel": Param("bool", False)},
        False,
        "set a fraction `amount` of pixels to 0 or 1 (half each)",
    ),
    "blur": OpSpec(
        {"sigma": Param("range", (0.1, 1.0), 0.0, 20.0, help="pixels")}, False, "Gaussian blur"
    ),
    "elastic": OpSpec(
        {
            "alpha": Param("range", (0.0, 10.0), 0.0, 200.0, help="pixels"),
            "sigma": Param("range", (2.0, 3.0), 0.1, 20.0, help="pixels"),
            "fill": _FILL,
            "mode": _MODE,
        },
        True,
        "displace pixels by smoothed uniform noise (Simard; imgaug ElasticTransformation)",
    ),
    "erasing": OpSpec(
        {
            "size": Param(
                "range", (0.1, 0.3), 0.0, 1.0, help="height and width, fractions of size"
            ),
            "value": Param("number", 0.0, 0.0, 1.0),
        },
        False,
        "fill one rectangle centred uniformly in the image (imgaug Cutout)",
    ),
}

PROBABILITY = Param("number", 1.0, 0.0, 1.0)


# ---- synthesis ops (augment.synth) ----------------------------------------------------------

SYNTH_OPS: dict[str, dict[str, Param]] = {
    "cutpaste": {
        "area": Param("range", (0.02, 0.15), 0.0, 1.0, help="patch area, fraction of image"),
        "aspect": Param("range", (0.3, 3.3), 0.05, 20.0, help="log-uniform"),
        "jitter": Param("number", 0.1, 0.0, 1.0, help="colour jitter of the patch"),
    },
    "scar": {
        "width": Param(
            "range", (0.01, 0.07), 0.0, 1.0, help="fraction of the shorter side, >= 1 px"
        ),
        "length": Param(
            "range", (0.04, 0.2), 0.0, 1.0, help="fraction of the shorter side, >= 3 px"
        ),
        "degrees": _deg((-45.0, 45.0)),
        "jitter": Param("number", 0.1, 0.0, 1.0),
    },
    "perlin": {
        "area": Param("range", (0.02, 0.2), 0.0, 1.0, help="thresholded-noise area"),
        "blend": Param(
            "range", (0.0, 0.8), 0.0, 1.0, help="DRAEM's b: weight kept of the original"
        ),
        "texture": Param("choice", "noise", choices=("noise", "pool")),
    },
    "local_elastic": {
        "radius": Param("range", (0.1, 0.25), 0.0, 1.0, help="fraction of the shorter side"),
        "displacement": Param("range", (0.03, 0.08), 0.0, 1.0, help="peak shift, fraction of side"),
    },
    "stroke_blob": {
        "shape": Param("choice", "any", choices=("any", "stroke", "blob")),
        "polarity": Param("choice", "any", choices=("any", "add", "erase")),
        "thickness": Param("range", (0.04, 0.09), 0.0, 1.0, help="fraction of the shorter side"),
        "length": Param("range", (0.15, 0.4), 0.0, 2.0, help="fraction of the shorter side"),
    },
    "patch_blend": {
        "size": Param("range", (0.1, 0.3), 0.0, 1.0, help="patch side, fraction of the image side"),
        "rescale": Param("range", (0.7, 1.3), 0.1, 10.0),
        "patches": Param("int_range", (1, 3), 1, 16),
        "blend": Param("choice", "poisson", choices=("poisson", "alpha")),
    },
    "region": {
        "fill": Param("choice", "any", choices=("any", "texture", "other", "blur", "tone", "warp", "flat",
                                                "grain"), help="what the region becomes"),
        "area": Param("range", (0.003, 0.15), 0.0, 1.0, help="fraction of the image, log-uniform"),
        "thin": Param("number", 0.3, 0.0, 1.0, help="probability of a thin curve instead of a region"),
        "opacity": Param("range", (0.3, 1.0), 0.0, 1.0, help="how much of the new content shows"),
    },
}

SYNTH_COMMON: dict[str, Param] = {
    "severity": Param("number", 0.5, 0.0, 1.0, open_low=True, help="bounds area and intensity"),
    "min_pixels": Param("int", 0, 0, 10**9, help="redraw below this many changed pixels; 0 = auto"),
    "max_tries": Param("int", 20, 1, 1000),
}
