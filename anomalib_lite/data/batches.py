"""The one input normaliser: everything a detector accepts becomes a stream of :class:`Batch`.

Accepted inputs: a tensor or ndarray shaped (N,H,W), (N,C,H,W), (N,H,W,C) with C in {1,3,4}, or
(N,D); an ``(x, y)`` pair of such arrays; a torch ``Dataset`` or ``DataLoader``; a data source from
:mod:`anomalib_lite.data.sources`; or any iterable of batches or of ``(x, y)`` tuples. ``uint8`` (and
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

from ..errors import AnomalyError, shown

__all__ = [
    "DEFAULT_BATCH_SIZE", "NAN_POLICIES", "Batch", "BatchReader", "Replayed", "Samples", "TrainingData",
    "collect", "fill_gaps", "iter_batches", "iter_series", "to_float_tensor", "to_series_tensor", "training_data",
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


def _numeric_tensor(x: np.ndarray, where: str) -> torch.Tensor:
    """A numpy array as a tensor, refusing what is not numbers (scikit-learn's messages)."""
    if x.dtype == object:  # numbers held as Python objects (e.g. from pandas): as float64
        try:
            x = x.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise AnomalyError(f"{where}: array of dtype object holds values that are not numbers ({e})") from None
    if np.iscomplexobj(x):
        raise AnomalyError(f"{where}: Complex data not supported")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise AnomalyError(f"{where}: array of dtype {x.dtype} is not numeric")
    # a read-only array (pandas' copy-on-write views, np.load(mmap_mode='r')) is copied: torch warns
    # on tensors that share memory it may not write
    return torch.from_numpy(np.ascontiguousarray(x) if x.flags.writeable else np.array(x, order="C"))


def to_float_tensor(x, where: str = "data", offset: int = 0, indices=None) -> torch.Tensor:
    """Convert one array to a float32 tensor in the canonical layout, or raise AnomalyError.

    ``offset`` is the global index of the first sample (or ``indices`` the global index of each
    sample), so errors name the right sample.
    """
    if isinstance(x, np.ndarray):
        x = _numeric_tensor(x, where)
    elif not isinstance(x, torch.Tensor):
        raise AnomalyError(f"{where}: expected an array or tensor, got {type(x).__name__}")
    integral = x.dtype in (torch.uint8, torch.bool)
    if integral:
        x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
    elif x.is_complex():
        raise AnomalyError(f"{where}: Complex data not supported")
    else:
        x = x.to(torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(1)  # (N,H,W) -> (N,1,H,W)
    elif x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)  # channels-last images from PIL/OpenCV -> (N,C,H,W)
    if x.ndim not in (2, 4):
        hint = "; Reshape your data: one sample is x.reshape(1, -1), one feature x.reshape(-1, 1)" if x.ndim == 1 else ""
        raise AnomalyError(
            f"{where}: array of rank {x.ndim} (shape {tuple(x.shape)}); "
            f"expected (N,H,W), (N,C,H,W) or (N,D){hint}"
        )
    if x.numel() == 0 and x.shape[0] > 0:
        raise AnomalyError(f"{where}: 0 feature(s) (shape={tuple(x.shape)}) while a minimum of 1 is required.")
    if not integral and x.shape[0] > 0 and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).nonzero()[0, 0].item()
        kind = "NaN" if torch.isnan(x[bad]).any() else "inf"
        name = int(indices[bad]) if indices is not None else offset + bad
        raise AnomalyError(f"{where}: sample {name} contains {kind}")
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
        if x is None:
            raise AnomalyError(f"data: a dict batch needs its samples under 'x', 'image', 'images' or 'input'; its keys "
                               f"are {shown(', '.join(map(str, item)), 120)}")
        return x, y
    if isinstance(item, (tuple, list)) and len(item) == 2 and _is_array(item[0]):
        return item[0], item[1]
    if isinstance(item, (tuple, list)) and len(item) == 1:
        return item[0], None
    return item, None


def _is_source(data) -> bool:
    return hasattr(data, "batches") and callable(data.batches)  # anomalib_lite.data.sources.DataSource


def _has_array(obj) -> bool:
    """Something numpy reads as an array without a guess (pandas objects, array wrappers), not
    an array or tensor already."""
    return not _is_array(obj) and not _is_source(obj) and hasattr(obj, "__array__") \
        and not isinstance(obj, torch.utils.data.Dataset)


def _is_pair(data) -> bool:
    """An ``(x, y)`` tuple of samples and their labels (or None)."""
    return (
        isinstance(data, tuple)
        and len(data) == 2
        and _is_array(data[0])
        and (data[1] is None or _is_array(data[1]) or isinstance(data[1], list))
        and (data[1] is None or len(data[1]) == len(data[0]))
    )


def _is_number_row(item) -> bool:
    """A number, or a list/tuple of numbers (a row of features): not a batch or an (x, y) pair."""
    number = lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    if number(item):
        return True
    return isinstance(item, (list, tuple)) and bool(item) and all(number(v) for v in item[:64])


def _one_image(item) -> str | None:
    """``"HWC"``/``"CHW"`` when ``item`` has the shape of one colour or grey image rather than a
    batch (a batch of 3 grey images or of images 1 to 4 px wide is implausible), else None."""
    if type(item).__module__.startswith("PIL."):
        return "PIL"
    shape = tuple(getattr(item, "shape", ()))
    if len(shape) != 3:
        return None
    if shape[2] in (1, 3, 4) and min(shape[:2]) >= 8:
        return "HWC"
    return "CHW" if shape[0] == 3 and min(shape[1:]) >= 8 else None


def _refuse_image_list(data, where: str) -> None:
    """A list of single images (each (H, W, C), (3, H, W) or a PIL image, alone or in (x, y) pairs)
    would be read as a list of batches, every image a batch of rows: one error with the fix."""
    if not isinstance(data, (list, tuple)) or len(data) < 2 or _is_pair(data):
        return
    first = [item[0] if isinstance(item, (list, tuple)) and item else item for item in data[:64]]
    kinds = {_one_image(x) for x in first}
    shapes = {tuple(getattr(x, "shape", getattr(x, "size", ()))) for x in first}
    if len(kinds) == 1 and None not in kinds and len(shapes) == 1:
        kind, shape = kinds.pop(), shapes.pop()
        fix = "np.stack([np.asarray(im) for im in images])" if kind == "PIL" else \
            "torch.stack(images)" if isinstance(first[0], torch.Tensor) else "np.stack(images)"
        raise AnomalyError(f"{where}: a list of {len(data)} single images ({kind} {shape}); a list is read as "
                           f"batches, so pass the images as one array: {fix}")


def as_array_like(data, where: str = "data"):
    """scikit-learn's inputs as arrays: nested lists of numbers and objects with ``__array__``
    (pandas, array wrappers) become ndarrays; a dict is one batch; sparse matrices and single
    numbers are refused in one line. Anything else (arrays, sources, Datasets, lists of batches)
    is returned as it is."""
    if type(data).__module__.startswith("scipy.sparse"):
        raise AnomalyError(f"{where}: sparse input is not supported; pass a dense array (X.toarray())")
    _refuse_image_list(data, where)
    if isinstance(data, list) and data and _is_number_row(data[0]):
        try:
            return np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise AnomalyError(f"{where}: a list of rows of different lengths, or of values that are not numbers") from None
    if isinstance(data, dict):  # one batch as a dict ('x'/'image' and 'y'), as an iterable's items may be
        return [data]
    if isinstance(data, tuple) and len(data) == 2 and _has_array(data[0]) and (data[1] is None or _has_array(data[1])):
        return tuple(None if d is None else as_array_like(d, where) for d in data)  # (a DataFrame, its labels)
    if _has_array(data):
        _refuse_time_columns(data, where)
        data = np.asarray(data)
    if _is_array(data) and data.ndim == 0:
        raise AnomalyError(f"{where}: a single number; expected samples (N, ...) or a series (T,)")
    return data


def _refuse_time_columns(data, where: str) -> None:
    """A pandas DataFrame with a column of times (read_csv(parse_dates=...)): one line naming the
    column and the fix, rather than "values that are not numbers" from the first Timestamp."""
    if not callable(getattr(data, "select_dtypes", None)):
        return
    times = [str(c) for c in data.select_dtypes(include=["datetime", "datetimetz", "timedelta"]).columns]
    if times:
        raise AnomalyError(f"{where}: column '{times[0]}' holds times, not values; make it the index "
                           f"(df.set_index('{times[0]}')) or drop it")


def frame_columns(data) -> list[str] | None:
    """The column names of a pandas DataFrame (a named Series: its name), as scikit-learn's
    ``feature_names_in_``: a detector fitted on one records them, so a stream of dicts is read by
    name. None for anything else."""
    if callable(getattr(data, "select_dtypes", None)) and hasattr(data, "columns"):
        return [str(c) for c in data.columns]
    if callable(getattr(data, "to_frame", None)) and getattr(data, "name", None) is not None:
        return [str(data.name)]
    return None


def _raw_batches(data, batch_size: int) -> Iterator[tuple]:
    """Yield (x, y) pairs of raw arrays, before conversion."""
    data = as_array_like(data)
    if _is_source(data):
        yield from data.batches(batch_size)
        return
    if _is_array(data):
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size], None
        if len(data) == 0:
            yield data, None
        return
    if _is_pair(data):
        x, y = data
        y = None if y is None else np.asarray(y) if isinstance(y, list) else y
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], None if y is None else y[i : i + batch_size]
        return
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        # item by item, as training reads it (a PIL image or a dict item is read; torch's collate
        # would stop at a PIL image with a TypeError)
        samples = Samples(data, "dataset", False) if len(data) else None
        for i in range(0, len(data), batch_size):
            yield samples._read(np.arange(i, min(i + batch_size, len(data))))
        return
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise AnomalyError(
            f"data: cannot read a {type(data).__name__}; expected an array, a tensor, "
            "a DataLoader or an iterable of batches"
        )
    for item in data:
        yield _split_item(item)


def iter_batches(data, batch_size: int = DEFAULT_BATCH_SIZE, where: str = "data",
                 shard: tuple[int, int] | None = None) -> Iterator[Batch]:
    """Normalise ``data`` into a stream of :class:`Batch` with consistent sample shape.

    ``shard=(rank, world)``: only the samples whose index is ``rank`` modulo ``world`` (one
    process's share under torchrun; ``Batch.index`` keeps the global indices). Random-access data
    (arrays, data sources, map-style Datasets) reads only those samples; other iterables are read
    whole and the rest dropped. A shard may be empty.

    Raises AnomalyError for empty data, NaN/inf, a bad rank, or batches whose sample shape differs
    from the first batch's.
    """
    if batch_size < 1:
        raise AnomalyError(f"batch_size: must be >= 1, got {batch_size}")
    if shard is not None and shard[1] > 1:
        yield from _shard_batches(data, batch_size, where, *shard)
        return
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


def _random_access(data, where: str) -> Samples | None:
    """Random access to ``data`` as it is (a tiled source stays whole images), or None."""
    data = as_array_like(data, where)
    if _is_array(data):
        return Samples(data, "array", True, where) if len(data) else None
    if _is_pair(data):
        return Samples(data, "pair", True, where) if len(data[0]) else None
    if _is_source(data) and hasattr(data, "read"):
        return Samples(data, "source", True, str(getattr(data, "spec", where))) if len(data) else None
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        return Samples(data, "dataset", False, where) if len(data) else None
    return None


def _shard_batches(data, batch_size: int, where: str, rank: int, world: int) -> Iterator[Batch]:
    """:func:`iter_batches` of the samples ``rank::world`` (see there)."""
    samples = _random_access(data, where)
    if samples is None:  # read as given: keep this rank's rows
        for b in iter_batches(data, batch_size, where):
            keep = b.index % world == rank
            if keep.any():
                yield Batch(b.x[keep], None if b.y is None else b.y[keep], b.index[keep])
        return
    own = np.arange(rank, len(samples), world, dtype=np.int64)
    for i in range(0, len(own), batch_size):
        yield Batch(*samples[own[i : i + batch_size]])


# ---------------------------------------------------------------- training data
#
# Training reads its data once per epoch, shuffled, with a held-out share chosen by index; it never
# holds the whole set. :func:`training_data` turns what a user passes into one of two readers:
# :class:`Samples` (random access by index: arrays, ``(x, y)`` pairs, data sources, map-style
# Datasets) or :class:`Replayed` (a DataLoader or a list of batches, read as given every epoch).


class TrainingData:
    """What the training loop and the detectors' statistics passes read; see :func:`training_data`."""

    random_access: bool = False
    sample_shape: tuple[int, ...]
    where: str = "data"

    def batches(self, batch_size: int = DEFAULT_BATCH_SIZE, num_workers: int = 0,
                shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        """One pass over the data in order, batch by batch (for streaming statistics);
        ``shard=(rank, world)``: only the samples ``rank::world`` (torchrun)."""
        raise NotImplementedError

    def head(self) -> Batch:
        """The first sample as a batch of one (for input checks)."""
        raise NotImplementedError


class Samples(TrainingData, torch.utils.data.Dataset):
    """Random access by index, normalised as :func:`iter_batches` does (8-bit scaling, layout,
    NaN/inf and shape checks naming the sample).

    A torch map-style Dataset whose items are lists of indices: ``samples[[3, 7]]`` is one
    normalised batch ``(x, y, index)``, so a DataLoader (``batch_size=None``) reads whole
    batches in its workers. ``in_memory`` data (arrays, in-memory sources) is read directly.
    """

    random_access = True

    def __init__(self, data, kind: str, in_memory: bool, where: str = "data"):
        if kind == "pair" and isinstance(data[1], list):
            data = (data[0], np.asarray(data[1]))
        self.data, self.kind, self.in_memory, self.where = data, kind, in_memory, where
        self.n = len(data[0]) if kind == "pair" else len(data)
        if self.n == 0:
            raise AnomalyError(f"{where}: no samples")
        x, _, _ = self[np.array([0])]
        self.sample_shape = tuple(x.shape[1:])

    def __len__(self) -> int:
        return self.n

    def _read(self, idx: np.ndarray) -> tuple:
        """Raw ``(x, y)`` of the samples at ``idx`` (x already a float32 tensor for Datasets)."""
        if self.kind == "array":
            return self.data[torch.from_numpy(idx) if isinstance(self.data, torch.Tensor) else idx], None
        if self.kind == "pair":
            x, y = self.data
            x = x[torch.from_numpy(idx) if isinstance(x, torch.Tensor) else idx]
            y = None if y is None else y[torch.from_numpy(idx) if isinstance(y, torch.Tensor) else idx]
            return x, y
        if self.kind == "source":
            return self.data.read(idx)
        xs, ys = [], []  # a map-style Dataset: one item at a time, each normalised on its own
        for i in idx.tolist():
            item = self.data[i]
            if isinstance(item, (tuple, list)) and len(item) in (1, 2):
                x, y = item[0], item[1] if len(item) == 2 else None
            else:
                x, y = _split_item(item)
            if not _is_array(x) and (hasattr(x, "__array_interface__") or hasattr(x, "__array__")):
                x = np.array(x)  # e.g. a PIL image (a writable copy)
            x = to_float_tensor(x[None] if _is_array(x) else x, self.where, indices=[i])
            if xs and x.shape[1:] != xs[0].shape[1:]:
                raise AnomalyError(
                    f"{self.where}: sample {i} has shape {tuple(x.shape[1:])}, sample {idx[0]} {tuple(xs[0].shape[1:])}"
                )
            xs.append(x)
            ys.append(y)
        y = None if any(v is None for v in ys) else np.asarray([int(v) for v in ys])
        return torch.cat(xs), y

    def __getitem__(self, indices) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        idx = np.asarray(indices.numpy() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"{self.where}: index out of range for {self.n} samples")
        x, y = self._read(idx)
        x = to_float_tensor(x, self.where, indices=idx)
        shape = getattr(self, "sample_shape", None)
        if shape is not None and tuple(x.shape[1:]) != shape:
            raise AnomalyError(f"{self.where}: sample {idx[0]} has shape {tuple(x.shape[1:])}, earlier samples {shape}")
        return x, _to_targets(y, len(idx), self.where), torch.from_numpy(idx)

    def reader(self, num_workers: int = 0, pin_memory: bool = False, seed: int = 0) -> BatchReader:
        """A :class:`BatchReader` of this data (workers only where decoding happens)."""
        return BatchReader(self, 0 if self.in_memory else num_workers, pin_memory, seed)

    def batches(self, batch_size: int = DEFAULT_BATCH_SIZE, num_workers: int = 0,
                shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        own = torch.arange(self.n) if shard is None else torch.arange(shard[0], self.n, shard[1])
        order = [own[i : i + batch_size] for i in range(0, len(own), batch_size)]
        for x, y, index in self.reader(num_workers).read(order):
            yield Batch(x, y, index)

    def head(self) -> Batch:
        return Batch(*self[[0]])


class _Order(torch.utils.data.Sampler):
    """The batches (lists of indices) of the next pass; set before each pass."""

    def __init__(self):
        self.batches: list = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _worker_init(worker_id: int) -> None:
    """Seed a worker's global generators (``augment.worker_init_fn``) and fix glibc's mmap
    threshold at 1 MiB: with the default dynamic threshold, a worker's heap grew by about one
    batch for every batch it sent (freed buffers never reused: 1.4 GB per worker after 40
    batches of 32 224-px images); mmapped blocks go back to the system when freed."""
    from augment import worker_init_fn

    worker_init_fn(worker_id)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD; glibc only
    except (OSError, AttributeError):
        pass


class _Guarded(torch.utils.data.Dataset):
    """Samples read in a DataLoader worker: a user error comes back as its message (re-raised as
    one AnomalyError line in the main process, not wrapped in the worker's traceback)."""

    def __init__(self, samples: Samples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, indices):
        try:
            return self.samples[indices]
        except AnomalyError as e:
            return str(e)


class BatchReader:
    """Reads given batches of indices from :class:`Samples`, in order: directly, or through a
    persistent DataLoader with ``num_workers`` processes (pinned memory when asked). Workers only
    decode; every random draw of training happens in the main process keyed by index and epoch,
    so results do not depend on the number of workers."""

    def __init__(self, samples: Samples, num_workers: int = 0, pin_memory: bool = False, seed: int = 0):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise AnomalyError(f"num_workers={num_workers!r}: must be an integer >= 0")
        self.samples, self.loader = samples, None
        if num_workers or pin_memory:
            self._order = _Order()
            self.loader = torch.utils.data.DataLoader(
                _Guarded(samples), sampler=self._order, batch_size=None, num_workers=num_workers,
                pin_memory=pin_memory, persistent_workers=num_workers > 0, worker_init_fn=_worker_init,
                generator=torch.Generator().manual_seed(seed),
            )

    def read(self, batches) -> Iterator[tuple]:
        """``(x, y, index)`` for each index batch, in the order given."""
        if self.loader is None:
            for b in batches:
                yield self.samples[b]
            return
        self._order.batches = list(batches)
        for item in self.loader:
            if isinstance(item, str):
                raise AnomalyError(item)
            yield item


class Replayed(TrainingData):
    """Data read as given, whole, every epoch: a DataLoader (its own batching, shuffling and
    workers) or a list of batches. No random access: training holds no samples out of it."""

    def __init__(self, data, where: str = "data"):
        self.data, self.where, self._n = data, where, None
        first = next(iter_batches(data, where=where))
        self.sample_shape = tuple(first.x.shape[1:])
        self._head = Batch(first.x[:1], None if first.y is None else first.y[:1], first.index[:1])
        try:
            self.n_batches = len(data)
        except TypeError:
            self.n_batches = sum(1 for _ in self.epoch())

    def epoch(self) -> Iterator[Batch]:
        """One pass; counts the samples (``len``) as it goes."""
        n = 0
        for b in iter_batches(self.data, where=self.where):
            if tuple(b.x.shape[1:]) != self.sample_shape:
                raise AnomalyError(
                    f"{self.where}: sample {b.index[0].item()} has shape {tuple(b.x.shape[1:])}, "
                    f"earlier samples {self.sample_shape}"
                )
            n += len(b)
            yield b
        self._n = n

    def __len__(self) -> int:
        if self._n is None:
            for _ in self.epoch():
                pass
        return self._n

    def batches(self, batch_size: int = DEFAULT_BATCH_SIZE, num_workers: int = 0,
                shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        for b in self.epoch():
            keep = slice(None) if shard is None else b.index % shard[1] == shard[0]
            if shard is None or keep.any():
                yield Batch(b.x[keep], None if b.y is None else b.y[keep], b.index[keep])

    def head(self) -> Batch:
        return self._head


def training_data(data, where: str = "data", batch_size: int = DEFAULT_BATCH_SIZE) -> TrainingData:
    """What training reads from ``data``, without reading it all.

    Random access (:class:`Samples`): a tensor or ndarray, an ``(x, y)`` pair, a data source from
    :mod:`anomalib_lite.data.sources` (lazy image folders decode only the samples asked for), a torch
    map-style Dataset. Read as given every epoch (:class:`Replayed`): a DataLoader, an
    IterableDataset (batched by ``batch_size``), a list or tuple of batches. A one-shot iterator
    or generator cannot be read once per epoch: AnomalyError.
    """
    if isinstance(data, TrainingData):
        return data
    data = as_array_like(data, where)
    if _is_array(data):
        return Samples(data, "array", True, where)
    if _is_pair(data):
        return Samples(data, "pair", True, where)
    if _is_source(data):
        where = str(getattr(data, "spec", where))
        if getattr(data, "tiling", None) is not None:
            data = data.tiles()  # ?tile=: the tiles are the training samples
        if hasattr(data, "read"):
            return Samples(data, "source", getattr(data, "in_memory", False), where)
        return Replayed(data, where)
    if isinstance(data, torch.utils.data.IterableDataset):
        return Replayed(torch.utils.data.DataLoader(data, batch_size=batch_size), where)
    if isinstance(data, torch.utils.data.Dataset):
        return Samples(data, "dataset", False, where)
    if isinstance(data, Iterator):
        raise AnomalyError(
            f"{where}: a {type(data).__name__} can be read only once, and training reads its data every "
            "epoch; pass an array, a data source, a torch Dataset or DataLoader, or a list of batches"
        )
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise AnomalyError(
            f"{where}: cannot read a {type(data).__name__}; expected an array, a tensor, "
            "a data source, a Dataset, a DataLoader or a list of batches"
        )
    return Replayed(data, where)


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
    """One chunk of a series as a float64 (n, D) tensor; a scalar is one step of one channel.
    float64, not float32: a value far from 0 with small changes (a meter's running total,
    1e9 + 1.5) keeps its changes, which float32's 24 bits round away (at 1e9, to steps of 64);
    the detectors standardise it before their networks' float32."""
    if not _is_array(x):
        try:
            x = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise AnomalyError(f"{where}: cannot read a {type(x).__name__} as series values") from None
    if isinstance(x, np.ndarray):
        x = _numeric_tensor(x, where)
    if x.is_complex():
        raise AnomalyError(f"{where}: complex values are not supported")
    x = x.to(torch.float64)
    if x.ndim == 0:
        x = x.reshape(1, 1)
    elif x.ndim == 1:
        x = x[:, None]  # (T,) -> (T, 1)
    elif x.ndim != 2:
        raise AnomalyError(
            f"{where}: array of rank {x.ndim} (shape {tuple(x.shape)}) is not a series; expected "
            "(T,) or (T, D); embed image frames first (anomalib_lite.Featurizer)"
        )
    if x.shape[0] and x.shape[1] == 0:
        raise AnomalyError(f"{where}: 0 feature(s) (shape={tuple(x.shape)}) while a minimum of 1 is required.")
    if x.shape[0] and not torch.isfinite(x).all():
        t, d = (~torch.isfinite(x)).nonzero()[0].tolist()
        kind = "NaN" if torch.isnan(x[t, d]) else "inf"
        chan = f" (channel {d})" if x.shape[1] > 1 else ""
        hint = "; fill gaps with anomalib_lite.data.batches.fill_gaps(x, 'interpolate')" if kind == "NaN" else ""
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
    """All samples (and targets, if every batch has them) of ``data`` as CPU tensors: for small
    things only (report thumbnails); training reads :func:`training_data` instead."""
    xs, ys = [], []
    for b in iter_batches(data, where=where):
        xs.append(b.x)
        ys.append(b.y)
    y = None if any(v is None for v in ys) else torch.cat(ys)
    return torch.cat(xs), y
