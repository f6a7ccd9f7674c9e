"""The flat layout's module paths (before the layer sub-packages), kept working: ``al.metrics``,
``from anomalib_lite import workflows``, ``import anomalib_lite.thresholds`` and
``from anomalib_lite.data import iter_batches`` give the modules and names where they live now.
Imports nothing of the package (the root's ``__init__`` installs it)."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["MOVED", "forward", "install"]

PACKAGE = __name__.rpartition(".")[0]
#: where the modules of the flat layout (before the layer sub-packages) live now: ``al.metrics``,
#: ``from anomalib_lite import workflows`` and ``import anomalib_lite.thresholds`` keep working
#: (``data``, ``training`` and ``evaluation`` are now layers: their packages read the old names)
MOVED = {
    "data": "data.batches", "datasource": "data.datasource", "sources": "data.sources",
    "series_sources": "data.series_sources", "tiling": "data.tiling", "sample_data": "data.sample_data",
    "features": "components.features", "memory": "components.memory", "streaming": "components.streaming",
    "nets": "components.nets", "series_nets": "components.series_nets", "onnx_graphs": "components.onnx_graphs",
    "metrics": "scoring.metrics", "evidence": "scoring.evidence", "thresholds": "scoring.thresholds",
    "training": "training.loop", "pretrain": "training.pretrain",
    "bundle": "bundles.bundle", "header": "bundles.header", "signing": "bundles.signing",
    "base": "detectors.base", "series": "detectors.series",
    "evaluation": "evaluation.assessment", "report": "evaluation.report", "visual": "evaluation.visual",
    "nab": "evaluation.nab", "export": "runtime.export", "online": "runtime.online",
    "series_io": "runtime.series_io", "workflows": "app.workflows", "options": "app.options",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import anomalib_lite.thresholds`` gives the module where it lives now, the same object."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, tail = fullname.partition(".")
        if head != PACKAGE or tail not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(f"{PACKAGE}.{MOVED[spec.name.partition('.')[2]]}")

    def exec_module(self, module):
        pass


def install() -> None:
    """Add the finder of the flat layout's module paths (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())


def forward(package: str, module: str):
    """A PEP 562 ``__getattr__`` for a layer package named as a module of the flat layout
    (``data``, ``training``, ``evaluation``): its names read from ``module``, loaded on first use."""
    def __getattr__(name: str):
        try:
            return getattr(importlib.import_module(module, package), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
