"""anomalib_lite: find what does not belong in images and time series.

Detectors are scikit-learn estimators sharing one contract (fit, partial_fit, decision_function,
score_samples, score_map, calibrate, predict, save) and :func:`load` restores any of them from a
one-file bundle without executing code. The ``backbones`` and ``augment`` packages it builds on
are reachable as ``anomalib_lite.backbones`` and ``anomalib_lite.augment``.

Names are imported on first use (PEP 562), so ``import anomalib_lite`` costs nothing and a tool
that needs only a bundle's header or the command line's help never imports torch.
"""
__version__ = "0.1.0"

import importlib
import sys
import types

from . import compat

#: public name -> the module defining it (relative to this package, or a top-level package)
_NAMES = {
    "DETECTORS": ".detectors.base", "Detector": ".detectors.base", "Capabilities": ".detectors.base",
    "register": ".registry", "load": ".bundles.bundle", "read_header": ".bundles.header",
    "Batch": ".data.batches", "iter_batches": ".data.batches", "iter_series": ".data.batches",
    "Continuation": ".detectors", "LatentDistance": ".detectors", "Reconstruction": ".detectors",
    "SupervisedRNN": ".detectors", "SyntheticOOD": ".detectors", "StreamScorer": ".runtime.online",
    "USER_ERRORS": ".errors", "AnomalyError": ".errors", "DistributedError": ".errors",
    "evaluate": ".evaluation.assessment", "report": ".evaluation.report", "load_data": ".data.sources",
    "fpr_threshold": ".scoring.thresholds", "p_values": ".scoring.thresholds",
    "augment": "augment", "backbones": "backbones",
}
_RENAMED = {"load_data": "load"}

__all__ = sorted([*_NAMES, "metrics", "workflows"])


def __getattr__(name: str):
    where = _NAMES.get(name)
    if where is None:
        try:  # a submodule: anomalib_lite.metrics (moved: anomalib_lite.scoring.metrics), ...
            return importlib.import_module(f"{__name__}.{compat.MOVED.get(name, name)}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    if where.startswith("."):
        if name in ("DETECTORS", "load", "Detector", "Capabilities"):
            importlib.import_module(".detectors", __name__)  # registers the five detectors
        module = importlib.import_module(where, __name__)
        value = module if name in ("augment", "backbones") else getattr(module, _RENAMED.get(name, name))
    else:
        value = importlib.import_module(where)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """Keeps the public functions ``report`` (and any other name of ``_NAMES``) from being replaced
    by the submodule of the same name when that submodule is imported."""

    def __setattr__(self, name, value):
        if name in _NAMES and isinstance(value, types.ModuleType) and name not in ("augment", "backbones"):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


compat.install()

