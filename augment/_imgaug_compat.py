"""Make imgaug 0.4.0 (last release 2020) import and run on current numpy.

imgaug reads names that numpy has since removed: ``np.sctypes`` (gone in numpy 2.0),
``np.complex`` and ``np.bool`` (gone in 1.24; ``np.bool`` came back in 2.0). This module puts
back the missing ones, with their old meaning, before the first ``import imgaug``. It only adds
names numpy lacks and never replaces one numpy has. Only the imgaug backend imports it, and only
when it is used, so the torchvision backend never depends on imgaug importing.
"""

from __future__ import annotations

import types

import numpy as np

_SCTYPES = {
    "int": [np.int8, np.int16, np.int32, np.int64],
    "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
    "float": [np.float16, np.float32, np.float64, np.longdouble],
    "complex": [np.complex64, np.complex128, np.clongdouble],
    "others": [bool, object, bytes, str, np.void],
}

# Removed aliases that imgaug 0.4.0 uses, with the builtins they used to stand for.
_ALIASES = {"bool": bool, "complex": complex, "sctypes": _SCTYPES}


def _restore_numpy_names() -> None:
    for name, value in _ALIASES.items():
        try:
            getattr(np, name)
        except AttributeError:  # numpy 2 raises from its module __getattr__ for removed names
            setattr(np, name, value)


def import_imgaug() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """Return ``(imgaug, imgaug.augmenters, imgaug.parameters)``, patching numpy first."""
    _restore_numpy_names()
    import imgaug
    import imgaug.augmenters as iaa
    import imgaug.parameters as iap

    return imgaug, iaa, iap
