"""The detectors, one file each."""
from .latent import LatentDistance

__all__ = ["LatentDistance"]
