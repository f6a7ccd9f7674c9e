"""The Examples in the public classes' docstrings run, and say what they show (issue 12)."""
import doctest
import importlib

import pytest

import anomalib_lite as al

#: every registered detector's module, and the modules with examples beside them
MODULES = sorted({cls.__module__ for cls in al.DETECTORS.values()}) + ["anomalib_lite.training.pretrain", "anomalib_lite.state"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if name != "anomalib_lite.state":
        assert result.attempted > 0, f"{name}: no example ran"
