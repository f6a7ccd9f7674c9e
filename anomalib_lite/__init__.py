"""anomalib_lite: find what does not belong in images and time series.

Detectors are scikit-learn estimators sharing one contract (fit, partial_fit, decision_function,
score_samples, score_map, calibrate, predict, save) and :func:`load` restores any of them from a
one-file bundle without executing code. The ``backbones`` and ``augment`` packages it builds on
are reachable as ``anomalib_lite.backbones`` and ``anomalib_lite.augment``.
"""
__version__ = "0.1.0"

import augment
import backbones

from . import metrics, workflows
from .base import DETECTORS, Detector
from .bundle import load, read_header
from .data import Batch, iter_batches, iter_series
from .detectors import Continuation, LatentDistance, Reconstruction, SupervisedRNN, SyntheticOOD
from .errors import USER_ERRORS, AnomalyError, DistributedError
from .evaluation import evaluate
from .report import report
from .sources import load as load_data
from .thresholds import fpr_threshold, p_values

__all__ = [
    "DETECTORS",
    "USER_ERRORS",
    "AnomalyError",
    "Batch",
    "Continuation",
    "Detector",
    "DistributedError",
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
    "augment",
    "backbones",
    "metrics",
    "p_values",
    "read_header",
    "report",
    "workflows",
]
