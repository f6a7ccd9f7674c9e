"""What the detectors that train a network share (``Reconstruction``, ``SyntheticOOD``): the
training configuration from their parameters, one training call (the one loop,
:func:`anomalib_lite.training.loop.fit_model`, with their augmentation and a time budget that covers
the scoring after training), and ``fit`` as one template with two hooks around training."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from .base import Detector
from ..data.batches import training_data
from ..training.loop import TrainConfig, augment_pipeline, fit_model

__all__ = ["TrainedDetector"]


class TrainedDetector(Detector):
    """A detector with a network ``model_`` trained by ``_loss(model, step)`` on normal images.

    Subclasses implement ``_loss`` and may implement ``_before_training(batches, sharded)`` (e.g.
    build the network from the data's statistics) and ``_after_training(batches, sharded)`` (e.g.
    fit Gaussians of the trained features); ``batches`` is an iterable of image tensors (this
    process's share under torchrun when ``sharded``)."""

    #: what the training progress bar says
    _train_desc: ClassVar[str] = "train"

    def _check_more(self) -> None:
        self._train_config(self.epochs)

    def _train_config(self, epochs: int, val: bool = True) -> TrainConfig:
        return TrainConfig.for_epochs(self.get_params(deep=False), epochs, val)

    def _after_load(self) -> None:
        self._pipeline = augment_pipeline(self.augment)

    def _loss(self, model, step) -> torch.Tensor:
        raise NotImplementedError

    def _train(self, x, epochs: int, val: bool) -> None:
        cfg = self._train_config(epochs, val)
        if val and self.max_time is not None:  # fit: in-sample scores and calibration (a tenth more)
            # follow training; charged at the held-out pass's rate, they stay inside the budget
            cfg = dataclasses.replace(cfg, after_items=len(x) + len(x) // 9)
        self.history_ = fit_model(self.model_, self._loss, x, None, cfg, self.device_, augment=self._pipeline,
                                  desc=self._train_desc)

    def _before_training(self, batches, sharded: bool) -> None:
        pass

    def _after_training(self, batches, sharded: bool) -> None:
        pass

    def fit(self, X, y=None):
        """Train on normal images for ``epochs`` (early stopping on a held-out 10 %)."""
        self._start(X)
        train = training_data(X, batch_size=self.batch_size)
        self._check_input(train.head())
        self.input_shape_ = train.sample_shape
        shard = self._shard()  # under torchrun: the statistics passes read this process's share

        def batches():
            return (b.x for b in train.batches(self.batch_size, self.num_workers, shard))

        self._before_training(batches(), shard is not None)
        self._train(train, self.epochs, val=True)
        self._after_training(batches(), shard is not None)
        self.n_seen_ = len(train)
        self._after_fit(X)
        return self
