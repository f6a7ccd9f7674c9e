"""Evaluation: one scoring pass and its figures, heatmaps, the HTML report, NAB's protocol. Imports
the detectors' contract and the layers below.
"""


def __getattr__(name: str):
    """The flat layout's ``anomalib_lite.evaluation`` module lives on as :mod:`.assessment`: its names still
    read from here (``from anomalib_lite.evaluation import ...``), loaded on first use."""
    import importlib

    try:
        return getattr(importlib.import_module(".assessment", __name__), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
