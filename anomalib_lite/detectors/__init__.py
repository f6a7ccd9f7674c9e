"""The detectors, one file each."""
from .continuation import Continuation
from .latent import LatentDistance
from .reconstruction import Reconstruction
from .supervised_rnn import SupervisedRNN
from .synthetic import SyntheticOOD

__all__ = ["Continuation", "LatentDistance", "Reconstruction", "SupervisedRNN", "SyntheticOOD"]
