"""What every data source is: :class:`DataSource` (named samples, class targets, masks, names,
tiling), :class:`ArraySource` (samples in memory), :class:`TileView` (a tiled source's tiles as
samples) and :func:`data_root` (where data sets live). The loaders build on these:
:mod:`anomalib_lite.data.sources` (images, arrays, data specs) and :mod:`anomalib_lite.data.series_sources`
(CSV and NAB series). Imports no torch until a tile view is read.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import AnomalyError
from .tiling import Tiling

__all__ = ["ArraySource", "DataSource", "TileView", "data_root"]


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Where data sets live: ``data_dir``, else ``$ANOMALY_DATA_DIR``, else the user cache."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("ANOMALY_DATA_DIR"):
        return Path(os.environ["ANOMALY_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "anomalib_lite" / "data"


class DataSource:
    """A named collection of samples with optional class targets.

    ``targets`` are class indices into ``class_names``; ``normal_names`` are the classes taken as
    normal (those selected with ``?classes=``, or the ``good``/``normal`` folders), or None.
    """

    spec: str
    targets: np.ndarray | None
    class_names: list[str] | None
    normal_names: list[str] | None
    #: per-sample names for outputs (paths relative to the spec), or None (arrays: the index)
    names: list[str] | None = None
    #: score images tile by tile (``?tile=``), or None
    tiling: Tiling | None = None
    #: the samples are held in memory (random access costs nothing: training indexes them directly)
    in_memory: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def has_masks(self) -> bool:
        """Whether ground-truth defect masks are known for every sample."""
        return False

    def read_masks(self, indices) -> np.ndarray | None:
        """Boolean (k, H, W) defect masks of samples ``indices`` (all-False for normal ones), or
        None when the data has none."""
        return None

    def name(self, i: int) -> str:
        """What outputs call sample ``i``: its path relative to the spec, else its index."""
        return self.names[i] if self.names is not None else str(i)

    #: a CSV read with ``?rows=samples``: its columns, time column and header, as a series records
    #: them (so a bundle reads the tables it scores by column name), and its label column
    table: dict | None = None

    def _carry(self, other: DataSource) -> DataSource:
        """Options that survive subsetting (tiling, a table's columns)."""
        other.tiling, other.table = self.tiling, self.table
        return other

    def batches(self, batch_size: int) -> Iterator[tuple]:
        """Yield raw ``(x, y)`` batches (uint8 images or float arrays, class indices or None)."""
        raise NotImplementedError

    def subset(self, indices: np.ndarray) -> DataSource:
        raise NotImplementedError

    def read(self, indices: Sequence[int]) -> tuple:
        """Raw ``(x, y)`` of the samples at ``indices`` only (random access for training: a lazy
        source decodes these samples and nothing else)."""
        part = self.subset(np.asarray(indices, dtype=np.int64))
        xs, ys = zip(*part.batches(max(1, len(part))))  # large images may come a few at a time
        y = None if any(v is None for v in ys) else np.concatenate(ys)
        return (xs[0] if len(xs) == 1 else np.concatenate(xs)), y

    def tiles(self) -> DataSource:
        """With ``tiling``: a view whose samples are the tiles, image by image (for training on
        tiles); without: the source itself."""
        return self if self.tiling is None else TileView(self)

    def split(self, fraction: float, seed: int = 0) -> tuple[DataSource, DataSource]:
        """Random (seeded) split into (rest, held-out ``fraction``); both parts non-empty."""
        n = len(self)
        k = round(n * fraction)
        if not 0 < fraction < 1 or k < 1 or k >= n:
            raise AnomalyError(f"{self.spec}: cannot hold out {fraction:g} of {n} samples")
        order = np.random.default_rng(seed).permutation(n)
        return self.subset(np.sort(order[k:])), self.subset(np.sort(order[:k]))

    def anomaly_labels(self, normal_names: Sequence[str] | None = None) -> np.ndarray | None:
        """0 for normal, 1 for anomalous, from the class of each sample; None without targets.
        ``normal_names`` (the classes a detector was fitted on) when the data has one of them, else
        the data's own normal classes (a folder named good, normal or ok): a bundle fitted on
        ``train/good`` evaluates a test folder of ``ok`` and ``ng``."""
        if self.targets is None or self.class_names is None:
            return None
        named = [n for n in (normal_names or []) if str(n) in map(str, self.class_names)]
        normal = named or self.normal_names
        if not normal:
            return None
        is_normal = np.isin(np.asarray(self.class_names)[self.targets], list(normal))
        return (~is_normal).astype(np.int64)

    def labelled_anomalous(self) -> tuple[int, list[str]] | None:
        """(how many, which classes) of the samples the data's own labels call anomalous (an
        MVTec test folder, ``?synth=``), or None when there are none or no labels say so."""
        if not self.normal_names:
            return None
        labels = self.anomaly_labels()
        if labels is None or not labels.any():
            return None
        return int(labels.sum()), sorted({str(self.class_names[t]) for t, y in zip(self.targets, labels) if y})

    def describe(self) -> dict:
        """What a bundle records about the data it was fitted on."""
        present = None
        if self.targets is not None and self.class_names is not None:
            present = [self.class_names[i] for i in np.unique(self.targets)]
        table = {k: self.table[k] for k in ("columns", "time_column", "header")} if self.table else {}
        return {"spec": self.spec, "n": len(self), "classes": self.normal_names or present, **table}


class ArraySource(DataSource):
    """Samples held in memory (MNIST, .npy/.npz); ``masks`` (N, H, W) mark synthetic defects."""

    in_memory = True

    def __init__(self, spec, x, targets=None, class_names=None, normal_names=None, masks=None, names=None):
        self.spec, self.x, self.targets = spec, x, targets
        self.class_names, self.normal_names, self.masks = class_names, normal_names, masks
        self.names = names

    def __len__(self) -> int:
        return len(self.x)

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    def read_masks(self, indices) -> np.ndarray | None:
        return None if self.masks is None else np.asarray(self.masks[np.asarray(indices, dtype=np.int64)], dtype=bool)

    def batches(self, batch_size: int) -> Iterator[tuple]:
        for i in range(0, len(self.x), batch_size):
            y = None if self.targets is None else self.targets[i : i + batch_size]
            yield self.x[i : i + batch_size], y

    def subset(self, indices: np.ndarray) -> ArraySource:
        t = None if self.targets is None else self.targets[indices]
        m = None if self.masks is None else self.masks[indices]
        names = None if self.names is None else [self.names[i] for i in indices]
        return self._carry(ArraySource(self.spec, self.x[indices], t, self.class_names, self.normal_names, m, names))


class TileView(DataSource):
    """The tiles of a tiled source as samples: sample ``i`` is tile ``i % T`` of image ``i // T``
    (``T`` tiles per image: the images of a source share one size)."""

    def __init__(self, source: DataSource):
        from .batches import to_float_tensor

        self.source, self.spec = source, source.spec
        first = to_float_tensor(source.read([0])[0], self.spec)
        if first.ndim != 4:
            raise AnomalyError(f"{self.spec}: tile= needs images, got samples of shape {tuple(first.shape[1:])}")
        self.per = source.tiling.count(*first.shape[-2:])
        t = source.targets
        self.targets = None if t is None else np.repeat(t, self.per)
        self.class_names, self.normal_names = source.class_names, source.normal_names

    def __len__(self) -> int:
        return len(self.source) * self.per

    def read(self, indices) -> tuple:
        import torch

        from .batches import to_float_tensor

        idx = np.asarray(indices, dtype=np.int64)
        images, inverse = np.unique(idx // self.per, return_inverse=True)
        x, _ = self.source.read(images)
        tiles = self.source.tiling.split(to_float_tensor(x, self.spec))
        tiles = tiles.reshape(len(images), self.per, *tiles.shape[1:])[torch.from_numpy(inverse), torch.from_numpy(idx % self.per)]
        return tiles.numpy(), None if self.targets is None else self.targets[idx]

    def batches(self, batch_size: int) -> Iterator[tuple]:
        for i in range(0, len(self), batch_size):
            yield self.read(np.arange(i, min(i + batch_size, len(self))))

    def subset(self, indices: np.ndarray) -> DataSource:
        raise AnomalyError(f"{self.spec}: a tile view cannot be subset; split the source before tiling")
