"""Data specs: the strings the CLI (and Python users) name data by.

``mnist:train`` / ``mnist:test`` (options ``?classes=7`` or ``?classes=0,1``, ``?limit=N``); a
folder of images (sub-folder names are class names, ``good`` and ``normal`` are normal; a folder
with images directly inside is unlabelled; option ``?size=64`` or ``?size=64x48`` resizes); one
image file; a glob such as ``"lot7/*.png"`` (unlabelled); ``.npy`` / ``.npz`` files (an ``.npz``
may hold labels under ``y``, ``labels`` or ``targets``). MVTec AD's layout is recognised: for
``CAT/test`` the masks in ``CAT/ground_truth/<defect>/<name>_mask.png`` come with the images.
Any image spec takes ``?tile=256`` (and ``overlap=0.25``) to be scored tile by tile, and
``?synth=stroke_blob`` (ops of ``augment.synth``; with ``share=``, ``severity=``, ``seed=``) to
plant synthetic anomalies with exact masks. :func:`load` returns a :class:`DataSource`, which
:func:`anomalib_lite.data.batches.iter_batches` understands. Image files are read lazily, batch by batch,
and every sample has a name (its path relative to the spec) for outputs.
Time series: a ``.csv`` file, ``-`` (CSV on stdin) or ``nab:realKnownCause/nyc_taxi.csv`` (from
``<data root>/NAB``), read by :mod:`anomalib_lite.data.series_sources`; options ``?start=`` and
``?stop=`` (a step, or a fraction of the series such as ``0.15``) and ``?limit=N`` cut it in time;
``?order=sort`` sorts rows by time (times that go back or repeat are an error otherwise),
``?order=file`` keeps the file's order unchecked (NAB's default); a CSV's ``?grid=1`` puts its
steps on their regular grid (the median step): each missing step becomes a row of gaps, which
``--nan interpolate`` fills. A CSV's ``?rows=samples`` reads its rows as independent samples (a
table of features, one vector per row: the vectors route, kNN), not as the steps of a series; a
label column gives classes ``normal`` and ``anomalous`` (``?classes=normal`` selects).
"""
from __future__ import annotations

import glob as _glob
import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from .datasource import ArraySource, DataSource, TileView, data_root  # noqa: F401  (sources' names: re-exported)
from ..errors import AnomalyError, shown
from .tiling import Tiling

__all__ = ["NORMAL_NAMES", "ArraySource", "DataSource", "ImageFolderSource", "data_root", "fit_hint", "is_series_spec", "rows_as_samples",
           "load", "read_as_fitted", "channel_note", "spec_files", "spec_path"]

NORMAL_NAMES = ("good", "normal", "ok")  # MVTec AD and MPDD; VisA; BTAD and the OK/NG of inspection lines
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm")
_FLOAT3 = "F;3"  # (our name) a TIFF of three float channels, read by tifffile: MVTec 3D-AD's xyz maps
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
# 16-bit or float images: read as float32 in [0, 1]
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "F", _FLOAT3}
_16_BIT = (0.0, 65535.0)  # the values a 16-bit image maps to black and white, unless ?range= says otherwise
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def _open_image(path: Path):
    """PIL's image of a file, or one AnomalyError naming it (unreadable, truncated header, or a
    decompression bomb: more pixels than PIL allows, ``PIL.Image.MAX_IMAGE_PIXELS`` x 2)."""
    from PIL import Image

    try:
        return Image.open(path)
    except Image.DecompressionBombError as e:
        raise AnomalyError(f"{path}: refused: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise AnomalyError(f"{path}: cannot read image ({e})") from None


def _float_tiff(path: Path, pixels: bool = True):
    """A TIFF that PIL cannot read, by tifffile (installed with scikit-image): float images of
    three channels (MVTec 3D-AD's xyz maps, a depth camera's point clouds) or 64-bit floats, its
    first image. ``pixels``: (H, W) or (H, W, 3) float32; else only its mode ("F" or ``_FLOAT3``)
    and (height, width). None when the file is not such a TIFF (PIL's own error then stands)."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        import tifffile
    except ImportError:
        return None
    from PIL import Image

    try:
        with tifffile.TiffFile(path) as tif:
            try:
                page = tif.series[0]  # (the image: its channels may be samples of one page or pages of their own)
                shape, dtype = tuple(page.shape), np.dtype(page.dtype)
            except Exception:  # noqa: BLE001  (no image tifffile can describe either: PIL's error stands)
                return None
            if dtype.kind != "f":
                return None
            if len(shape) == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3):  # planar: channels first
                shape = (*shape[1:], shape[0])
            if len(shape) == 3 and shape[-1] == 1:
                shape = shape[:2]
            if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] != 3):
                raise AnomalyError(f"{path}: a float TIFF of shape {'x'.join(map(str, page.shape))}; images of one "
                                   "or three channels are read")
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # (PIL's own bound on what it decodes)
            if limit and shape[0] * shape[1] > limit:
                raise AnomalyError(f"{path}: refused: {shape[0] * shape[1]:,} pixels, more than {limit:,} (PIL's "
                                   "limit against decompression bombs, Image.MAX_IMAGE_PIXELS x 2)")
            mode = "F" if len(shape) == 2 else _FLOAT3
            if not pixels:
                return mode, shape[:2]
            a = np.asarray(page.asarray())
    except AnomalyError:
        raise
    except Exception as e:  # noqa: BLE001  (a float image whose pixels tifffile cannot decode: damaged)
        if pixels:
            raise AnomalyError(f"{path}: cannot read image ({e})") from None
        return None  # (not a TIFF that tifffile opens: PIL's error stands)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    return a.reshape(shape).astype(np.float32)


def _paged_float(im) -> bool:
    """A float TIFF of several pages (each channel a page: tifffile's coming default for an
    (H, W, 3) float array), whose first page alone is what PIL reads: tifffile reads it whole."""
    return im.mode == "F" and getattr(im, "n_frames", 1) > 1 and im.format == "TIFF"


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and (height, width) as the image will be read (EXIF rotation applied), without
    decoding its pixels."""
    try:
        im = _open_image(path)
    except AnomalyError:
        found = _float_tiff(path, pixels=False)
        if found is None:
            raise
        return found
    with im:
        found = _float_tiff(path, pixels=False) if _paged_float(im) else None
        if found is not None:
            return found
        try:
            turned = im.getexif().get(0x0112) in _ROTATED
        except Exception:  # noqa: BLE001  (a damaged EXIF block: read the image as stored)
            turned = False
        return im.mode, ((im.width, im.height) if turned else (im.height, im.width))


def _wide(path: Path, a: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """A 16-bit or 32-bit float grey image's values mapped to [0, 1]: ``value_range`` (lo, hi)
    to black and white, clipped. Without one, 16-bit images map 0..65535 and float images must
    already lie in [0, 1]: a float image's values have no fixed scale (a depth map in mm, a
    temperature), and a scale guessed per image would hide the very differences in level that
    are anomalies, so another range is the user's to give, once for every image."""
    bad = ~np.isfinite(a)
    if bad.any():
        raise AnomalyError(f"{path}: {int(bad.sum()):,} pixels are NaN or infinite (a sensor's missing values?); "
                           "fill them before reading the image")
    if value_range is None and a.dtype == np.float32 and a.size and (a.min() < 0.0 or a.max() > 1.0):
        lo, hi = float(a.min()), float(a.max())
        raise AnomalyError(f"{path}: a 32-bit float image with values in [{lo:g}, {hi:g}], not [0, 1]: add "
                           f"?range=LO,HI to the data spec, the values read as black and white, the same for "
                           f"every image (this one's: ?range={lo:g},{hi:g})")
    lo, hi = value_range or (_16_BIT if a.dtype != np.float32 else (0.0, 1.0))
    return np.clip((a.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def _decode(path: Path, mode: str, size: tuple[int, int],
            value_range: tuple[float, float] | None = None) -> np.ndarray:
    """An image as (H, W) or (H, W, 3): uint8, or float32 in [0, 1] for 16-bit and 32-bit float
    grey (:func:`_wide`; in RGB: on each channel); EXIF orientation applied, palettes and CMYK
    converted, resized to ``size`` (bilinear)."""
    from PIL import Image, ImageOps

    try:
        im = _open_image(path)
    except AnomalyError:
        a = _float_tiff(path)
        if a is None:
            raise
        return _decode_float(path, a, mode, size, value_range)
    with im:
        whole = _float_tiff(path) if _paged_float(im) else None
        if whole is not None:
            return _decode_float(path, whole, mode, size, value_range)
        try:
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # noqa: BLE001  (a damaged EXIF block: keep the stored orientation)
                im.load()
            if im.mode in _WIDE_MODES:  # (PIL's own conversion to 8 bits clips at 255)
                a = np.asarray(im) if im.mode == "F" else np.asarray(im, dtype=np.int64)
                return _decode_float(path, a, mode, size, value_range)
            if im.mode == "P" or im.mode == "CMYK" or (im.mode not in ("L", "RGB") and mode == "L"):
                im = im.convert("RGBA" if im.mode == "P" else "RGB")
            im = im.convert(mode)
            if (im.height, im.width) != size:
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
        except AnomalyError:  # (one already naming the file: a wide image's values)
            raise
        except Image.DecompressionBombError as e:
            raise AnomalyError(f"{path}: refused: {e}") from None
        except (OSError, ValueError, SyntaxError) as e:
            raise AnomalyError(f"{path}: cannot read image ({e})") from None


def _decode_float(path: Path, a: np.ndarray, mode: str, size: tuple[int, int],
                  value_range: tuple[float, float] | None) -> np.ndarray:
    """A 16-bit or float image's values (:func:`_wide`), each channel resized (bilinear), in
    ``mode``: grey repeated on three channels for "RGB"; three float channels are refused as grey
    (x, y and z of a point cloud have no luminance)."""
    from PIL import Image

    if a.ndim == 3 and mode == "L":
        raise AnomalyError(f"{path}: an image of three float channels, read as grey (the bundle's fit or ?channels=1); "
                           "read it with ?channels=3 and fit on such images")
    a = _wide(path, a, value_range)
    if a.shape[:2] != size:
        planes = a[..., None] if a.ndim == 2 else a
        a = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c]), mode="F").resize(
            (size[1], size[0]), Image.BILINEAR)) for c in range(planes.shape[-1])], -1).clip(0.0, 1.0)
        a = a[..., 0] if planes.shape[-1] == 1 else a
    return a if mode == "L" or a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1)


#: decoded values per folder batch (images are read lazily: large images come fewer at a time)
_BATCH_VALUES = 1 << 26


class ImageFolderSource(DataSource):
    """Image files read lazily; all decoded to one mode ('L' or 'RGB') and one size.

    ``names`` are the paths relative to ``root``; ``mask_paths`` (one per file, None for normal
    images) are MVTec-style ground-truth masks, read and resized like the images.
    """

    def __init__(self, spec, paths, targets, class_names, normal_names, mode, size, root=None, mask_paths=None,
                 wide=False, value_range=None):
        self.spec, self.paths, self.targets = spec, list(paths), targets
        self.class_names, self.normal_names = class_names, normal_names
        self.mode, self.size = mode, size  # size is (H, W)
        self.wide = wide  # some images are 16-bit or float: every image is read as float32 in [0, 1]
        self.value_range = value_range  # (lo, hi): ?range=, their values read as black and white
        self.root = Path(root) if root is not None else None
        self.mask_paths = mask_paths
        self.names = [_relative(p, self.root) for p in self.paths]
        self.colour_files = None  # how many files hold colour (set by the reader that probed them)

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, path: Path) -> np.ndarray:
        x = _decode(path, self.mode, self.size, self.value_range)
        return x.astype(np.float32) / 255.0 if self.wide and x.dtype == np.uint8 else x

    def _read_mask(self, path: Path | None) -> np.ndarray:
        from PIL import Image

        if path is None:
            return np.zeros(self.size, dtype=bool)
        with _open_image(path) as im:
            try:
                if im.mode not in ("1", "L", "P"):
                    im = im.convert("L")
                if (im.height, im.width) != self.size:
                    im = im.resize((self.size[1], self.size[0]), Image.NEAREST)
                a = np.asarray(im)
            except (OSError, ValueError, SyntaxError) as e:
                raise AnomalyError(f"{path}: cannot read mask ({e})") from None
        top = int(a.max(initial=0))
        return a > top // 2 if top > 1 else a > 0  # 0/255 masks (MVTec) and 0/1 masks alike

    @property
    def has_masks(self) -> bool:
        return self.mask_paths is not None

    def read_masks(self, indices) -> np.ndarray | None:
        if self.mask_paths is None:
            return None
        return np.stack([self._read_mask(self.mask_paths[int(i)]) for i in indices])

    def batches(self, batch_size: int) -> Iterator[tuple]:
        channels = 1 if self.mode == "L" else 3
        step = max(1, min(batch_size, _BATCH_VALUES // (self.size[0] * self.size[1] * channels)))
        for i in range(0, len(self.paths), step):
            x = np.stack([self._read(p) for p in self.paths[i : i + step]])
            y = None if self.targets is None else self.targets[i : i + step]
            yield x, y

    def subset(self, indices: np.ndarray) -> ImageFolderSource:
        t = None if self.targets is None else self.targets[indices]
        paths = [self.paths[i] for i in indices]
        masks = None if self.mask_paths is None else [self.mask_paths[i] for i in indices]
        return self._carry(ImageFolderSource(
            self.spec, paths, t, self.class_names, self.normal_names, self.mode, self.size, self.root, masks,
            self.wide, self.value_range,
        ))


def _relative(path: Path, root: Path | None) -> str:
    if root is None:
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


# ---------------------------------------------------------------- spec parsing

_OPTIONS = {"channels", "classes", "grid", "limit", "order", "overlap", "range", "rows", "seed", "severity", "share",
            "size", "start", "stop", "synth", "tile"}
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


def _parse_channels(spec: str, value: str) -> str:
    """``?channels=1`` (grey) or ``3`` (RGB): the PIL mode every image is read in."""
    if value not in ("1", "3"):
        raise AnomalyError(f"{spec}: channels '{value}': use channels=1 (grey) or channels=3 (RGB)")
    return "L" if value == "1" else "RGB"


def _parse_range(spec: str, value: str) -> tuple[float, float]:
    """``?range=LO,HI``: the values of 16-bit and 32-bit float images read as black and white."""
    try:
        lo, hi = (float(v) for v in value.split(","))
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError
    except ValueError:
        raise AnomalyError(f"{spec}: range '{value}' is not LO,HI (two numbers, LO < HI)") from None
    return lo, hi


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
    sample_names = None if src.names is None else list(src.names)
    return src._carry(ArraySource(src.spec, x, targets, names, normal, masks, sample_names))


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
            raise AnomalyError(f"{spec}: MNIST download to {root} failed ({reason}); offline, put MNIST's raw files in "
                               "DIR/MNIST/raw and set ANOMALY_DATA_DIR=DIR or pass --data-dir DIR") from None
    x = ds.data.numpy()
    return ArraySource(spec, x, ds.targets.numpy(), [str(i) for i in range(10)])


def _load_array(spec: str, path: Path) -> ArraySource:
    """A .npy array, or an .npz archive's samples (``x``/``X``/``images``/``data``, else its first
    array) and labels (``y``/``labels``/``targets``). Each array's header is checked before any
    memory is taken for it (see :func:`_read_npy`)."""
    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as fh:
                x, y, ykey = _read_npy(fh, os.fstat(fh.fileno()).st_size, str(path)), None, None
        else:
            x, y, ykey = _read_npz(path)
    except AnomalyError:
        raise
    except (OSError, ValueError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) as e:
        raise AnomalyError(f"{path}: cannot read array file ({shown(str(e))})") from None
    if y is None:
        return ArraySource(spec, x)
    if y.ndim != 1 or len(y) != len(x):
        raise AnomalyError(f"{path}: '{shown(ykey, 60)}' holds {y.shape} labels for {len(x)} samples")
    names, targets = np.unique(y, return_inverse=True)
    # 0/1 labels (ints, floats or bools) say which samples are normal, as a series' label column does
    binary = y.dtype.kind in "biuf" and set(np.asarray(names, dtype=np.float64).tolist()) <= {0.0, 1.0}
    normal = [str(names[0])] if binary and float(names[0]) == 0.0 else None
    return ArraySource(spec, x, targets.astype(np.int64), [str(v) for v in names], normal)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """(samples, labels or None, the labels' key) of an .npz archive (a zip of .npy members)."""
    with zipfile.ZipFile(path) as zf:
        members = {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}
        keys = list(members)
        xkey = next((k for k in ("x", "X", "images", "data") if k in keys), keys[0] if keys else None)
        if xkey is None:
            raise AnomalyError(f"{path}: the .npz file holds no arrays")
        ykey = next((k for k in ("y", "labels", "targets") if k in keys and k != xkey), None)
        out = []
        for key in (xkey, ykey):
            if key is None:
                out.append(None)
                continue
            with zf.open(members[key]) as fh:
                out.append(_read_npy(fh, members[key].file_size, f"{path}: array '{shown(key, 60)}'"))
    return out[0], out[1], ykey


def _read_npy(fh, size: int, where: str) -> np.ndarray:
    """The array of a .npy stream of ``size`` bytes. Its header is read and checked first: no
    Python objects (they would need unpickling; never done), and the data it claims must be the
    bytes the file holds, so a header claiming 10^8 images is one error, not a 24 GB allocation."""
    from numpy.lib import format as npf

    try:
        version = npf.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npf.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = npf.read_array_header_2_0(fh)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} not supported")
    except (ValueError, EOFError, TypeError, SyntaxError) as e:
        raise AnomalyError(f"{where}: cannot read array file (not a .npy array: {shown(str(e))})") from None
    if dtype.hasobject:
        raise AnomalyError(f"{where}: holds Python objects (dtype object); only arrays of numbers are read "
                           "(objects would need unpickling, which is never done)")
    claimed = math.prod(shape) * dtype.itemsize
    held = size - fh.tell()
    if claimed != held:
        raise AnomalyError(f"{where}: its header claims a {dtype} array of shape {tuple(shape)} ({claimed:,} bytes) "
                           f"but the file holds {held:,} bytes of data (damaged or forged)")
    fh.seek(0)
    return npf.read_array(fh, allow_pickle=False)


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _load_folder(spec: str, root: Path, size: tuple[int, int] | None, mode: str | None = None,
                 value_range=None) -> ImageFolderSource:
    """A folder: sub-folders are classes (labelled), or images directly inside (unlabelled)."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        raise AnomalyError(
            f"{spec}: an MVTec-style category (train/, test/, ground_truth/); use {root / 'train'} "
            f"to fit and {root / 'test'} to score or evaluate"
        )
    files = _image_files(root)
    if not files:
        tables = sorted(root.glob("*.csv"))
        series = (f"; it holds {len(tables)} CSV file(s): for one series read from them in name order, give "
                  f"'{root / '*.csv'}'") if tables else ""
        raise AnomalyError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}){series}")
    classes = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else None for p in files]
    labelled = all(c is not None for c in classes)
    class_names = sorted(set(classes)) if labelled else None
    targets = np.array([class_names.index(c) for c in classes]) if labelled else None
    normal = [c for c in class_names if c.lower() in NORMAL_NAMES] if labelled else []
    masks = _mvtec_masks(root, files, classes, normal) if labelled else None
    return _image_source(spec, root, files, size, targets, class_names, normal or None, masks, mode, value_range)


def _mvtec_masks(root: Path, files: list[Path], classes: list[str], normal: list[str]) -> list | None:
    """MVTec AD's ground truth beside a test folder: ``../ground_truth/<defect>/<name>_mask.png``
    for every image of a defect class (normal images have none). All or nothing: a defect class
    without a ground-truth folder means no masks; a folder that lacks one image's mask is an error."""
    gt = root.parent / "ground_truth"
    if not gt.is_dir():
        return None
    out: list[Path | None] = []
    for path, cls in zip(files, classes):
        if cls in normal:
            out.append(None)
            continue
        folder = gt / cls
        if not folder.is_dir():
            return None
        rel = path.relative_to(root / cls)
        candidates = [folder / rel.parent / f"{path.stem}_mask{ext}" for ext in (".png", path.suffix)]
        candidates.append(folder / rel)
        mask = next((c for c in candidates if c.is_file()), None)
        if mask is None:
            raise AnomalyError(f"{path}: no ground-truth mask (looked for {candidates[0]})")
        out.append(mask)
    return out


class SizesDiffer(AnomalyError):
    """A folder's images differ in size and no ``?size=`` resizes them (a caller that knows the
    size to read them at says so: ``workflows.load_source``, the size a bundle was fitted on)."""


def _image_source(spec, root, files, size, targets=None, class_names=None, normal=None, masks=None,
                  mode=None, value_range=None) -> ImageFolderSource:
    """Check that every file opens and that sizes agree (unless ``size`` resizes them); ``mode``
    ("L" or "RGB", ``?channels=``) reads every image so, else grey when every file is grey;
    ``value_range`` (``?range=``) applies to 16-bit and float images, so some must be."""
    modes, sizes, colour = set(), {}, 0
    for p in files:
        file_mode, hw = _probe(p)
        modes.add(file_mode)
        colour += file_mode not in _GRAY_MODES
        sizes.setdefault(hw, p)
    if size is None:
        if len(sizes) > 1:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise SizesDiffer(
                f"{spec}: images differ in size ({p1.name} {s1[0]}x{s1[1]}, {p2.name} "
                f"{s2[0]}x{s2[1]}); add ?size=H or ?size=HxW to the data spec"
            )
        size = next(iter(sizes))
    mode = mode or ("L" if modes <= _GRAY_MODES else "RGB")
    wide = bool(modes & _WIDE_MODES)  # (16-bit grey among RGB images: read as float grey, then as RGB)
    if value_range is not None and not wide:
        raise AnomalyError(f"{spec}: range= applies to 16-bit and 32-bit float images; these are 8-bit "
                           f"({', '.join(sorted(modes))}), read as 0..255")
    source = ImageFolderSource(spec, files, targets, class_names, normal, mode, size, root, masks, wide, value_range)
    source.colour_files = colour
    return source


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (names are relative to it)."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _glob.has_magic(p))]]
    return Path(*fixed) if fixed else Path(".")


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
    for key in ("classes", "size", "channels", "range", "synth", "share", "severity", "seed", "tile", "overlap"):
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


def read_as_fitted(spec: str, fitted_spec: str | None, channels: int | None = None) -> str:
    """``spec`` with ``fitted_spec``'s ``?size=`` and ``?range=`` and the fit's ``channels`` (1 or
    3: the images' first axis) added when ``spec`` reads image files and gives none of its own: a
    bundle scores files read as its fit read them (resized; an RGB photograph made grey for a grey
    fit, a grey one repeated on three channels for an RGB fit; a float image's values mapped as
    the fit's were)."""
    fitted = _parse(str(fitted_spec))[1] if fitted_spec else {}
    size, value_range = fitted.get("size"), fitted.get("range")
    base, options = _parse(spec)
    if is_series_spec(base) and not base.startswith("nab:") and "rows" not in options and rows_as_samples(fitted_spec):
        return spec + ("&" if "?" in spec else "?") + "rows=samples"  # a table fitted row by row is scored so
    if base.startswith(("mnist:", "nab:")) or base == "-" or Path(base).suffix.lower() in (".npy", ".npz", ".csv"):
        return spec
    add = {k: v for k, v in (("size", size), ("channels", channels if channels in (1, 3) else None),
                             ("range", value_range)) if v and k not in options}
    return spec + "".join(f"{'&' if '?' in spec or i else '?'}{k}={v}" for i, (k, v) in enumerate(add.items()))


def channel_note(source, spec: str) -> str | None:
    """The note a bundle gives when it reads image files in other channels than theirs (the fit's,
    which :func:`read_as_fitted` adds unless ``spec`` names its own): colour photographs scored by
    a grey fit lose what only their colour shows; grey files scored by a colour fit are compared
    with colour parts. None when the channels agree or ``spec`` chose them."""
    if not isinstance(source, ImageFolderSource) or source.colour_files is None or "channels" in _parse(spec)[1]:
        return None
    n, colour = len(source), source.colour_files
    if source.mode == "L" and colour:
        return (f"{spec}: {colour:,} of {n:,} images are in colour and are read as grey, as the bundle's fit read "
                "its images: a defect seen only in its colour is not scored (fit on colour images to score colour)")
    if source.mode == "RGB" and not colour:
        return (f"{spec}: grey images, read as grey on all three channels because the bundle was fitted on colour "
                "images: their scores compare them with colour parts")
    return None


#: image files above this many pixels, read at full size, get a hint before a fit (MVTec AD's
#: 700 to 1024 px photographs do; the inspection set's 128 px crops and MNIST do not)
LARGE_IMAGE = 512 * 512


def fit_hint(spec: str, source: DataSource) -> str | None:
    """The one warning ``fit`` gives before its work, or None:

    * image files read at their full size when that size is large (no ``?size=`` nor ``?tile=``
      given): every patch feature costs time and memory;
    * a series whose time steps have rare gaps (:meth:`SeriesSource.gap_hint`): rows are read as
      consecutive steps, so each gap shifts the phase of the rhythms after it."""
    if getattr(source, "kind", None) == "series":
        return source.gap_hint()
    if not isinstance(source, ImageFolderSource) or source.size[0] * source.size[1] <= LARGE_IMAGE:
        return None
    options = _parse(str(spec))[1]
    if "size" in options or "tile" in options:
        return None
    h, w = source.size
    return (f"{spec}: images of {w}x{h} px are fitted at full size, {h * w / 256 ** 2:.0f} times the pixels of "
            "256x256 (fit time grows with them); add ?size=256 to fit faster where defects stay visible at that "
            "size (?tile=512 keeps every pixel in bounded memory, at more time)")


def spec_path(spec: str) -> Path | None:
    """The file or folder a data spec reads (a glob: the folder before its first wildcard), or
    None for data sets and stdin: what outputs must never overwrite."""
    base = str(spec).split("?")[0]
    if base in ("", "-") or base.startswith(("mnist:", "nab:")):
        return None
    path = Path(base).expanduser()
    if _glob.has_magic(base) and not path.exists():
        return _glob_root(str(path))
    return path if path.exists() else None


def spec_files(spec: str, data_dir=None) -> list[Path]:
    """Every file a data spec reads (what no output may replace): a folder's images (and MVTec
    masks beside it), the files a glob matches, the file itself, MNIST's raw files, a NAB series
    and its label files; nothing for stdin."""
    base = str(spec).split("?")[0]
    if base in ("", "-"):
        return []
    if base.startswith("mnist:"):
        raw = data_root(data_dir) / "MNIST" / "raw"
        return sorted(p for p in raw.iterdir() if p.is_file()) if raw.is_dir() else []
    if base.startswith("nab:"):
        root = data_root(data_dir) / "NAB"
        return [root / "data" / base[4:], root / "labels" / "combined_windows.json",
                root / "labels" / "combined_labels.json"]
    path = Path(base).expanduser()
    if _glob.has_magic(base) and not path.exists():  # (a CSV glob reads every file it matches)
        return sorted(Path(p) for p in _glob.glob(str(path), recursive=True)
                      if (is_series_spec(base) or Path(p).suffix.lower() in IMAGE_SUFFIXES) and Path(p).is_file())
    if path.is_dir():
        gt = path.parent / "ground_truth"
        return _image_files(path) + (sorted(p for p in gt.rglob("*") if p.is_file()) if gt.is_dir() else [])
    return [path]


def is_series_spec(spec) -> bool:
    """Whether a data spec names a time series (a CSV file, ``-`` for stdin, ``nab:...``), from
    its name alone (before reading it)."""
    base = str(spec).split("?")[0]
    return base == "-" or base.lower().endswith(".csv") or base.startswith("nab:")


def load(spec: str | os.PathLike, data_dir=None, download: bool = False, *, columns=None,
         time_column: str | None = None, label_column: str | None = None, nan: str = "reject") -> DataSource:
    """Load a data spec (see module docstring); every problem is one AnomalyError.

    ``columns``, ``time_column``, ``label_column`` and ``nan`` ("reject" or "interpolate") apply
    to time series (CSV and NAB).
    """
    from . import series_sources as ss

    spec = str(spec)
    base, options = _parse(spec)
    if not base.strip():  # (not the current folder: an empty spec is a mistake, as an unset variable gives)
        raise AnomalyError(f"data spec '{shown(spec, 80)}' names no data; give a folder, a file, a glob, mnist:..., "
                           "nab:... or - for stdin")
    rows_as_samples(spec)  # (a bad rows= value is one error here)
    if "rows" in options and not is_series_spec(base):
        raise AnomalyError(f"{spec}: rows= applies to CSV files only")
    if base.startswith("nab:"):
        if "rows" in options:
            raise AnomalyError(f"{spec}: rows= applies to CSV files only (NAB's files are series)")
        if (columns and list(columns) != ["value"]) or time_column not in (None, "timestamp") or label_column:
            raise AnomalyError(f"{spec}: NAB series have fixed columns (timestamp, value); drop --column")
        if "grid" in options:
            raise AnomalyError(f"{spec}: grid= applies to CSV series (NAB scores its rows as they are)")
        return _select_series(ss.load_nab(spec, base[4:], data_dir, nan, options.get("order", "file")), options)
    if is_series_spec(base):
        path = Path(base).expanduser()
        if _glob.has_magic(base) and not path.exists():  # days/*.csv: one series, the files in name order
            files = sorted(Path(p) for p in _glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not files:
                raise AnomalyError(f"{spec}: no files match '{base}'")
            src = ss.load_csvs(spec, files, columns, time_column, label_column, nan, _order(spec, options),
                               grid=options.get("grid") == "1", samples=options.get("rows") == "samples")
            return _rows(_select_series(src, _series_options(options)), options)
        if base != "-" and not path.is_file():
            raise AnomalyError(f"{spec}: path '{path}' " + ("is a folder, not a CSV file" if path.is_dir() else "does not exist"))
        if options.get("grid", "1") not in ("0", "1"):
            raise AnomalyError(f"{spec}: grid '{options['grid']}': use grid=1 (steps on their regular grid) or grid=0")
        src = ss.load_csv(spec, path if base != "-" else "-", columns, time_column, label_column, nan,
                          _order(spec, options), grid=options.get("grid") == "1",
                          samples=options.get("rows") == "samples")
        return _rows(_select_series(src, _series_options(options)), options)
    if columns or time_column or label_column:
        raise AnomalyError(f"{spec}: --column, --time-column and --label-column apply to CSV series only")
    src = _load_images(spec, base, options, data_dir, download)
    if "tile" in options:
        src.tiling = _tiling(spec, options)
    elif "overlap" in options:
        raise AnomalyError(f"{spec}: overlap= applies with tile= only")
    return src


def _order(spec: str, options: dict[str, str]) -> str:
    """How a CSV's times are checked: ``?order=``, else refused when they go back; samples
    (``?rows=samples``) have no order to keep."""
    if options.get("rows") == "samples":
        for key in ("order", "grid"):
            if key in options:
                raise AnomalyError(f"{spec}: {key}= applies to series, not to rows=samples")
        return "file"
    return options.get("order", "reject")


def _series_options(options: dict[str, str]) -> dict[str, str]:
    """The options a series reader takes: with ``rows=samples`` not ``rows`` nor ``classes``
    (the samples select their classes afterwards)."""
    if options.get("rows") != "samples":
        return options
    return {k: v for k, v in options.items() if k not in ("rows", "classes")}


def _rows(src, options: dict[str, str]) -> DataSource:
    """A CSV series as it is, or with ``?rows=samples`` its rows as samples: (N, D) vectors, the
    label column (if any) as classes ``normal`` and ``anomalous``, each sample named by its id
    column's text (a column named id, key, ``*_id``, ...: ``series_sources.is_id_name``), else
    by its row."""
    if options.get("rows") != "samples":
        return src
    if src.labels is None:
        out = ArraySource(src.spec, src.values.astype(np.float32), names=src.row_names)
    else:
        out = ArraySource(src.spec, src.values.astype(np.float32), np.asarray(src.labels, dtype=np.int64),
                          ["normal", "anomalous"], ["normal"], names=src.row_names)
    out.table = {"columns": list(src.columns), "time_column": src.time_column, "header": src.header,
                 "label_column": src.label_column, "id_column": src.id_column}
    return _select(out, {k: v for k, v in options.items() if k == "classes"})


def rows_as_samples(spec) -> bool:
    """Whether a data spec reads a CSV's rows as samples (``?rows=samples``)."""
    base, _, query = str(spec).partition("?")
    rows = dict(parse_qsl(query)).get("rows", "steps")
    if rows not in ("steps", "samples"):
        raise AnomalyError(f"{spec}: rows '{shown(rows, 40)}': use rows=samples (each row one sample, a table of "
                           "features) or rows=steps (the steps of a series, the default)")
    return is_series_spec(base) and rows == "samples"


def _tiling(spec: str, options: dict[str, str]) -> Tiling:
    try:
        tile = int(options["tile"])
        overlap = float(options.get("overlap", 0.25))
        return Tiling(tile, overlap)
    except ValueError as e:
        why = str(e) if "tile" in str(e) or "overlap" in str(e) else f"tile '{options['tile']}' is not a positive integer"
        raise AnomalyError(f"{spec}: {why}") from None


def _load_images(spec: str, base: str, options: dict[str, str], data_dir, download: bool) -> DataSource:
    for key in ("order", "grid"):
        if key in options:
            raise AnomalyError(f"{spec}: {key}= applies to time series only")
    if base.startswith("mnist:"):
        for key in ("size", "channels", "range"):
            if key in options:
                raise AnomalyError(f"{spec}: {key}= applies to image files only")
        return _synthesize(_select(_load_mnist(spec, base.split(":", 1)[1], data_dir, download), options), options)
    size = _parse_size(spec, options["size"]) if "size" in options else None
    mode = _parse_channels(spec, options["channels"]) if "channels" in options else None
    value_range = _parse_range(spec, options["range"]) if "range" in options else None
    path = Path(base).expanduser()
    if _glob.has_magic(base) and not path.exists():
        files = sorted(Path(p) for p in _glob.glob(str(path), recursive=True)
                       if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file())
        if not files:
            raise AnomalyError(f"{spec}: no image files match '{base}'")
        src = _image_source(spec, _glob_root(str(path)), files, size, mode=mode, value_range=value_range)
        return _synthesize(_select(src, options), options)
    if ":" in base and not path.exists() and not (len(base) > 1 and base[1] == ":"):
        scheme = base.split(":", 1)[0]
        raise AnomalyError(
            f"{spec}: unknown data scheme '{scheme}:'; expected mnist:train, mnist:test, "
            "a folder of images, or a .npy/.npz file"
        )
    if not path.exists():
        raise AnomalyError(f"{spec}: path '{path}' does not exist")
    if path.is_dir():
        return _synthesize(_select(_load_folder(spec, path, size, mode, value_range), options), options)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _synthesize(_select(_image_source(spec, path.parent, [path], size, mode=mode, value_range=value_range),
                                   options), options)
    if path.suffix.lower() in (".npy", ".npz"):
        for key in ("size", "channels", "range"):
            if key in options:
                raise AnomalyError(f"{spec}: {key}= applies to image files only")
        return _synthesize(_select(_load_array(spec, path), options), options)
    raise AnomalyError(
        f"{spec}: cannot read '{path.suffix or path.name}' files; expected a folder of images, "
        "an image file, a glob such as 'lot7/*.png', a .npy/.npz file, or a .csv series"
    )
