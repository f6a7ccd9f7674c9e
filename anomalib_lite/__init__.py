"""anomalib_lite: find what does not belong in images and time series.

Detectors share one contract (fit, partial_fit, score, score_map, calibrate, predict, save) and
:func:`load` restores any of them from a one-file bundle without executing code.
"""
__version__ = "0.1.0"

from . import metrics
from .base import DETECTORS, Detector
from .bundle import load, read_header
from .data import Batch, iter_batches, iter_series
from .detectors import Continuation, LatentDistance, Reconstruction, SupervisedRNN, SyntheticOOD
from .errors import AnomalyError
from .evaluation import evaluate
from .report import report
from .sources import load as load_data
from .thresholds import fpr_threshold, p_values

__all__ = [
    "DETECTORS",
    "AnomalyError",
    "Batch",
    "Continuation",
    "Detector",
    "LatentDistance",
    "Reconstruction",
    "SupervisedRNN",
    "SyntheticOOD",
    "evaluate",
    "fpr_threshold",
    "iter_batches",
    "iter_series",
    "load",
    "load_data",
    "metrics",
    "p_values",
    "read_header",
    "report",
]
