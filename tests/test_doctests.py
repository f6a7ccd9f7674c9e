"""The Examples in the public classes' docstrings run, and say what they show (issue 12)."""
import doctest
import importlib

import pytest

MODULES = [
    "anomalib_lite.detectors.latent",
    "anomalib_lite.detectors.reconstruction",
    "anomalib_lite.detectors.synthetic",
    "anomalib_lite.detectors.continuation",
    "anomalib_lite.detectors.supervised_rnn",
    "anomalib_lite.pretrain",
    "anomalib_lite.state",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if name != "anomalib_lite.state":
        assert result.attempted > 0, f"{name}: no example ran"
