"""Training: the one training loop and self-supervised pretraining. Imports the layers below (root,
``data``, ``components``, ``scoring``).
"""


def __getattr__(name: str):
    """The flat layout's ``anomalib_lite.training`` module lives on as :mod:`.loop`: its names still
    read from here (``from anomalib_lite.training import ...``), loaded on first use."""
    import importlib

    try:
        return getattr(importlib.import_module(".loop", __name__), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
