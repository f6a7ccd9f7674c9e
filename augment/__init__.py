"""Augmentation pipelines and synthesis of subtle anomalies, in one config vocabulary.

- ``Pipeline.from_config(cfg, backend="torchvision" | "imgaug")``: random but reproducible
  variation of normal data; ``pipeline(x, indices, epoch)`` on a batch, ``masks=`` moved along
  with the geometry. The torchvision backend runs ``torchvision.transforms.v2`` kernels per
  sample (``_torch_ops`` lists the few ops written here, and why).
- ``augment.synth``: cutpaste, scar, perlin, local_elastic, stroke_blob, patch_blend; each
  returns images, masks of exactly the changed pixels, and the drawn parameters.
- ``AugmentedDataset`` / ``worker_init_fn``: the same results whatever the DataLoader workers.
- ``preview_grid`` / ``save_png``: a picture of what a config does.

This package imports neither ``anomalib_lite`` nor ``backbones``.
"""

from . import synth
from .data import AugmentedDataset, worker_init_fn
from .errors import AugmentError
from .pipeline import BACKENDS, Pipeline
from .preview import preview_grid, save_png
from .schema import OPS, SYNTH_OPS

__all__ = [
    "BACKENDS",
    "OPS",
    "SYNTH_OPS",
    "AugmentError",
    "AugmentedDataset",
    "Pipeline",
    "preview_grid",
    "save_png",
    "synth",
    "worker_init_fn",
]
