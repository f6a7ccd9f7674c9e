"""``Pipeline``: a validated config bound to a backend."""

from __future__ import annotations

import os

from . import config as _config
from .errors import AugmentError
from .schema import check_indices, check_int

BACKENDS = ("torchvision", "imgaug")


class Pipeline:
    """Random but reproducible augmentation, read from a config (see ``augment.config``).

    ``pipeline(x, indices, epoch)`` augments a batch; sample ``i``'s draws depend only on
    (seed, epoch, ``indices[i]``, step), so results do not depend on batching or workers.
    """

    def __init__(self, config: _config.Config | dict | list | str | os.PathLike, backend: str = "torchvision"):
        if backend not in BACKENDS:
            raise AugmentError(
                f"backend: unknown value {backend!r}; valid values are: {', '.join(BACKENDS)}"
            )
        # a dict, a list of steps or a file is read (and checked) as from_config reads it
        self.config = config if isinstance(config, _config.Config) else _config.load(config)
        self.backend = backend
        self.epoch = 0
        self._imgaug = None

    @classmethod
    def from_config(
        cls, cfg: dict | list | str | os.PathLike, backend: str = "torchvision"
    ) -> Pipeline:
        """Build from a dict, a list of steps, or a YAML / JSON file."""
        return cls(_config.load(cfg), backend)

    def to_config(self) -> dict:
        """The canonical config (defaults filled in); ``from_config`` of it gives the same pipeline."""
        return self.config.to_dict()

    @property
    def seed(self) -> int:
        return self.config.seed

    def set_epoch(self, epoch: int) -> None:
        """Draws depend on the epoch: call once per epoch for fresh augmentations."""
        self.epoch = check_int(epoch, "epoch")

    def __call__(self, x, indices=None, epoch: int | None = None, masks=None):
        """Augment a batch: a tensor (N, C, H, W) for torchvision, an array (N, H, W[, C]) for imgaug.

        ``masks`` (optional; torchvision (N, H, W) or (N, K, H, W), imgaug (N, H, W) or (N, H, W, K);
        bool, integer labels or float): moved with the images by every geometric step, nearest
        neighbour, 0 where pixels come from outside in ``constant`` mode; intensity steps leave
        them as they are. With masks the call returns ``(images, masks)``, the images the same
        as without.
        """
        epoch = self.epoch if epoch is None else check_int(epoch, "epoch")
        idx = check_indices(indices, x.shape[0] if getattr(x, "ndim", 0) else 0, "indices")
        if self.backend == "torchvision":
            from ._torch_backend import run

            return run(self.config, x, idx, epoch, masks)
        if self._imgaug is None:
            from ._imgaug_backend import ImgaugPipeline

            self._imgaug = ImgaugPipeline(self.config)
        return self._imgaug(x, idx, epoch, masks)

    def synthesize(self, x, indices=None, epoch: int | None = None, pool=None):
        """Run the config's ``ood:`` section: ``(images, masks, params)``, see ``augment.synth``."""
        if self.config.ood is None:
            raise AugmentError(
                "config: key 'ood': this pipeline has no ood section to synthesise from"
            )
        from .synth import run_ood

        epoch = self.epoch if epoch is None else check_int(epoch, "epoch")
        return run_ood(self.config.ood, x, seed=self.seed, indices=indices, epoch=epoch, pool=pool)

    def __getstate__(self):  # imgaug's augmenters are rebuilt lazily in each process
        return {**self.__dict__, "_imgaug": None}

    def __repr__(self) -> str:
        ops = len(self.config.steps)
        ood = ", ood" if self.config.ood else ""
        return f"Pipeline({ops} steps, seed={self.seed}, backend={self.backend!r}{ood})"
