"""The one input normaliser: everything a detector accepts becomes a stream of :class:`Batch`.

Accepted inputs: a tensor or ndarray shaped (N,H,W), (N,C,H,W), (N,H,W,C) with C in {1,3,4}, or
(N,D); an ``(x, y)`` pair of such arrays; a torch ``Dataset`` or ``DataLoader``; a data source from
:mod:`anomalib_lite.sources`; or any iterable of batches or of ``(x, y)`` tuples. ``uint8`` (and
``bool``) arrays are read as 8-bit image data and scaled to [0, 1]; everything else becomes
float32 as is. NaN and inf are rejected with the index of the first bad sample.
Detectors never re-implement any of this.

Time series go through :func:`iter_series` instead: a (T,) or (T, D) array or tensor, an
``(x, y)`` pair with 0/1 labels per step, a series source (CSV, NAB), or an iterable of such
chunks, one continuous series. Values are taken as they are (no 8-bit scaling); NaN gaps are
rejected unless filled first with :func:`fill_gaps` (the CSV reader does it with ``nan=``).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import AnomalyError

__all__ = [
    "DEFAULT_BATCH_SIZE", "NAN_POLICIES", "Batch", "collect", "fill_gaps", "iter_batches", "iter_series",
    "to_float_tensor", "to_series_tensor",
]

DEFAULT_BATCH_SIZE = 256


@dataclass
class Batch:
    """One minibatch: float32 samples, optional integer targets, global sample indices."""

    x: torch.Tensor
    y: torch.Tensor | None
    index: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _is_array(obj) -> bool:
    return isinstance(obj, (np.ndarray, torch.Tensor))


def to_float_tensor(x, where: str = "data", offset: int = 0) -> torch.Tensor:
    """Convert one array to a float32 tensor in the canonical layout, or raise AnomalyError.

    ``offset`` is the global index of the first sample, so errors name the right sample.
    """
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise AnomalyError(f"{where}: array of dtype {x.dtype} is not numeric")
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise AnomalyError(f"{where}: expected an array or tensor, got {type(x).__name__}")
    integral = x.dtype in (torch.uint8, torch.bool)
    if integral:
        x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
    elif x.is_complex():
        raise AnomalyError(f"{where}: complex values are not supported")
    else:
        x = x.to(torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(1)  # (N,H,W) -> (N,1,H,W)
    elif x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)  # channels-last images from PIL/OpenCV -> (N,C,H,W)
    if x.ndim not in (2, 4):
        raise AnomalyError(
            f"{where}: array of rank {x.ndim} (shape {tuple(x.shape)}); "
            "expected (N,H,W), (N,C,H,W) or (N,D)"
        )
    if not integral and x.shape[0] > 0 and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).nonzero()[0, 0].item()
        kind = "NaN" if torch.isnan(x[bad]).any() else "inf"
        raise AnomalyError(f"{where}: sample {offset + bad} contains {kind}")
    return x.contiguous()


def _to_targets(y, n: int, where: str) -> torch.Tensor | None:
    if y is None:
        return None
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if y.ndim != 1 or y.shape[0] != n:
        raise AnomalyError(f"{where}: {tuple(y.shape)} labels for {n} samples")
    return y.to(torch.int64)


def _split_item(item):
    """An item of an iterable is a batch, an (x, y) pair, or a dict with 'x'/'image' and 'y'."""
    if isinstance(item, dict):
        x = next((item[k] for k in ("x", "image", "images", "input") if k in item), None)
        y = next((item[k] for k in ("y", "label", "labels", "target") if k in item), None)
        return x, y
    if isinstance(item, (tuple, list)) and len(item) == 2 and _is_array(item[0]):
        return item[0], item[1]
    if isinstance(item, (tuple, list)) and len(item) == 1:
        return item[0], None
    return item, None


def _raw_batches(data, batch_size: int) -> Iterator[tuple]:
    """Yield (x, y) pairs of raw arrays, before conversion."""
    if hasattr(data, "batches") and callable(data.batches):  # anomalib_lite.sources.DataSource
        yield from data.batches(batch_size)
        return
    if _is_array(data):
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size], None
        if len(data) == 0:
            yield data, None
        return
    if (
        isinstance(data, tuple)
        and len(data) == 2
        and _is_array(data[0])
        and (data[1] is None or _is_array(data[1]) or isinstance(data[1], list))
        and (data[1] is None or len(data[1]) == len(data[0]))
    ):
        x, y = data
        y = None if y is None else np.asarray(y) if isinstance(y, list) else y
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], None if y is None else y[i : i + batch_size]
        return
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(
        data, torch.utils.data.IterableDataset
    ):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise AnomalyError(
            f"data: cannot read a {type(data).__name__}; expected an array, a tensor, "
            "a DataLoader or an iterable of batches"
        )
    for item in data:
        yield _split_item(item)


def iter_batches(data, batch_size: int = DEFAULT_BATCH_SIZE, where: str = "data") -> Iterator[Batch]:
    """Normalise ``data`` into a stream of :class:`Batch` with consistent sample shape.

    Raises AnomalyError for empty data, NaN/inf, a bad rank, or batches whose sample shape differs
    from the first batch's.
    """
    if batch_size < 1:
        raise AnomalyError(f"batch_size: must be >= 1, got {batch_size}")
    start, shape = 0, None
    for x, y in _raw_batches(data, batch_size):
        x = to_float_tensor(x, where=where, offset=start)
        n = x.shape[0]
        if n == 0:
            continue
        if shape is None:
            shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != shape:
            raise AnomalyError(
                f"{where}: sample {start} has shape {tuple(x.shape[1:])}, "
                f"earlier samples {shape}"
            )
        yield Batch(x, _to_targets(y, n, where), torch.arange(start, start + n))
        start += n
    if start == 0:
        raise AnomalyError(f"{where}: no samples")


# ---------------------------------------------------------------- time series

#: what to do with NaN gaps in a series: refuse them, or fill them by linear interpolation
NAN_POLICIES = ("reject", "interpolate")


def fill_gaps(x: np.ndarray, nan: str = "reject", where: str = "data", offset: int = 0) -> np.ndarray:
    """Handle NaN gaps in a (T, D) series: ``"reject"`` raises naming the first gap,
    ``"interpolate"`` fills each channel linearly between its neighbours (a gap at either end
    takes the nearest value). A channel with no value at all is always an error."""
    if nan not in NAN_POLICIES:
        raise AnomalyError(f"nan='{nan}': unknown; use one of {', '.join(NAN_POLICIES)}")
    x = np.array(x, dtype=np.float64, copy=True)
    gaps = np.isnan(x)
    if not gaps.any():
        return x
    if nan == "reject":
        t, d = np.argwhere(gaps)[0]
        chan = f" (channel {d})" if x.shape[1] > 1 else ""
        raise AnomalyError(
            f"{where}: time step {offset + t}{chan} is NaN; fill gaps with nan='interpolate' "
            "(--nan interpolate) or remove them"
        )
    steps = np.arange(len(x))
    for d in range(x.shape[1]):
        ok = ~gaps[:, d]
        if not ok.any():
            raise AnomalyError(f"{where}: channel {d} has no values, only NaN")
        x[~ok, d] = np.interp(steps[~ok], steps[ok], x[ok, d])
    return x


def to_series_tensor(x, where: str = "data", offset: int = 0) -> torch.Tensor:
    """One chunk of a series as a float32 (n, D) tensor; a scalar is one step of one channel."""
    if not _is_array(x):
        try:
            x = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise AnomalyError(f"{where}: cannot read a {type(x).__name__} as series values") from None
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise AnomalyError(f"{where}: array of dtype {x.dtype} is not numeric")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if x.is_complex():
        raise AnomalyError(f"{where}: complex values are not supported")
    x = x.to(torch.float32)
    if x.ndim == 0:
        x = x.reshape(1, 1)
    elif x.ndim == 1:
        x = x[:, None]  # (T,) -> (T, 1)
    elif x.ndim != 2:
        raise AnomalyError(
            f"{where}: array of rank {x.ndim} (shape {tuple(x.shape)}) is not a series; expected "
            "(T,) or (T, D); embed image frames first (anomalib_lite.Featurizer)"
        )
    if x.shape[0] and not torch.isfinite(x).all():
        t, d = (~torch.isfinite(x)).nonzero()[0].tolist()
        kind = "NaN" if torch.isnan(x[t, d]) else "inf"
        chan = f" (channel {d})" if x.shape[1] > 1 else ""
        hint = "; fill gaps with anomalib_lite.data.fill_gaps(x, 'interpolate')" if kind == "NaN" else ""
        raise AnomalyError(f"{where}: time step {offset + t}{chan} is {kind}{hint}")
    return x.contiguous()


def _series_labels(y, n: int, where: str, offset: int) -> torch.Tensor | None:
    if y is None:
        return None
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y, dtype=np.float64).reshape(-1)
    if y.shape[0] != n:
        raise AnomalyError(f"{where}: {y.shape[0]} labels for {n} time steps")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise AnomalyError(f"{where}: label {y[t]:g} at time step {offset + t} is not 0 or 1")
    return torch.from_numpy(y.astype(np.int64))


def iter_series(data, batch_size: int = DEFAULT_BATCH_SIZE, where: str = "data") -> Iterator[Batch]:
    """Normalise a time series into consecutive chunks: ``Batch(x (n, D), y, index)`` where
    ``index`` holds the time steps. Every chunk must have the channels of the first; labels
    must be 0/1. Raises AnomalyError for empty data, NaN/inf, a bad rank or bad labels."""
    if batch_size < 1:
        raise AnomalyError(f"batch_size: must be >= 1, got {batch_size}")
    if _is_array(data) and data.ndim == 0:
        data = data.reshape(1)
    start, dim = 0, None
    for x, y in _raw_batches(data, batch_size):
        x = to_series_tensor(x, where=where, offset=start)
        n = x.shape[0]
        if n == 0:
            continue
        if dim is None:
            dim = x.shape[1]
        elif x.shape[1] != dim:
            raise AnomalyError(f"{where}: time step {start} has {x.shape[1]} channels, earlier steps {dim}")
        yield Batch(x, _series_labels(y, n, where, start), torch.arange(start, start + n))
        start += n
    if start == 0:
        raise AnomalyError(f"{where}: no time steps")


def collect(data, where: str = "data") -> tuple[torch.Tensor, torch.Tensor | None]:
    """All samples (and targets, if every batch has them) of ``data`` as CPU tensors: for models
    that train for several epochs and need random access."""
    xs, ys = [], []
    for b in iter_batches(data, where=where):
        xs.append(b.x)
        ys.append(b.y)
    y = None if any(v is None for v in ys) else torch.cat(ys)
    return torch.cat(xs), y
