"""A bundle's header, read without torch: what ``anomaly info`` shows, and the frame every load checks.

A bundle is a safetensors file: an 8-byte little-endian length, that many bytes of JSON (tensor
names, dtypes, shapes, byte offsets, and ``__metadata__``, whose ``anomalib_lite`` entry is the
header), then the tensor bytes. The file is read once, through one descriptor (:func:`read_bytes`):
the signature is verified on those bytes and the same bytes are parsed. :func:`read_header` reads
only the preamble (the whole file when a signature is verified) with the standard library, checks
the header's frame (format, version, every field present and known and of its type; duplicate JSON
keys refused) and returns it; :func:`describe_header` turns it into the lines ``anomaly info``
prints. :mod:`anomalib_lite.bundles.bundle` reads the tensors and builds detectors on the same checks.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from . import signing
from .. import validate as v
from ..errors import AnomalyError, shown
from ..io import open_to_read

__all__ = ["FORMAT", "FORMAT_VERSION", "describe_header", "read_header"]

FORMAT = "anomalib_lite.bundle"  # the format's name, written in every bundle (not a module path)
FORMAT_VERSION = 2  # 2: generic learned state ("fitted" values + module state dicts)
_KEY = "anomalib_lite"


def _path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise AnomalyError(f"bundle path: expected a file name, got {path!r}")
    return Path(path)


#: the safetensors header (JSON) a bundle may have, in bytes (safetensors' own limit: 100 MB)
MAX_HEADER = 100_000_000
#: the fields of a bundle's header: every one is written, every one must be there
_TOP = ("format", "format_version", "detector", "params", "fitted", "tiling", "normal_classes", "data", "summary",
        "world_size", "versions", "created", "checksum")
#: format versions this loader reads
KNOWN_VERSIONS = (FORMAT_VERSION,)


def _verify_key(verify):
    """The key to verify against: ``verify``, else $ANOMALY_VERIFY_KEY; None: no verification.
    An empty or blank name is an error (never "verification off")."""
    if verify is False:
        return None
    if verify is None:
        verify = signing.verify_key_from_env()
    if verify is None:
        return None
    signing.check_key_name(verify, "verify")
    return signing.load_public_key(verify) if isinstance(verify, (str, os.PathLike)) else verify


def _read_bytes(path: Path, whole: bool) -> bytes:
    """The bundle's bytes, through one descriptor (a regular file: FIFOs and devices are refused
    without blocking). ``whole=False``: the safetensors preamble only (8 + header bytes).
    Verification and parsing then use these same bytes: nothing is opened a second time."""
    with os.fdopen(open_to_read(path, "bundle"), "rb") as fh:  # (a regular file)
        try:
            if whole:
                return fh.read()
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            return head + fh.read(min(n, MAX_HEADER + 1))
        except OSError as e:
            raise AnomalyError(f"{path}: cannot read ({e.strerror})") from None


class _Duplicate(Exception):
    pass


def _unique(pairs):
    """json object hook: an object naming one key twice is refused (two readers could otherwise
    take different values of it)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        raise _Duplicate(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


def _json(text, where: str, what: str):
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except _Duplicate as e:
        raise AnomalyError(f"{where}: {what} names '{shown(e.args[0], 80)}' twice (file tampered with)") from None
    except json.JSONDecodeError:
        raise AnomalyError(f"{where}: {what} is not valid JSON (file damaged)") from None
    except (ValueError, RecursionError):  # a number of thousands of digits, nesting thousands deep
        raise AnomalyError(f"{where}: {what} holds a number too long or nesting too deep to read") from None


def _preamble(path: Path, data: bytes, size: int | None = None) -> tuple[dict, list[str]]:
    """(safetensors metadata, tensor names) parsed from the bytes, duplicates refused; with the
    file's ``size`` (``data`` holding the preamble only), the tensors' byte offsets must cover
    exactly the rest of the file, as safetensors requires (a truncated bundle is refused here)."""
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if n < 2 or n > MAX_HEADER or 8 + n > len(data):
        raise AnomalyError(f"{path}: not a readable bundle (truncated, or not a safetensors file)")
    try:
        text = data[8 : 8 + n].decode("utf-8")
    except UnicodeDecodeError:
        raise AnomalyError(f"{path}: not a readable bundle (its safetensors header is not UTF-8)") from None
    pre = _json(text, str(path), "the safetensors header")
    if not isinstance(pre, dict):
        raise AnomalyError(f"{path}: not a readable bundle (its safetensors header is not an object)")
    meta = pre.pop("__metadata__", None)
    if not isinstance(meta, dict):
        raise AnomalyError(f"{path}: a safetensors file but not an anomalib_lite bundle (no header)")
    if size is not None:
        ends = [e.get("data_offsets") if isinstance(e, dict) else None for e in pre.values()]
        if not all(isinstance(o, list) and len(o) == 2 and all(type(x) is int for x in o) and 0 <= o[0] <= o[1]
                   for o in ends):
            raise AnomalyError(f"{path}: not a readable bundle (a tensor without valid byte offsets)")
        if max((o[1] for o in ends), default=0) != size - 8 - n:
            raise AnomalyError(f"{path}: not a readable bundle (truncated: its tensors need "
                               f"{max((o[1] for o in ends), default=0)} bytes, the file holds {size - 8 - n})")
    return meta, list(pre)


def _check_header(path: Path, meta: dict) -> dict:
    """The bundle header from the safetensors metadata; its frame checked (format, version, the
    exact set of fields, and the type of each: objects where objects belong)."""
    unknown = sorted(set(meta) - {_KEY, signing.SIGNATURE_KEY})
    if _KEY not in meta:
        raise AnomalyError(f"{path}: a safetensors file but not an anomalib_lite bundle (no header)")
    if unknown:
        raise AnomalyError(f"{path}: unknown metadata entry '{shown(unknown[0], 80)}' (not written by anomalib_lite)")
    if not isinstance(meta[_KEY], str):
        raise AnomalyError(f"{path}: bundle header is not JSON text")
    header = _json(meta[_KEY], str(path), "bundle header")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise AnomalyError(f"{path}: not an anomalib_lite bundle (format field missing)")
    version = header.get("format_version")
    if type(version) is not int or version not in KNOWN_VERSIONS:
        raise AnomalyError(
            f"{path}: bundle format {shown(v.short_repr(version), 40)} is not one this anomalib_lite reads "
            f"({', '.join(map(str, KNOWN_VERSIONS))}); "
            + ("upgrade anomalib_lite" if type(version) is int and version > FORMAT_VERSION else "the header is damaged")
        )
    try:
        v.exact_fields(header, _TOP, "header")
        v.check_all(header, _TOP_CHECKS)
    except AnomalyError as e:
        raise AnomalyError(f"{path}: {e}") from None
    return header


_NAME = v.text(256)
#: what a bundle records about its training data (images: spec, n, classes; series: also the
#: columns): shown and used to read series the same way, so every field is checked
_DATA = {"spec": v.text(4096), "n": v.integer(0, 1 << 62), "classes": v.none_or(v.list_of(_NAME, 4096)),
         "columns": v.list_of(_NAME, 4096, 1), "time_column": v.none_or(_NAME),
         "header": v.none_or(v.list_of(_NAME, 4096, 1)), "route": v.text(1000)}
_SERIES_DATA = ("columns", "time_column", "header")


def _data_check(value, name):
    if value is None:
        return None
    if not isinstance(value, dict) or len(json.dumps(value)) > 1 << 16:
        raise AnomalyError(f"{name}: expected a small object describing the training data")
    optional = (_SERIES_DATA if not set(_SERIES_DATA) & set(value) else ()) + ("route",)  # route: `anomaly fit` chose
    return v.record(_DATA, optional)(value, name)


_TOP_CHECKS: dict[str, v.Check] = {
    "detector": v.text(64),
    "params": v.mapping("an object of parameters"),
    "fitted": v.mapping("an object of fitted values"),
    "tiling": v.none_or(v.record({"tile": v.integer(8, 1 << 15), "overlap": v.number(0, 1, hi_open=True)})),
    "normal_classes": v.none_or(v.list_of(_NAME, 4096)),
    "data": _data_check,
    "summary": v.text(1000),
    "world_size": v.integer(1, 1 << 20),
    "versions": v.record({k: v.text(64) for k in ("anomalib_lite", "torch", "torchvision", "numpy", "python")}),
    "created": v.text(64),
    "checksum": v.hex_digest(64),
}


def _bounded(fn):
    """A loader whose refusals are one bounded line: whatever a message quotes from the file, it
    comes out with control characters escaped and at most a few hundred characters."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AnomalyError as e:
            text = str(e)
            if len(text) > _MESSAGE or not text.isprintable():
                raise AnomalyError(shown(text, _MESSAGE)) from None
            raise

    return wrapper


#: the longest refusal a loader prints (a path, the field's name, at most 200 characters of it)
_MESSAGE = 600


@_bounded
def read_header(path, verify=None) -> dict:
    """The JSON header of a bundle, without loading its tensors or importing torch (``verify``: as
    for :func:`anomalib_lite.bundles.bundle.load`).
    The header's frame is checked (format, version, every field present and of its type); the
    detector-specific checks run in :func:`load`."""
    path = _path(path)
    key = _verify_key(verify)
    data = _read_bytes(path, whole=key is not None)
    if key is not None:
        signing.verify_file(path, key, data)
    try:
        size = len(data) if key is not None else os.stat(path).st_size
    except OSError as e:
        raise AnomalyError(f"{path}: cannot read ({e.strerror})") from None
    return _check_header(path, _preamble(path, data, size)[0])


#: parameters that describe a backbone: shown only when the bundle has one
_BACKBONE_PARAMS = ("weights", "layers", "image_size", "normalize", "freeze")


def _shown_params(params: dict) -> dict:
    """A detector's parameters as ``info`` shows them: without a backbone (raw pixels), the
    backbone's settings (weights, layers, ...) are unused defaults and left out."""
    if not isinstance(params, dict) or params.get("backbone") is not None or "backbone" not in params:
        return params
    return {k: val for k, val in params.items() if k not in _BACKBONE_PARAMS}


def _vectors(header: dict) -> bool:
    """Whether the bundle was fitted on vectors (N, D): no pixels, whatever its backbone says."""
    shape = (header.get("fitted") or {}).get("input_shape_") if isinstance(header.get("fitted"), dict) else None
    return isinstance(shape, list) and len(shape) == 1


def describe_header(header: dict, as_json: bool = False) -> str:
    """A bundle header as ``key: value`` lines, one level of nesting indented (or as JSON, its
    control characters escaped by JSON). Every key and value is untrusted text: each is shown
    with control characters escaped and cut to 200 characters, so no field can forge a line.
    A bundle without a backbone says ``backbone: none (raw pixels)`` (vectors: ``none (the values
    themselves)``) and shows no weights."""
    if as_json:
        return json.dumps(header, indent=2, sort_keys=True)

    def text(value) -> str:
        return shown(json.dumps(value) if isinstance(value, (dict, list)) else str(value))

    lines = []
    for key, value in header.items():
        if key == "summary" and not value:
            continue  # nothing learned worth a line (e.g. a network's weights)
        if key == "params":
            value = _shown_params(value)
        if isinstance(value, dict):
            lines.append(f"{shown(key)}:")
            for k, val in value.items():
                if key == "params" and k == "backbone" and val is None:
                    val = "none (the values themselves)" if _vectors(header) else "none (raw pixels)"
                lines.append(f"  {shown(k)}: {text(val)}")
        else:
            lines.append(f"{shown(key)}: {text(value)}")
    return "\n".join(lines)
