"""Counter-based random numbers keyed by (seed, epoch, sample index, op).

Every draw is a hash of its key and a counter, so a sample's draws do not depend on which batch,
worker or order it comes in. The hash is a 32-bit integer mixer (lowbias32) on int64 values;
products are split into 16-bit halves so no int64 ever overflows. Per-pixel noise comes from a
torch generator per sample, seeded with the sample's key.
"""

from __future__ import annotations

import zlib

import numpy as np

M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(h, c: int):
    """(h * c) mod 2**32 for 0 <= h < 2**32, without overflowing int64."""
    return ((h & 0xFFFF) * c + (((h >> 16) * (c & 0xFFFF)) << 16)) & M32


def mix(h):
    """Bijective 32-bit mixer (lowbias32, C. Wellons) on ints or numpy int64 arrays."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x7FEB352D)
    h = h ^ (h >> 15)
    h = _mul32(h, 0x846CA68B)
    return h ^ (h >> 16)


def hash_words(*words) -> np.ndarray:
    """Hash a sequence of non-negative integers (scalars or broadcastable int64 arrays)."""
    h = np.int64(_GOLDEN)
    for w in words:
        w = np.asarray(w, dtype=np.int64)
        h = mix(h ^ (w & M32))
        h = mix(h ^ ((w >> 32) & M32) ^ _GOLDEN)
    return np.asarray(h, dtype=np.int64)


def op_code(name: str) -> int:
    """A stable integer for an op or a config path (the 'op' part of a key)."""
    return zlib.crc32(name.encode())


def sample_keys(seed: int, epoch: int, indices: np.ndarray, node: int) -> np.ndarray:
    """One 32-bit key per sample for one config node: hash(seed, epoch, index, node)."""
    return hash_words(seed, epoch, np.asarray(indices, dtype=np.int64), node)


def uniforms(keys: np.ndarray, n: int) -> np.ndarray:
    """(N, n) floats in [0, 1): draw k of sample i is hash(key_i, k), 24 bits of it."""
    counters = np.arange(n, dtype=np.int64)
    h = mix(keys[:, None] ^ mix(counters + _GOLDEN)[None, :])
    return (h >> 8).astype(np.float64) * 2.0**-24


def sample_seed(seed: int, epoch: int, index: int, op: str) -> np.random.SeedSequence:
    """A numpy SeedSequence for streams of variable length (synthesis redraws)."""
    return np.random.SeedSequence([seed, epoch, index, op_code(op)])


# ---- per-pixel fields in torch ------------------------------------------------------------


def field(keys: np.ndarray, shape: tuple[int, ...], stream: int, kind: str, like):
    """(N, *shape) per-pixel noise, ``kind`` "uniform" ([0, 1)) or "normal", dtype/device of ``like``.

    Each sample fills its slice from its own torch generator seeded with (key, stream): the
    generator's output for one sample does not depend on the batch, and it is far faster on CPU
    than hashing every pixel.
    """
    import torch

    # float32 whatever the data's dtype, so float64 data sees the same draws as float32 data
    out = torch.empty((len(keys), *shape), dtype=torch.float32, device=like.device)
    gen = torch.Generator(device=like.device)
    for i, key in enumerate(keys.tolist()):
        gen.manual_seed((key << 8) | stream)
        if kind == "normal":
            out[i].normal_(generator=gen)
        else:
            out[i].uniform_(generator=gen)
    return out.to(like.dtype)
