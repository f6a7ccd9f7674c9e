"""A bundle's header, read without torch: what ``anomaly info`` shows.

A bundle is a safetensors file: an 8-byte little-endian length, that many bytes of JSON (tensor
names, dtypes, shapes, byte offsets, and ``__metadata__``, whose ``anomalib_lite`` entry is the
header), then the tensor bytes. :func:`read_header` reads the preamble with the standard library
only (the layout is checked as safetensors checks it: offsets inside the file, the data fully
covered), verifies the signature when a key is given, and returns the header;
:func:`describe_header` turns it into the lines ``anomaly info`` prints. :mod:`anomalib_lite.bundle`
reads tensors and builds detectors on top of the same checks.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import signing
from .errors import AnomalyError

__all__ = ["FORMAT", "FORMAT_VERSION", "describe_header", "read_header"]

FORMAT = "anomalib_lite.bundle"
FORMAT_VERSION = 2  # 2: generic learned state ("fitted" values + module state dicts)
KEY = "anomalib_lite"
MAX_PREAMBLE = 100_000_000  # bytes of safetensors JSON (safetensors' own cap)


def bundle_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise AnomalyError(f"bundle path: expected a file name, got {path!r}")
    return Path(path)


def check_file(path: Path) -> None:
    """The bundle must be an existing regular file (not a folder, FIFO or device)."""
    if not path.exists():
        raise AnomalyError(f"{path}: bundle not found")
    if path.is_dir():
        raise AnomalyError(f"{path}: is a folder, not a bundle")
    if not path.is_file():
        raise AnomalyError(f"{path}: not a regular file")


def verify_signature(path: Path, key) -> None:
    """Check the signature when a public key is given (or set in $ANOMALY_VERIFY_KEY)."""
    key = key if key is not None else signing.verify_key_from_env()
    if key is None or key is False:
        return
    key = signing.load_public_key(key) if isinstance(key, (str, os.PathLike)) else key
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AnomalyError(f"{path}: cannot read ({e.strerror})") from None
    signing.verify_file(path, key, data)


def check_header(path: Path, meta: dict | None) -> dict:
    """The anomalib_lite header held in safetensors metadata ``meta``, parsed and checked for format."""
    meta = meta or {}
    if KEY not in meta:
        raise AnomalyError(f"{path}: a safetensors file but not an anomalib_lite bundle (no header)")
    try:
        header = json.loads(meta[KEY])
    except json.JSONDecodeError:
        raise AnomalyError(f"{path}: bundle header is not valid JSON (file damaged)") from None
    except (ValueError, RecursionError):  # a number of thousands of digits, nesting thousands deep
        raise AnomalyError(f"{path}: bundle header holds a number too long or nesting too deep to read") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise AnomalyError(f"{path}: not an anomalib_lite bundle (format field missing)")
    if not isinstance(header.get("format_version"), int) or header["format_version"] > FORMAT_VERSION:
        raise AnomalyError(
            f"{path}: bundle format {header.get('format_version')} is not one this "
            f"anomalib_lite reads (up to {FORMAT_VERSION}); upgrade anomalib_lite"
        )
    return header


def _metadata(path: Path) -> dict | None:
    """The safetensors ``__metadata__`` of ``path``, its layout checked (no tensor is read)."""
    bad = lambda why: AnomalyError(f"{path}: not a readable bundle (truncated or not safetensors: {why})")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 0 or n > MAX_PREAMBLE or 8 + n > size:
                raise bad("the header length does not fit the file")
            raw = fh.read(n)
    except OSError as e:
        raise AnomalyError(f"{path}: cannot read ({e.strerror})") from None
    try:
        table = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad("the header is not JSON") from None
    if not isinstance(table, dict):
        raise bad("the header is not a JSON object")
    end = 0
    for name, entry in table.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise bad(f"tensor {str(name)[:60]!r} has no valid data offsets")
        end = max(end, offsets[1])
    if end != size - 8 - n:
        raise bad(f"the tensors need {end} bytes of data, the file holds {size - 8 - n}")
    meta = table.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise bad("__metadata__ is not a map of strings")
    return meta


def read_header(path, verify=None) -> dict:
    """The JSON header of a bundle, without loading its tensors or importing torch (``verify``: a
    public key file whose signature the bundle must carry; default ``$ANOMALY_VERIFY_KEY``)."""
    path = bundle_path(path)
    check_file(path)
    verify_signature(path, verify)
    return check_header(path, _metadata(path))


#: parameters that describe a backbone: shown only when the bundle has one
_BACKBONE_PARAMS = ("weights", "layers", "image_size", "normalize", "freeze")


def _shown_params(params: dict) -> dict:
    """A detector's parameters as ``info`` shows them: without a backbone (raw pixels), the
    backbone's settings (weights, layers, ...) are unused defaults and left out."""
    if not isinstance(params, dict) or params.get("backbone") is not None or "backbone" not in params:
        return params
    return {k: v for k, v in params.items() if k not in _BACKBONE_PARAMS}


def describe_header(header: dict, as_json: bool = False) -> str:
    """A bundle header as ``key: value`` lines, one level of nesting indented (or as JSON).
    A bundle without a backbone says ``backbone: none (raw pixels)`` and shows no weights."""
    if as_json:
        return json.dumps(header, indent=2, sort_keys=True)
    lines = []
    for key, value in header.items():
        if key == "summary" and not value:
            continue  # nothing learned worth a line (e.g. a network's weights)
        if key == "params":
            value = _shown_params(value)
        if isinstance(value, dict):
            lines.append(f"{key}:")
            for k, v in value.items():
                if key == "params" and k == "backbone" and v is None:
                    v = "none (raw pixels)" if header.get("detector") != "Continuation" else None
                lines.append(f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
        else:
            lines.append(f"{key}: {json.dumps(value) if isinstance(value, list) else value}")
    return "\n".join(lines)
