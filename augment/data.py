"""Pipelines in torch data loading: a Dataset wrapper and a worker initialiser.

Draws are keyed by the sample's index in the dataset and the epoch, so a DataLoader gives the
same augmented samples with any number of workers, in any order, with any batch size.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .pipeline import Pipeline


class AugmentedDataset(torch.utils.data.Dataset):
    """``dataset[i]`` augmented by ``pipeline`` with draws keyed by (seed, epoch, i).

    Items may be an image or a tuple whose first element is the image (the rest passes through).
    Images: a tensor (C, H, W), an array (H, W[, C]) or a PIL image; they are handed to the
    pipeline in its backend's layout and come back as a tensor (torchvision) or as the kind they
    came in (imgaug). ``set_epoch`` reaches running workers too (the epoch lives in shared memory),
    so persistent workers see it.
    """

    def __init__(self, dataset, pipeline: Pipeline):
        self.dataset = dataset
        self.pipeline = pipeline
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.pipeline.set_epoch(epoch)  # validates
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if isinstance(item, tuple):
            return (self._augment(item[0], index), *item[1:])
        return self._augment(item, index)

    def _augment(self, image, index: int):
        if self.pipeline.backend == "torchvision":
            if not isinstance(image, torch.Tensor):
                a = np.asarray(image)
                a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
                image = torch.from_numpy(np.ascontiguousarray(a))
            return self.pipeline(image[None], [index], self.epoch)[0]
        was_tensor = isinstance(image, torch.Tensor)
        a = image.permute(1, 2, 0).numpy() if was_tensor else np.asarray(image)
        a = a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
        out = self.pipeline(np.ascontiguousarray(a)[None], [index], self.epoch)[0]
        if was_tensor:
            return torch.from_numpy(out.reshape(*out.shape[:2], -1)).permute(2, 0, 1).contiguous()
        return out


def worker_init_fn(worker_id: int) -> None:
    """Give each DataLoader worker its own global RNG streams (Python, numpy, imgaug).

    Pipelines do not use global generators, so they need none of this; it protects other
    random code in a dataset from repeating the same numbers in every forked worker.
    """
    seed = torch.initial_seed() % 2**32  # DataLoader sets base_seed + worker_id
    random.seed(seed)
    np.random.seed(seed)
    import sys

    if "imgaug" in sys.modules:  # only if already imported: never trigger the import here
        sys.modules["imgaug"].random.seed(seed)
