"""Data specs: the strings the CLI (and Python users) name data by.

``mnist:train`` / ``mnist:test`` (options ``?classes=7`` or ``?classes=0,1``, ``?limit=N``), a
folder of images (sub-folder names are class names; ``good`` and ``normal`` are normal; option
``?size=64`` or ``?size=64x48`` resizes), and ``.npy`` / ``.npz`` files (an ``.npz`` may hold
labels under ``y``, ``labels`` or ``targets``). Any image spec takes ``?synth=stroke_blob`` (ops of
``augment.synth``; with ``share=``, ``severity=``, ``seed=``) to plant synthetic anomalies with
exact masks, for pixel-level evaluation. :func:`load` returns a :class:`DataSource`, which
:func:`anomalib_lite.data.iter_batches` understands. Folder images are read lazily, batch by batch.
Time series: a ``.csv`` file, ``-`` (CSV on stdin) or ``nab:realKnownCause/nyc_taxi.csv`` (from
``<data root>/NAB``), read by :mod:`anomalib_lite.series_sources`; options ``?start=`` and
``?stop=`` (a step, or a fraction of the series such as ``0.15``) and ``?limit=N`` cut it in time.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from .errors import AnomalyError

__all__ = ["NORMAL_NAMES", "ArraySource", "DataSource", "ImageFolderSource", "data_root", "load"]

NORMAL_NAMES = ("good", "normal")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


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

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int) -> Iterator[tuple]:
        """Yield raw ``(x, y)`` batches (uint8 images or float arrays, class indices or None)."""
        raise NotImplementedError

    def subset(self, indices: np.ndarray) -> DataSource:
        raise NotImplementedError

    def read(self, indices: Sequence[int]) -> tuple:
        """Raw ``(x, y)`` of the samples at ``indices`` only (random access for training: a lazy
        source decodes these samples and nothing else)."""
        part = self.subset(np.asarray(indices, dtype=np.int64))
        return next(iter(part.batches(max(1, len(part)))))

    def split(self, fraction: float, seed: int = 0) -> tuple[DataSource, DataSource]:
        """Random (seeded) split into (rest, held-out ``fraction``); both parts non-empty."""
        n = len(self)
        k = round(n * fraction)
        if not 0 < fraction < 1 or k < 1 or k >= n:
            raise AnomalyError(f"{self.spec}: cannot hold out {fraction:g} of {n} samples")
        order = np.random.default_rng(seed).permutation(n)
        return self.subset(np.sort(order[k:])), self.subset(np.sort(order[:k]))

    def anomaly_labels(self, normal_names: Sequence[str] | None = None) -> np.ndarray | None:
        """0 for normal, 1 for anomalous, from the class of each sample; None without targets."""
        if self.targets is None or self.class_names is None:
            return None
        normal = normal_names or self.normal_names
        if not normal:
            return None
        is_normal = np.isin(np.asarray(self.class_names)[self.targets], list(normal))
        return (~is_normal).astype(np.int64)

    def describe(self) -> dict:
        """What a bundle records about the data it was fitted on."""
        present = None
        if self.targets is not None and self.class_names is not None:
            present = [self.class_names[i] for i in np.unique(self.targets)]
        return {"spec": self.spec, "n": len(self), "classes": self.normal_names or present}


class ArraySource(DataSource):
    """Samples held in memory (MNIST, .npy/.npz); ``masks`` (N, H, W) mark synthetic defects."""

    def __init__(self, spec, x, targets=None, class_names=None, normal_names=None, masks=None):
        self.spec, self.x, self.targets = spec, x, targets
        self.class_names, self.normal_names, self.masks = class_names, normal_names, masks

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch_size: int) -> Iterator[tuple]:
        for i in range(0, len(self.x), batch_size):
            y = None if self.targets is None else self.targets[i : i + batch_size]
            yield self.x[i : i + batch_size], y

    def subset(self, indices: np.ndarray) -> ArraySource:
        t = None if self.targets is None else self.targets[indices]
        m = None if self.masks is None else self.masks[indices]
        return ArraySource(self.spec, self.x[indices], t, self.class_names, self.normal_names, m)


class ImageFolderSource(DataSource):
    """Image files read lazily; all decoded to one mode ('L' or 'RGB') and one size."""

    def __init__(self, spec, paths, targets, class_names, normal_names, mode, size):
        self.spec, self.paths, self.targets = spec, list(paths), targets
        self.class_names, self.normal_names = class_names, normal_names
        self.mode, self.size = mode, size  # size is (H, W)

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, path: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as im:
                im = im.convert(self.mode)
                if (im.height, im.width) != self.size:
                    im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as e:
            raise AnomalyError(f"{path}: cannot read image ({e})") from None

    def batches(self, batch_size: int) -> Iterator[tuple]:
        for i in range(0, len(self.paths), batch_size):
            x = np.stack([self._read(p) for p in self.paths[i : i + batch_size]])
            y = None if self.targets is None else self.targets[i : i + batch_size]
            yield x, y

    def subset(self, indices: np.ndarray) -> ImageFolderSource:
        t = None if self.targets is None else self.targets[indices]
        paths = [self.paths[i] for i in indices]
        return ImageFolderSource(
            self.spec, paths, t, self.class_names, self.normal_names, self.mode, self.size
        )


# ---------------------------------------------------------------- spec parsing

_OPTIONS = {"classes", "limit", "seed", "severity", "share", "size", "start", "stop", "synth"}
SYNTH_CLASS = "synthetic"


def _parse(spec: str) -> tuple[str, dict[str, str]]:
    base, _, query = spec.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    unknown = set(options) - _OPTIONS
    if unknown:
        raise AnomalyError(
            f"{spec}: unknown option '{min(unknown)}'; options are: {', '.join(sorted(_OPTIONS))}"
        )
    return base, options


def _parse_size(spec: str, value: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in value.lower().split("x")]
        if len(parts) == 1:
            parts *= 2
        if len(parts) != 2 or min(parts) < 1:
            raise ValueError
    except ValueError:
        raise AnomalyError(f"{spec}: size '{value}' is not N or HxW") from None
    return parts[0], parts[1]


def _select(src: DataSource, options: dict[str, str]) -> DataSource:
    """Apply ?classes= and ?limit= to a loaded source."""
    if "start" in options or "stop" in options:
        raise AnomalyError(f"{src.spec}: start= and stop= apply to time series only")
    if "classes" in options:
        if src.targets is None or src.class_names is None:
            raise AnomalyError(f"{src.spec}: classes= needs data with labels; this data has none")
        wanted = [c.strip() for c in options["classes"].split(",") if c.strip()]
        unknown = [c for c in wanted if c not in src.class_names]
        if not wanted or unknown:
            raise AnomalyError(
                f"{src.spec}: class '{unknown[0] if unknown else ''}' not found; "
                f"classes are: {', '.join(src.class_names)}"
            )
        keep = np.isin(np.asarray(src.class_names)[src.targets], wanted)
        src = src.subset(np.flatnonzero(keep))
        src.normal_names = wanted
    if "limit" in options:
        try:
            limit = int(options["limit"])
            if limit < 1:
                raise ValueError
        except ValueError:
            raise AnomalyError(f"{src.spec}: limit '{options['limit']}' is not a positive integer") from None
        src = src.subset(np.arange(min(limit, len(src))))
    if len(src) == 0:
        raise AnomalyError(f"{src.spec}: no samples")
    return src


def _number(src: DataSource, options: dict[str, str], key: str, default: float, lo: float, hi: float) -> float:
    try:
        value = float(options.get(key, default))
        if not lo <= value <= hi:
            raise ValueError
    except ValueError:
        raise AnomalyError(f"{src.spec}: {key} '{options[key]}' is not a number in [{lo:g}, {hi:g}]") from None
    return value


def _synthesize(src: DataSource, options: dict[str, str]) -> DataSource:
    """``?synth=op[,op]``: replace a ``share`` of the normal samples (all samples when the normal
    classes are not known yet) by augment.synth anomalies of class 'synthetic', with exact masks.
    ``severity`` and ``seed`` as in augment.synth; the rest of the samples are the patch pool."""
    if "synth" not in options:
        for key in ("share", "severity", "seed"):
            if key in options:
                raise AnomalyError(f"{src.spec}: {key}= applies with synth= only")
        return src
    import augment

    ops = [o.strip() for o in options["synth"].split(",") if o.strip()]
    unknown = [o for o in ops if o not in augment.synth.OPS]
    if not ops or unknown:
        raise AnomalyError(
            f"{src.spec}: synth op '{unknown[0] if unknown else ''}' unknown; ops are: {', '.join(augment.synth.OPS)}"
        )
    share = _number(src, options, "share", 0.5, 0.0, 1.0)
    severity = _number(src, options, "severity", 0.5, 1e-6, 1.0)
    seed = int(_number(src, options, "seed", 0, 0, 2**31))
    x = np.concatenate([b for b, _ in src.batches(1024)])
    if x.ndim not in (3, 4):
        raise AnomalyError(f"{src.spec}: synth= needs images, got samples of shape {x.shape[1:]}")
    if src.targets is None or src.class_names is None:
        targets, names, normal = np.zeros(len(x), dtype=np.int64), ["normal"], ["normal"]
    else:
        targets, names, normal = src.targets.copy(), list(src.class_names), src.normal_names
    candidates = np.flatnonzero(np.isin(np.asarray(names)[targets], normal)) if normal else np.arange(len(x))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=round(share * len(candidates)), replace=False))
    masks = np.zeros((len(x), *x.shape[1:3]), dtype=bool)
    if chosen.size:
        rest = np.setdiff1d(np.arange(len(x)), chosen)
        pool = x[rest[:512]] if rest.size else None
        try:
            imgs, m, _ = augment.synth.synthesize(x[chosen], ops=ops, severity=severity, seed=seed,
                                                   indices=chosen, pool=pool)
        except augment.AugmentError as e:
            raise AnomalyError(f"{src.spec}: synth: {e}") from None
        x = x.copy()
        x[chosen], masks[chosen] = np.asarray(imgs), np.asarray(m)
        names = [*names, SYNTH_CLASS]
        targets[chosen] = len(names) - 1
    return ArraySource(src.spec, x, targets, names, normal, masks)


def _load_mnist(spec: str, split: str, data_dir, download: bool) -> ArraySource:
    import torchvision

    if split not in ("train", "test"):
        raise AnomalyError(f"{spec}: unknown MNIST split '{split}'; use mnist:train or mnist:test")
    root = data_root(data_dir)
    try:
        ds = torchvision.datasets.MNIST(str(root), train=split == "train", download=False)
    except RuntimeError:
        if not download:
            raise AnomalyError(
                f"{spec}: MNIST not found in {root / 'MNIST' / 'raw'}; set ANOMALY_DATA_DIR, "
                "pass --data-dir, or allow downloading with --download"
            ) from None
        try:
            ds = torchvision.datasets.MNIST(str(root), train=split == "train", download=True)
        except Exception as e:  # noqa: BLE001 (network errors come in many types)
            reason = " ".join(str(e).split())[:300]
            raise AnomalyError(f"{spec}: MNIST download to {root} failed ({reason})") from None
    x = ds.data.numpy()
    return ArraySource(spec, x, ds.targets.numpy(), [str(i) for i in range(10)])


def _load_array(spec: str, path: Path) -> ArraySource:
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise AnomalyError(f"{path}: cannot read array file ({e})") from None
    if isinstance(raw, np.ndarray):
        return ArraySource(spec, raw)
    with raw:
        keys = list(raw.keys())
        xkey = next((k for k in ("x", "X", "images", "data") if k in keys), keys[0] if keys else None)
        if xkey is None:
            raise AnomalyError(f"{path}: the .npz file holds no arrays")
        ykey = next((k for k in ("y", "labels", "targets") if k in keys and k != xkey), None)
        x = raw[xkey]
        y = None if ykey is None else raw[ykey]
    if y is None:
        return ArraySource(spec, x)
    if y.ndim != 1 or len(y) != len(x):
        raise AnomalyError(f"{path}: '{ykey}' holds {y.shape} labels for {len(x)} samples")
    names, targets = np.unique(y, return_inverse=True)
    return ArraySource(spec, x, targets.astype(np.int64), [str(v) for v in names])


def _load_folder(spec: str, root: Path, size: tuple[int, int] | None) -> ImageFolderSource:
    from PIL import Image

    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise AnomalyError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    classes = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else None for p in files]
    labelled = all(c is not None for c in classes)
    class_names = sorted(set(classes)) if labelled else None
    targets = np.array([class_names.index(c) for c in classes]) if labelled else None
    normal = [c for c in class_names if c.lower() in NORMAL_NAMES] if labelled else []
    modes, sizes = set(), {}
    for p in files:
        try:
            with Image.open(p) as im:
                modes.add(im.mode)
                sizes.setdefault((im.height, im.width), p)
        except (OSError, ValueError, SyntaxError) as e:
            raise AnomalyError(f"{p}: cannot read image ({e})") from None
    if size is None:
        if len(sizes) > 1:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise AnomalyError(
                f"{root}: images differ in size ({p1.name} {s1[0]}x{s1[1]}, {p2.name} "
                f"{s2[0]}x{s2[1]}); add ?size=H or ?size=HxW to the data spec"
            )
        size = next(iter(sizes))
    mode = "L" if modes <= _GRAY_MODES else "RGB"
    return ImageFolderSource(spec, files, targets, class_names, normal or None, mode, size)


def _step(src: DataSource, options: dict[str, str], key: str, default: int) -> int:
    """?start= / ?stop= as a step: an integer, or a fraction of the series (0.15)."""
    if key not in options:
        return default
    value = options[key]
    try:
        step = round(float(value) * len(src)) if "." in value else int(value)
        if step < 0 or ("." in value and not 0 <= float(value) <= 1):
            raise ValueError
    except ValueError:
        raise AnomalyError(f"{src.spec}: {key} '{value}' is not a step (integer) or a fraction in [0, 1]") from None
    return min(step, len(src))


def _select_series(src, options: dict[str, str]):
    """Apply ?start=, ?stop= and ?limit= to a series (time ranges, never a shuffle)."""
    for key in ("classes", "size", "synth", "share", "severity", "seed"):
        if key in options:
            raise AnomalyError(f"{src.spec}: {key}= applies to images only")
    start, stop = _step(src, options, "start", 0), _step(src, options, "stop", len(src))
    if "limit" in options:
        try:
            stop = min(stop, start + int(options["limit"]))
        except ValueError:
            raise AnomalyError(f"{src.spec}: limit '{options['limit']}' is not a positive integer") from None
    if stop - start < 1:
        raise AnomalyError(f"{src.spec}: no time steps in [{start}, {stop})")
    return src.slice(start, stop)


def load(spec: str | os.PathLike, data_dir=None, download: bool = False, *, columns=None,
         time_column: str | None = None, label_column: str | None = None, nan: str = "reject") -> DataSource:
    """Load a data spec (see module docstring); every problem is one AnomalyError.

    ``columns``, ``time_column``, ``label_column`` and ``nan`` ("reject" or "interpolate") apply
    to time series (CSV and NAB).
    """
    from . import series_sources as ss

    spec = str(spec)
    base, options = _parse(spec)
    if base.startswith("nab:"):
        if (columns and list(columns) != ["value"]) or time_column not in (None, "timestamp") or label_column:
            raise AnomalyError(f"{spec}: NAB series have fixed columns (timestamp, value); drop --column")
        return _select_series(ss.load_nab(spec, base[4:], data_dir, nan), options)
    if base == "-" or base.lower().endswith(".csv"):
        if base != "-" and not Path(base).expanduser().is_file():
            raise AnomalyError(f"{spec}: path '{Path(base).expanduser()}' does not exist")
        src = ss.load_csv(spec, Path(base).expanduser() if base != "-" else "-", columns, time_column, label_column, nan)
        return _select_series(src, options)
    if columns or time_column or label_column:
        raise AnomalyError(f"{spec}: --column, --time-column and --label-column apply to CSV series only")
    if base.startswith("mnist:"):
        if "size" in options:
            raise AnomalyError(f"{spec}: size= applies to image folders only")
        return _synthesize(_select(_load_mnist(spec, base.split(":", 1)[1], data_dir, download), options), options)
    path = Path(base).expanduser()
    if ":" in base and not path.exists() and not (len(base) > 1 and base[1] == ":"):
        scheme = base.split(":", 1)[0]
        raise AnomalyError(
            f"{spec}: unknown data scheme '{scheme}:'; expected mnist:train, mnist:test, "
            "a folder of images, or a .npy/.npz file"
        )
    if not path.exists():
        raise AnomalyError(f"{spec}: path '{path}' does not exist")
    if path.is_dir():
        size = _parse_size(spec, options["size"]) if "size" in options else None
        return _synthesize(_select(_load_folder(spec, path, size), options), options)
    if path.suffix.lower() in (".npy", ".npz"):
        if "size" in options:
            raise AnomalyError(f"{spec}: size= applies to image folders only")
        return _synthesize(_select(_load_array(spec, path), options), options)
    raise AnomalyError(
        f"{spec}: cannot read '{path.suffix or path.name}' files; expected a folder of "
        "images, a .npy/.npz file, or a .csv series"
    )
