"""One-file model bundles: safetensors tensors + a JSON header in the safetensors metadata.

Loading never unpickles: tensors come from safetensors, everything else is JSON, and the detector
class must be one registered in :data:`anomalib_lite.base.DETECTORS`. A checksum over the header and
every tensor catches truncation and tampering; writes go to a temporary file that is renamed
into place, so a failed save leaves nothing behind.
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
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import signing
from .base import DETECTORS, Detector
from .errors import AnomalyError
from .io import atomic_output, check_writable
from .tiling import Tiling

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "read_header", "save"]

FORMAT = "anomalib_lite.bundle"
FORMAT_VERSION = 1
_KEY = "anomalib_lite"


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
    if isinstance(value, torch.device):
        return str(value)
    if hasattr(value, "config") and hasattr(value, "name"):  # a backbones.FeatureExtractor object:
        return value.name  # its weights travel in the bundle's tensors, its config in "backbone"
    raise TypeError(f"cannot store {type(value).__name__} in a bundle header")


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

    from . import __version__

    return {
        "anomalib_lite": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save(detector: Detector, path, sign=None) -> Path:
    """Write ``detector`` to ``path`` atomically; returns the path. ``sign``: an Ed25519 private
    key file (``anomaly keygen``) or key object; the signature covers the whole file."""
    detector._require_fitted()
    path = check_writable(_path(path), "bundle")
    key = None
    if sign is not None:
        key = signing.load_private_key(sign) if isinstance(sign, (str, os.PathLike)) else sign
    tensors, meta = detector._get_state()
    cal = detector.calibration_scores_
    if cal is not None:
        tensors["calibration_scores"] = torch.as_tensor(np.asarray(cal, dtype=np.float64))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    info = detector.data_info_ or {}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "detector": type(detector).__name__,
        "params": _jsonable(detector.get_params()),
        "backbone": _jsonable(meta.pop("backbone", None)),
        "preprocessing": _jsonable(meta.pop("preprocessing", None)),
        "threshold": detector.threshold_,
        "fpr": detector.fpr_,
        "normal_classes": info.get("classes"),
        "data": _jsonable(info) or None,
        "input_shape": list(detector.input_shape_),
        "tiling": None if getattr(detector, "tiling_", None) is None else detector.tiling_.to_dict(),
        "n_seen": int(detector.n_seen_),
        "state": _jsonable(meta),
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    header["checksum"] = _checksum(header, tensors)
    metadata = {_KEY: json.dumps(header)}
    if key is not None:
        metadata[signing.SIGNATURE_KEY] = signing.PLACEHOLDER
    with atomic_output(path, "bundle") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        if key is not None:
            signing.sign_file(tmp, key)
    return path


def _path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise AnomalyError(f"bundle path: expected a file name, got {path!r}")
    return Path(path)


def _verify(path: Path, verify) -> None:
    """Check the signature when a public key is given (or set in $ANOMALY_VERIFY_KEY)."""
    verify = verify if verify is not None else signing.verify_key_from_env()
    if verify is None or verify is False:
        return
    key = signing.load_public_key(verify) if isinstance(verify, (str, os.PathLike)) else verify
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AnomalyError(f"{path}: cannot read ({e.strerror})") from None
    signing.verify_file(path, key, data)


def _check_header(path: Path, meta: dict | None) -> dict:
    meta = meta or {}
    if _KEY not in meta:
        raise AnomalyError(f"{path}: a safetensors file but not an anomalib_lite bundle (no header)")
    try:
        header = json.loads(meta[_KEY])
    except json.JSONDecodeError:
        raise AnomalyError(f"{path}: bundle header is not valid JSON (file damaged)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise AnomalyError(f"{path}: not an anomalib_lite bundle (format field missing)")
    if not isinstance(header.get("format_version"), int) or header["format_version"] > FORMAT_VERSION:
        raise AnomalyError(
            f"{path}: bundle format {header.get('format_version')} is not one this "
            f"anomalib_lite reads (up to {FORMAT_VERSION}); upgrade anomalib_lite"
        )
    return header


def _read(path: Path, with_tensors: bool, verify=None) -> tuple[dict, dict[str, torch.Tensor]]:
    if not path.exists():
        raise AnomalyError(f"{path}: bundle not found")
    if path.is_dir():
        raise AnomalyError(f"{path}: is a folder, not a bundle")
    if not path.is_file():
        raise AnomalyError(f"{path}: not a regular file")
    _verify(path, verify)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = _check_header(path, handle.metadata())
            names = list(handle.keys()) if with_tensors else []
            tensors = {k: handle.get_tensor(k) for k in names}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise AnomalyError(f"{path}: not a readable bundle (truncated or not safetensors: {e})") from None
    return header, tensors


def read_header(path, verify=None) -> dict:
    """The JSON header of a bundle, without loading its tensors (``verify``: as for :func:`load`)."""
    return _read(_path(path), with_tensors=False, verify=verify)[0]


def load(path, device: str | None = None, verify=None) -> Detector:
    """Load a bundle written by :meth:`Detector.save`; never executes code from the file.

    ``verify``: a public key file (or key) whose signature the bundle must carry; by default
    ``$ANOMALY_VERIFY_KEY`` when set. An unsigned or changed bundle is then refused.
    """
    path = _path(path)
    header, tensors = _read(path, with_tensors=True, verify=verify)
    if header.get("checksum") != _checksum(header, tensors):
        raise AnomalyError(f"{path}: checksum mismatch: the bundle was modified or damaged")
    cls = DETECTORS.get(header.get("detector"))
    if cls is None:
        raise AnomalyError(
            f"{path}: unknown detector '{header.get('detector')}'; known: {', '.join(sorted(DETECTORS))}"
        )
    params = dict(header.get("params") or {})
    unknown = set(params) - set(cls._param_names())
    if unknown:
        raise AnomalyError(f"{path}: {cls.__name__} has no parameter '{min(unknown)}'")
    if device is not None and "device" in params:
        params["device"] = device
    det = cls(**params)
    cal = tensors.pop("calibration_scores", None)
    det.threshold_ = header.get("threshold")
    det.fpr_ = header.get("fpr")
    det.calibration_scores_ = None if cal is None else cal.numpy()
    det.input_shape_ = tuple(header["input_shape"])
    det.tiling_ = Tiling.from_dict(header.get("tiling"))
    det.n_seen_ = int(header.get("n_seen", 0))
    det.data_info_ = header.get("data")
    meta = dict(header.get("state") or {})
    meta["backbone"] = header.get("backbone")
    meta["preprocessing"] = header.get("preprocessing")
    try:
        det._set_state(tensors, meta)
    except KeyError as e:
        raise AnomalyError(f"{path}: bundle lacks state {e} for {cls.__name__}") from None
    return det
