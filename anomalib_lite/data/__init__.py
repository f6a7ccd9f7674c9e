"""Data: every input read into one shape (arrays, folders, MVTec sets, series files, NAB), tiles,
sample data. Imports only the package root's modules.
"""


def __getattr__(name: str):
    """The flat layout's ``anomalib_lite.data`` module lives on as :mod:`.batches`: its names still
    read from here (``from anomalib_lite.data import ...``), loaded on first use."""
    import importlib

    try:
        return getattr(importlib.import_module(".batches", __name__), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
