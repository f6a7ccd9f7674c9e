"""Synthesis of subtle anomalies with exact masks.

Each op takes a batch (numpy (N, H, W[, C]) or torch (N, C, H, W); uint8 or float in [0, 1]) and
returns ``(images, masks, params)``: images of the same kind, dtype and device; bool masks
(N, H, W) of exactly the pixels whose stored value changed; one dict per sample with the op and
its drawn parameters.

``severity`` in (0, 1] makes anomalies subtle: no pixel changes by more than ``severity`` (in
[0, 1] intensity units) and at most ``severity * 0.2`` of the image changes; drawn sizes shrink
with it. A draw that changes fewer than ``min_pixels`` (default: a fifth of the region it drew)
is redrawn from the same per-sample stream, up to ``max_tries`` times. Draws derive from
(seed, epoch, sample index, op).

``pool``: normal images that ``patch_blend`` (and ``perlin`` with ``texture="pool"``) take
patches from; by default the other images of the batch, which makes a sample's result depend on
its batch. Pass a fixed pool for results that do not.
"""

from __future__ import annotations

import numpy as np

from .._random import sample_seed
from ..config import Ood, parse_synth_op
from ..errors import AugmentError
from ..schema import SYNTH_COMMON, SYNTH_OPS, check_params
from . import _core
from ._core import MAX_AREA
from ._ops import MAKERS

__all__ = [
    "MAX_AREA",
    "OPS",
    "cutpaste",
    "local_elastic",
    "patch_blend",
    "perlin",
    "region",
    "scar",
    "stroke_blob",
    "synthesize",
]

OPS = tuple(MAKERS)


def _common(where: str, **given) -> dict:
    return check_params(given, SYNTH_COMMON, where)


def _run_one(op: str, images, severity, seed, indices, epoch, pool, min_pixels, max_tries, params):
    common = _common(op, severity=severity, min_pixels=min_pixels, max_tries=max_tries)
    params = check_params(params, SYNTH_OPS[op], op)
    batch = _core.Batch(images, op)
    return _core.run(
        batch,
        lambda index: (op, MAKERS[op], params),
        seed=seed,
        indices=indices,
        epoch=epoch,
        pool=pool,
        where=op,
        **common,
    )


def cutpaste(
    images,
    severity=0.5,
    seed=0,
    indices=None,
    epoch=0,
    pool=None,
    min_pixels=0,
    max_tries=20,
    **params,
):
    """CutPaste: a rectangle (2-15 % of the area at severity 1, aspect 0.3-3.3) moved and jittered."""
    return _run_one(
        "cutpaste", images, severity, seed, indices, epoch, pool, min_pixels, max_tries, params
    )


def scar(
    images,
    severity=0.5,
    seed=0,
    indices=None,
    epoch=0,
    pool=None,
    min_pixels=0,
    max_tries=20,
    **params,
):
    """CutPaste-Scar: a thin rectangle rotated by up to +-45 degrees, filled from elsewhere."""
    return _run_one(
        "scar", images, severity, seed, indices, epoch, pool, min_pixels, max_tries, params
    )


def perlin(
    images,
    severity=0.5,
    seed=0,
    indices=None,
    epoch=0,
    pool=None,
    min_pixels=0,
    max_tries=20,
    **params,
):
    """DRAEM: a texture blended under a thresholded Perlin mask; octaves adapt to the image size."""
    return _run_one(
        "perlin", images, severity, seed, indices, epoch, pool, min_pixels, max_tries, params
    )


def local_elastic(
    images,
    severity=0.5,
    seed=0,
    indices=None,
    epoch=0,
    pool=None,
    min_pixels=0,
    max_tries=20,
    **params,
):
    """A smooth local warp inside a disc (a bent stroke, a dent)."""
    return _run_one(
        "local_elastic", images, severity, seed, indices, epoch, pool, min_pixels, max_tries, params
    )


def stroke_blob(
    images,
    severity=0.5,
    seed=0,
    indices=None,
    epoch=0,
    pool=None,
    min_pixels=0,
    max_tries=20,
    **params,
):
    """An added or erased stroke or blob, anchored on the foreground: for digits and line art."""
    return _run_one(
        "stroke_blob", images, severity, seed, indices, epoch, pool, min_pixels, max_tries, params
    )


def patch_blend(
    images,
    severity=0.5,
    seed=0,
    indices=None,
    epoch=0,
    pool=None,
    min_pixels=0,
    max_tries=20,
    **params,
):
    """NSA: 1-3 patches of other normal images, rescaled x0.7-1.3, Poisson-blended."""
    return _run_one(
        "patch_blend", images, severity, seed, indices, epoch, pool, min_pixels, max_tries, params
    )


def region(
    images,
    severity=0.5,
    seed=0,
    indices=None,
    epoch=0,
    pool=None,
    min_pixels=0,
    max_tries=20,
    **params,
):
    """A local change of any kind under a Perlin-shaped region or a thin curve: a foreign texture,
    another normal image, blur, tone, warp, flat fill or grain (DRAEM's synthesis, generalised)."""
    return _run_one(
        "region", images, severity, seed, indices, epoch, pool, min_pixels, max_tries, params
    )


def synthesize(
    images,
    ops=None,
    weights=None,
    severity=0.5,
    seed=0,
    indices=None,
    epoch=0,
    pool=None,
    min_pixels=0,
    max_tries=20,
    params=None,
):
    """Pick one op per sample (``weights``, default equal) and apply it.

    ``ops``: op names (default all); ``params``: ``{op: {key: value}}`` for any of them. The chosen
    op draws from the same stream as calling it alone, so ``synthesize(ops=["scar"])`` equals
    ``scar(...)``.
    """
    ops = list(OPS) if ops is None else list(ops)
    weights = [1.0] * len(ops) if weights is None else list(weights)
    if len(weights) != len(ops):
        raise AugmentError(
            f"synthesize: weights: expected {len(ops)} weights (one per op), got {len(weights)}"
        )
    params = params or {}
    extra = [k for k in params if k not in ops]
    if extra:
        raise AugmentError(
            f"synthesize: params: {extra[0]!r} is not among the ops ({', '.join(ops)})"
        )
    specs = [
        parse_synth_op({"op": op, "weight": wt, **params.get(op, {})}, f"synthesize op {i + 1}")
        for i, (op, wt) in enumerate(zip(ops, weights))
    ]
    ood = Ood(
        **_common("synthesize", severity=severity, min_pixels=min_pixels, max_tries=max_tries),
        ops=tuple(specs),
    )
    return run_ood(ood, images, seed=seed, indices=indices, epoch=epoch, pool=pool)


def run_ood(ood: Ood, images, *, seed: int, indices=None, epoch: int = 0, pool=None):
    """Run a validated ``ood:`` config section (used by ``Pipeline.synthesize``)."""
    if sum(o.weight for o in ood.ops) <= 0:
        raise AugmentError("synthesize: weights: they sum to 0")
    p = np.array([o.weight for o in ood.ops], dtype=np.float64)
    p /= p.sum()

    def choose(index: int):
        u = np.random.default_rng(sample_seed(seed, epoch, index, "synthesize")).random()
        o = ood.ops[min(int(np.searchsorted(np.cumsum(p), u, side="right")), len(p) - 1)]
        return o.op, MAKERS[o.op], o.params

    batch = _core.Batch(images, "synthesize")
    return _core.run(
        batch,
        choose,
        severity=ood.severity,
        seed=seed,
        indices=indices,
        epoch=epoch,
        pool=pool,
        min_pixels=ood.min_pixels,
        max_tries=ood.max_tries,
        where="synthesize",
    )
