"""One-file model bundles: safetensors tensors + a JSON header in the safetensors metadata.

Loading never unpickles: tensors come from safetensors, everything else is JSON, and the detector
class must be one registered in :data:`anomalib_lite.registry.DETECTORS`. The file is read once, through
one descriptor, into memory: the signature is verified on those bytes and the same bytes are
parsed (a file swapped between two opens cannot slip in). The header is strict: every field must
be there and known, duplicate JSON keys (tensor names included) are refused, every value is
checked. A checksum over the header and every tensor catches truncation and damage; writes go to
a temporary file that is renamed into place, so a failed save leaves nothing behind.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from .. import distributed
from . import signing
from .. import validate as v
from ..registry import COMMON_FITTED, DETECTORS, find
from ..registry import external as _external
from ..errors import AnomalyError, shown
from .header import (
    FORMAT,
    FORMAT_VERSION,
    _bounded,
    _check_header,
    _path,
    _preamble,
    _read_bytes,
    _verify_key,
    read_header,
)
from ..io import atomic_output, check_writable
from ..data.tiling import Tiling

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "read_header", "save"]

_KEY = KEY = "anomalib_lite"


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= 64:
        return value.tolist()
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, Tiling):
        return value.to_dict()
    if hasattr(value, "to_dict"):  # a TrainResult
        return _jsonable(value.to_dict())
    if hasattr(value, "to_config"):  # an augment.Pipeline: its config rebuilds it
        return value.to_config()
    if hasattr(value, "config") and hasattr(value, "name"):  # a backbones.FeatureExtractor object:
        return value.name  # its weights travel in the bundle's tensors, its config in "fitted"
    raise AnomalyError(f"cannot store a {type(value).__name__} in a bundle header")


def _checksum(header: dict, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in header.items() if k != "checksum"}
    h.update(json.dumps(body, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import torchvision

    from .. import __version__

    return {
        "anomalib_lite": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save(detector, path, sign=None) -> Path:
    """Write ``detector`` to ``path`` atomically; returns the path. ``sign``: an Ed25519 private
    key file (``anomaly keygen``) or key object; the signature covers the whole file. Under
    torchrun only rank 0 writes (every rank holds the same model)."""
    detector._require_fitted()
    path = check_writable(_path(path), "bundle")
    if not distributed.is_main():
        return path
    key = None
    if sign is not None:
        key = signing.load_private_key(sign) if isinstance(sign, (str, os.PathLike)) else sign
    tensors = detector._learned_state()
    for name in ("calibration_scores", "holdout_scores"):  # (holdout_scores: a series detector's held-out end)
        scores = getattr(detector, name + "_", None)
        if scores is not None:
            tensors[name] = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    tensors = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
    info = detector.data_info_ or {}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "detector": type(detector).__name__,
        "params": _jsonable(detector._bundle_params()),
        "fitted": _jsonable(detector._fitted_values()),
        "tiling": _jsonable(getattr(detector, "tiling_", None)),
        "normal_classes": _jsonable(info.get("classes")),
        "data": _jsonable(info) or None,
        "summary": detector.summary(),
        "world_size": int(getattr(detector, "world_size_", 1) or 1),  # processes that fitted it (torchrun)
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    header["checksum"] = _checksum(header, tensors)
    metadata = {_KEY: json.dumps(header)}
    if key is not None:
        metadata[signing.SIGNATURE_KEY] = signing.PLACEHOLDER
    data = save_bytes(tensors, metadata=metadata)  # in memory: safetensors' own temp files never appear
    if key is not None:
        data = signing.sign_bytes(data, key)
    with atomic_output(path, "bundle") as tmp:
        tmp.write_bytes(data)
    return path


def _read(path: Path, with_tensors: bool, verify=None) -> tuple[dict, dict[str, torch.Tensor]]:
    key = _verify_key(verify)
    data = _read_bytes(path, whole=with_tensors or key is not None)
    if key is not None:
        signing.verify_file(path, key, data)
    meta, names = _preamble(path, data)
    header = _check_header(path, meta)
    if not with_tensors:
        return header, {}
    try:
        tensors = load_bytes(data)
    except (SafetensorError, OSError, RuntimeError, ValueError, TypeError) as e:
        raise AnomalyError(f"{path}: not a readable bundle (truncated or not safetensors: {shown(str(e))})") from None
    if sorted(tensors) != sorted(names):
        raise AnomalyError(f"{path}: not a readable bundle (its tensor list does not parse the same twice)")
    return header, tensors


@_bounded
def load(path, device: str | None = None, verify=None):
    """Load a bundle written by :meth:`Detector.save`; never executes code from the file.

    Every header field is checked for type and range, and every tensor for name, shape and dtype
    against what the detector's parameters imply, before anything is built from them; a mismatch
    is one AnomalyError naming the field. ``verify``: a public key file (or key) whose signature
    the bundle must carry; by default ``$ANOMALY_VERIFY_KEY`` when set. An unsigned or changed
    bundle is then refused. Nothing but the bundle is opened (ImageNet weights, referenced by
    name and hash, come from torchvision's cache and their hash is checked).
    """
    path = _path(path)
    header, tensors = _read(path, with_tensors=True, verify=verify)
    if header.get("checksum") != _checksum(header, tensors):
        raise AnomalyError(f"{path}: checksum mismatch: the bundle was modified or damaged")
    name = header["detector"]
    cls = find(name)
    if cls is None:
        raise AnomalyError(f"{path}: unknown detector '{shown(name, 60)}'; known: {', '.join(sorted(DETECTORS))}")
    det = _with_params(path, cls, header["params"], device)
    fitted = header["fitted"]
    checks = {**COMMON_FITTED, **cls._fitted_checks}
    try:
        v.exact_fields(fitted, checks, "fitted", optional=cls._fitted_optional)
        values = v.check_all(fitted, checks, where="fitted.")
        det.tiling_ = _tiling(header["tiling"])
        det.data_info_ = header["data"]
        det.world_size_ = header["world_size"]
        cal, held = (tensors.pop(key, None) for key in ("calibration_scores", "holdout_scores"))
        if held is not None and det.input_kind != "series":
            raise AnomalyError(f"tensor 'holdout_scores' is not part of a {det._name}")
        for key, t in (("calibration_scores", cal), ("holdout_scores", held)):
            if t is not None and (t.dtype != torch.float64 or t.ndim != 1):
                raise AnomalyError(f"tensor '{key}': {_desc(t)}, expected a 1-D float64 tensor")
            if t is not None:
                _check_values(key, t)
                if len(t) > 1 and not bool((t[1:] >= t[:-1]).all()):
                    raise AnomalyError(f"tensor '{key}': not sorted (calibrate writes them sorted)")
    except AnomalyError as e:
        raise AnomalyError(f"{path}: {e}") from None
    for key, value in values.items():
        setattr(det, key, value)
    det.calibration_scores_ = None if cal is None else cal.numpy()
    if det.input_kind == "series":
        det.holdout_scores_ = None if held is None else held.numpy()
    try:
        det.device_ = det._resolve_device()
        _restore(det, tensors)
        det._after_load()
    except AnomalyError as e:
        raise AnomalyError(f"{path}: {e}") from None
    return det


def _with_params(path: Path, cls, params, device):
    """The detector with the bundle's parameters, each checked (types, ranges). A parameter
    added after the bundle was written (``cls._params_added``) takes the value that gives the
    behaviour the bundle was fitted with."""
    if isinstance(params, dict):
        params = {**{k: val for k, val in cls._params_added.items() if k not in params}, **params}
    try:
        v.exact_fields(params, cls._get_param_names(), f"params ({cls.__name__})")
    except AnomalyError as e:
        raise AnomalyError(f"{path}: {e}") from None
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    params = {k: tuple(val) if isinstance(defaults.get(k), tuple) and isinstance(val, list) else val
              for k, val in params.items()}  # JSON has lists only: tuples come back as tuples
    if device is not None and "device" in cls._get_param_names():
        params["device"] = device
    det = cls(**params)
    try:
        det._check_params()
    except AnomalyError as e:
        raise AnomalyError(f"{path}: params.{e}") from None
    return det


def _desc(t: torch.Tensor) -> str:
    return f"{str(t.dtype).replace('torch.', '')} {list(t.shape)}"


#: learned tensors a loaded bundle may build, in elements (refused beyond: absurd sizes)
MAX_ELEMENTS = 1 << 32


def _restore(det, tensors: dict[str, torch.Tensor]) -> None:
    """Check the bundle's tensors against the detector's learned skeletons (names, shapes,
    dtypes: built on the meta device, nothing allocated), then load them."""
    skeleton = det._build_learned("meta")
    expected: dict[str, torch.Tensor] = {}
    for attr, module in skeleton.items():
        if module is None or _external(module):
            continue
        expected.update({f"{attr.rstrip('_')}.{k}": t for k, t in module.state_dict().items()})
    arrays = det._learned_arrays()
    for attr, (shape, dtype, _) in arrays.items():
        expected[attr.rstrip("_")] = torch.empty(shape, dtype=dtype, device="meta")
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        raise AnomalyError(f"tensor '{missing[0]}' is missing ({len(missing)} of {len(expected)} expected ones)")
    if extra:
        raise AnomalyError(f"tensor '{extra[0][:80]}' is not part of a {det._name} with these parameters")
    for key, want in expected.items():
        got = tensors[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise AnomalyError(f"tensor '{key}': {_desc(got)}, expected {_desc(want)}")
    if sum(t.numel() for t in expected.values()) > MAX_ELEMENTS:
        raise AnomalyError(f"the learned state would hold more than {MAX_ELEMENTS:,} values; refused")
    for key in expected:
        _check_values(key, tensors[key])
    for attr in det._positive_learned:
        t = tensors[attr.rstrip("_")]
        if t.numel() and not bool((t > 0).all()):
            raise AnomalyError(f"tensor '{attr.rstrip('_')}': must hold positive values (a scale)")
    real = det._build_learned(det.device_)
    for attr, module in real.items():
        if module is not None and not _external(module):
            prefix = attr.rstrip("_") + "."
            module.load_state_dict({k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)})
        setattr(det, attr, module)
    for attr, (_, _, kind) in arrays.items():
        t = tensors[attr.rstrip("_")]
        setattr(det, attr, t.numpy() if kind == "numpy" else t.to(det.device_))


def _check_values(key: str, t: torch.Tensor) -> None:
    """What any learned tensor must hold: finite numbers (a NaN or an infinity in a learned
    value only ever makes NaN scores), and non-negative variances."""
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise AnomalyError(f"tensor '{key}': {bad} of {t.numel()} values are NaN or infinite")
    if key.endswith(("running_var", "scatter")) and t.numel() and bool((_diagonal(t) < 0).any()):
        raise AnomalyError(f"tensor '{key}': negative variances")


def _diagonal(t: torch.Tensor) -> torch.Tensor:
    """The variances a tensor holds: itself (running_var), or the diagonal of scatter matrices."""
    return torch.diagonal(t, dim1=-2, dim2=-1) if t.ndim >= 2 and t.shape[-1] == t.shape[-2] else t


def _tiling(d) -> Tiling | None:
    """The tiling a bundle was fitted with (its fields checked with the header)."""
    return None if d is None else Tiling(d["tile"], float(d["overlap"]))
