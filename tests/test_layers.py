"""The package's layers (issue 22): each module imports only from its own layer or the layers
below, counting imports inside functions; the package root keeps at most 12 modules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "anomalib_lite"
#: bottom up; the root's modules are the foundation every layer may use
LAYERS = [
    {"errors", "validate", "registry", "numeric", "state", "progress", "threads", "io", "distributed", "compat"},
    {"data"}, {"components"}, {"scoring"}, {"training"}, {"bundles"}, {"detectors"},
    {"evaluation", "runtime"}, {"app"},
]


def layer_of(module: str) -> int:
    """The layer of a dotted module name inside the package ('anomalib_lite.scoring.metrics')."""
    part = module.split(".")[1]
    # a name of the package's facade (anomalib_lite/__init__.py: the public API) is the top
    return next((i for i, names in enumerate(LAYERS) if part in names), len(LAYERS))


def imports(path: Path, here: list[str]) -> list[tuple[str, int]]:
    """(absolute module, line) of every import of the package's modules in a file of the package
    ``here`` (e.g. ['anomalib_lite', 'data'])."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module == "anomalib_lite":  # from .. import distributed: the names are modules
                out += [(f"anomalib_lite.{a.name}", node.lineno) for a in node.names if a.name != "__version__"]
            elif module.startswith("anomalib_lite."):
                out.append((module, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("anomalib_lite.")]
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_from_its_layer_or_below(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    own = layer_of(".".join(rel.parts))
    upward = [f"{m} (line {line})" for m, line in imports(path, list(rel.parts[:-1])) if layer_of(m) > own]
    assert not upward, f"{rel}: imports from a layer above: {', '.join(upward)}"


def test_the_root_keeps_at_most_12_modules():
    assert len(list(PACKAGE.glob("*.py"))) <= 12


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ..app import workflows\n    from .. import LatentDistance\n")
    found = imports(bad, ["anomalib_lite", "data"])
    assert found == [("anomalib_lite.app", 2), ("anomalib_lite.LatentDistance", 3)]
    assert all(layer_of(m) > layer_of("anomalib_lite.data.sources") for m, _ in found)


def test_the_flat_layout_still_imports_as_the_same_modules():
    import importlib

    import anomalib_lite as al
    from anomalib_lite.compat import MOVED

    for old, new in MOVED.items():
        module = importlib.import_module(f"anomalib_lite.{new}")
        if old == new.split(".")[0]:  # now a layer's package: the old module's names read from it
            assert all(getattr(importlib.import_module(f"anomalib_lite.{old}"), n) is getattr(module, n)
                       for n in module.__all__)
        else:
            assert importlib.import_module(f"anomalib_lite.{old}") is module
    from anomalib_lite import sample_data, workflows  # noqa: F401  (names of the flat layout)
    from anomalib_lite.thresholds import fpr_threshold

    assert workflows is importlib.import_module("anomalib_lite.app.workflows") and al.metrics.roc_auc
    assert fpr_threshold is al.fpr_threshold and sample_data.__name__ == "anomalib_lite.data.sample_data"


def test_a_bundle_saved_before_the_layers_loads_and_scores_the_same():
    """tests/data/flat_layout.anomaly was written by the flat layout (commit b0996f9): the move
    changed no byte a bundle holds."""
    import numpy as np

    import anomalib_lite as al

    data = Path(__file__).resolve().parent / "data"
    expected = np.load(data / "flat_layout_expected.npz")
    det = al.load(data / "flat_layout.anomaly")
    np.testing.assert_allclose(det.decision_function(expected["test"]), expected["scores"], rtol=1e-5)
    assert al.read_header(data / "flat_layout.anomaly")["format"] == "anomalib_lite.bundle"
