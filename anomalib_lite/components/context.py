"""Mutual scoring: a patch is also compared with the other images of the batch being scored.

A part from a new lot, a new camera or another stretch of the material drifts from the training
images as a whole: every patch of a good part moves away from the bank, and a threshold calibrated
on training images flags good parts (the inspection set's good crops from another part of each
photograph: up to 35 % of them at a 1 % target). The other parts of the same batch share that
drift; a defect is rare among them. So a patch is normal when the bank or the batch explains it
(MuSc, Li et al., ICLR 2024): its distance is the smaller of the bank's and the mutual distance,
the mean of the smallest ``share`` of its nearest-patch distances to each reference image.

References are a seeded draw of images from the batch, fixed before scoring, so a score does not
depend on how the batch is chunked. An image never vouches for itself: a reference identical to
the image scored (the same pixels) is left out. The mutual distance can only lower a patch's
distance, so a score with context is never above the score without it, and a threshold
calibrated on normal images keeps its false-positive bound on data like them. What it costs: a
defect shared by more than ``share`` of the references (a systematic defect of the lot) is
explained by the batch, and each image is searched against every reference.

The images' global statistics (exposure, contrast, sharpness; the combined image score's third
kind of evidence) are compared the same way: their distance is the smaller of the distance to the
training images' mean and the distance to the median of the references' statistics (the image's
own left out), so a lot that is dimmer or blurred as a whole is judged by what else sets its
images apart.
"""
from __future__ import annotations

import hashlib

import torch

from .memory import KnnIndex

__all__ = ["BatchContext", "CONTEXT_IMAGES", "CONTEXT_SHARE"]

#: reference images drawn from the batch (MuSc compares with every other image; a fixed number keeps
#: the cost linear in the batch). Chosen on the inspection set's dev half (the offline route: image
#: ROC-AUC 87.5 with 30, 89.1 with 60 and with 120, at 17, 28 and 48 s per 180 crops of 128 px on
#: 2 cores; benchmarks/mutual_scoring.py --images 30,60,120)
CONTEXT_IMAGES = 60
#: share of the references whose nearest patches are averaged: a defect must recur in more than
#: this share of the batch to be explained by it
CONTEXT_SHARE = 0.3


def _digest(image: torch.Tensor) -> bytes:
    return hashlib.blake2b(image.detach().float().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()


class BatchContext:
    """Reference images' patch features and the mutual distance of new patches to them.

    ``images`` (m, C, H, W) as the detector receives them (to recognise an image among its own
    references), ``patches`` (m, d, h, w) their patch features.
    """

    def __init__(self, images: torch.Tensor, patches: torch.Tensor, share: float = CONTEXT_SHARE,
                 stats: torch.Tensor | None = None):
        m, d = patches.shape[:2]
        rows = patches.permute(0, 2, 3, 1).reshape(m, -1, d).float()
        self.indexes = [KnnIndex(r) for r in rows]
        self.digests = [_digest(im) for im in images]
        self.share = float(share)
        self.stats = None if stats is None else stats.double()  # (m, k): the references' statistics

    def _own(self, images: torch.Tensor, device) -> torch.Tensor:
        """(n, m): whether each reference is the image scored (the same pixels)."""
        return torch.tensor([[a == b for b in self.digests] for a in map(_digest, images)], device=device)

    def stats_centres(self, images: torch.Tensor) -> torch.Tensor:
        """(n, k): for each of ``images``, the median of the references' statistics, its own left out."""
        own = self._own(images, self.stats.device)
        ref = self.stats[None].expand(len(images), -1, -1).masked_fill(own[:, :, None], float("nan"))
        return ref.nanmedian(dim=1).values

    def __len__(self) -> int:
        return len(self.indexes)

    def distances(self, images: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """(n, h * w) mutual distances of the patches (n, d, h, w) of ``images`` (n, C, H, W)."""
        n, d = patches.shape[:2]
        rows = patches.permute(0, 2, 3, 1).reshape(-1, d).float()
        near = torch.stack([index.search(rows, 1)[:, 0] for index in self.indexes], 1).reshape(n, -1, len(self))
        own = self._own(images, near.device)
        near = near.masked_fill(own[:, None, :], float("inf"))  # an image never vouches for itself
        k = max(1, round(self.share * (len(self) - 1)))
        return near.sort(dim=2).values[..., :k].mean(2)
