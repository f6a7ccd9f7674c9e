"""Learned tensors as module buffers (anomalib's ``register_buffer`` style).

A detector keeps what it learned in ``nn.Module`` parameters and buffers, so that one generic
path saves and loads every detector (:mod:`anomalib_lite.bundles.bundle`): networks are modules already;
plain learned tensors (a memory bank, a Gaussian's mean and scatter) live in a :class:`Buffers`.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Buffers"]


class Buffers(nn.Module):
    """Named tensors as buffers; a name given None is absent (not saved, ``get`` gives None).

    ``Buffers.skeleton({"memory": ((10, 384), torch.float16)}, device="meta")`` makes the empty
    shapes a bundle's tensors must fit.

    Examples
    --------
    >>> import torch
    >>> b = Buffers(mean=torch.zeros(3), scatter=None)
    >>> sorted(b.state_dict()), b.get("scatter") is None
    (['mean'], True)
    >>> Buffers.skeleton({"mean": ((3,), torch.float64)}).mean.shape
    torch.Size([3])
    """

    def __init__(self, **tensors: torch.Tensor | None):
        super().__init__()
        for name, t in tensors.items():
            if t is not None:
                self.register_buffer(name, t)

    def get(self, name: str) -> torch.Tensor | None:
        return self._buffers.get(name)

    def set(self, name: str, t: torch.Tensor | None) -> None:
        if t is None:
            self._buffers.pop(name, None)
        else:
            self.register_buffer(name, t)

    @classmethod
    def skeleton(cls, shapes: dict[str, tuple[tuple[int, ...], torch.dtype] | None], device="meta") -> Buffers:
        return cls(**{k: None if s is None else torch.empty(s[0], dtype=s[1], device=device) for k, s in shapes.items()})
