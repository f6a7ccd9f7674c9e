"""imgaug backend: numpy images (N, H, W) or (N, H, W, C), uint8 or float in [0, 1].

The config becomes one imgaug augmenter tree with the same distributions as the torchvision
backend. imgaug draws from the augmenters' own generators, so for per-sample reproducibility
each sample reseeds every generator in the tree from hash(seed, epoch, index, position) and is
augmented alone (imgaug's batch mode would make a sample's draws depend on its batch). imgaug
works on uint8 here: float images are quantised to 1/255 steps and returned as float. Masks go
along as imgaug segmentation maps (nearest neighbour, 0 from outside whatever the mode).
"""

from __future__ import annotations

import numpy as np

from ._random import hash_words
from .config import Config, Step
from .errors import AugmentError

_AFFINE_MODE = {"constant": "constant", "edge": "edge", "reflect": "symmetric"}
_ELASTIC_MODE = {"constant": "constant", "edge": "nearest", "reflect": "reflect"}
_PERSPECTIVE_MODE = {"constant": "constant", "edge": "replicate"}


def check_array(x, where: str = "images") -> None:
    if not isinstance(x, np.ndarray):
        raise AugmentError(
            f"{where}: the imgaug backend takes a numpy array (N, H, W[, C]), "
            f"got {type(x).__name__}"
        )
    if x.ndim not in (3, 4):
        raise AugmentError(
            f"{where}: expected a 3-d or 4-d array (N, H, W[, C]), got shape {x.shape}"
        )
    if x.dtype != np.uint8 and x.dtype not in (np.float32, np.float64):
        raise AugmentError(
            f"{where}: dtype {x.dtype} is not supported; use uint8 or float in [0, 1]"
        )
    if x.dtype != np.uint8 and x.size and not (x.min() >= 0 and x.max() <= 1):
        raise AugmentError(
            f"{where}: float values must lie in [0, 1], got [{x.min():.4g}, {x.max():.4g}]"
        )


def check_mask_array(masks, x: np.ndarray) -> None:
    """Masks (N, H, W) or (N, H, W, K) of the images' N, H and W; bool or integer labels."""
    if not isinstance(masks, np.ndarray):
        raise AugmentError(
            f"masks: the imgaug backend takes a numpy array (N, H, W[, K]), got {type(masks).__name__}"
        )
    n, h, w = x.shape[:3]
    if masks.ndim not in (3, 4) or masks.shape[:3] != (n, h, w):
        raise AugmentError(
            f"masks: expected shape ({n}, {h}, {w}) or ({n}, {h}, {w}, K) to match the images "
            f"{x.shape}, got {masks.shape}"
        )
    if masks.dtype != bool and masks.dtype.kind not in "iu":
        raise AugmentError(
            f"masks: dtype {masks.dtype} is not supported by the imgaug backend; use bool or "
            "integer labels"
        )


def _v(rng: tuple[float, float], scale: float = 1.0):
    lo, hi = rng[0] * scale, rng[1] * scale
    return lo if lo == hi else (lo, hi)


def _cval(fill: float) -> int:
    return round(fill * 255)


def _build_step(step: Step, iaa, iap):
    p, op = step.params, step.op
    geo = {
        "order": 1,
        "cval": _cval(p.get("fill", 0.0)),
        "mode": _AFFINE_MODE[p.get("mode", "constant")],
    }
    if op == "hflip":
        return iaa.Fliplr(1.0)
    if op == "vflip":
        return iaa.Flipud(1.0)
    if op == "rotate":
        return iaa.Affine(rotate=_v(p["degrees"]), **geo)
    if op == "scale":
        return iaa.Affine(scale=_v(p["factor"]), **geo)
    if op == "affine":
        t = _v(p["translate"])
        return iaa.Affine(
            translate_percent={"x": t, "y": t},
            scale=_v(p["scale"]),
            shear={"x": _v(p["shear"])},
            rotate=_v(p["rotate"]),
            **geo,
        )
    if op == "perspective":
        return iaa.PerspectiveTransform(
            scale=_v(p["distortion"]),
            keep_size=True,
            cval=geo["cval"],
            mode=_PERSPECTIVE_MODE[p["mode"]],
        )
    if op == "crop_and_pad":
        return iaa.CropAndPad(
            percent=_v(p["fraction"]),
            pad_mode=geo["mode"],
            pad_cval=geo["cval"],
            keep_size=True,
            sample_independently=True,
        )
    if op == "brightness":
        return iaa.Add(_v(p["delta"], 255))
    if op == "contrast":
        return iaa.LinearContrast(_v(p["factor"]))
    if op == "gamma":
        return iaa.GammaContrast(_v(p["gamma"]))
    if op == "gaussian_noise":
        return iaa.AdditiveGaussianNoise(
            loc=0, scale=_v(p["sigma"], 255), per_channel=p["per_channel"]
        )
    if op == "salt_pepper":
        return iaa.ReplaceElementwise(
            mask=_v(p["amount"]), replacement=iap.Binomial(0.5) * 255, per_channel=p["per_channel"]
        )
    if op == "blur":
        return iaa.GaussianBlur(sigma=_v(p["sigma"]))
    if op == "elastic":
        return iaa.ElasticTransformation(
            alpha=_v(p["alpha"]),
            sigma=_v(p["sigma"]),
            order=1,
            cval=geo["cval"],
            mode=_ELASTIC_MODE[p["mode"]],
        )
    if op == "erasing":
        return iaa.Cutout(
            nb_iterations=1,
            position="uniform",
            size=_v(p["size"]),
            squared=False,
            fill_mode="constant",
            cval=_cval(p["value"]),
        )
    raise KeyError(op)


def _build(node, iaa, iap):
    if isinstance(node, Step):
        aug = _build_step(node, iaa, iap)
    else:
        children = [_build(c, iaa, iap) for c in node.children]
        if node.kind == "one_of":
            aug = iaa.OneOf(children)
        else:
            aug = iaa.SomeOf(node.k, children, random_order=False)
    return aug if node.p >= 1 else iaa.Sometimes(node.p, aug)


class ImgaugPipeline:
    """The config as one imgaug ``Sequential``, reseeded per sample."""

    def __init__(self, config: Config):
        from ._imgaug_compat import import_imgaug

        _, iaa, iap = import_imgaug()
        self.config = config
        self.augmenter = iaa.Sequential([_build(n, iaa, iap) for n in config.steps])
        self.augmenter.seed_(0)  # give every augmenter its own generator (none global)
        # reseeding each generator in place per sample costs ~15 us; seed_() rebuilds them (~500 us)
        augs = [self.augmenter, *self.augmenter.get_all_children(flat=True)]
        self._bit_generators = [a.random_state.generator.bit_generator for a in augs]

    def _reseed(self, epoch: int, index: int) -> None:
        n = len(self._bit_generators)
        if any(
            type(bg).__name__ != "SFC64" for bg in self._bit_generators
        ):  # not imgaug 0.4's default
            self.augmenter.seed_(
                int(hash_words(self.config.seed, epoch, index))
            )  # slower, same effect
            return
        words = hash_words(
            self.config.seed, epoch, index, np.arange(n)[:, None], np.arange(6)[None, :]
        )
        words = words.astype(np.uint64)
        state = (words[:, 0::2] << np.uint64(32)) | words[:, 1::2]  # three 64-bit words each
        for bg, (a, b, c) in zip(self._bit_generators, state):
            bg.state = {
                "bit_generator": "SFC64",
                "state": {"state": np.array([a, b, c, 1], np.uint64)},
                "has_uint32": 0,
                "uinteger": 0,
            }

    def __call__(self, x: np.ndarray, indices: np.ndarray, epoch: int, masks=None):
        check_array(x)
        if masks is not None:
            check_mask_array(masks, x)
            from imgaug.augmentables.segmaps import SegmentationMapsOnImage
        dtype, gray = x.dtype, x.ndim == 3
        img = x[..., None] if gray else x
        if dtype != np.uint8:
            img = np.round(img * 255).astype(np.uint8)
        out = np.empty_like(img)
        moved = None if masks is None else np.empty_like(masks)
        for i, index in enumerate(indices):
            self._reseed(epoch, int(index))
            if masks is None:
                out[i] = self.augmenter.augment_image(img[i]).reshape(img.shape[1:])
                continue
            image, seg = self.augmenter(
                image=img[i], segmentation_maps=SegmentationMapsOnImage(masks[i], shape=img[i].shape)
            )
            out[i], moved[i] = image.reshape(img.shape[1:]), seg.get_arr()
        out = out[..., 0] if gray else out
        out = out if dtype == np.uint8 else (out / 255).astype(dtype)
        return out if masks is None else (out, moved)
