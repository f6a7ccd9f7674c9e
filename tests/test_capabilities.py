"""Code outside a detector asks its declared capabilities, never its class (issue 22, item 2)."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import anomalib_lite as al
from anomalib_lite.app import options
from anomalib_lite.detectors.base import Capabilities

ROOT = Path(__file__).resolve().parents[1]


def test_every_detector_declares_its_capabilities_and_the_cli_reads_the_same():
    stored = {where.split(":")[1]: options.load()["commands"][cmd] for cmd, where in options.targets().items()}
    assert set(al.DETECTORS) == {"Continuation", "LatentDistance", "Reconstruction", "SupervisedRNN", "SyntheticOOD"}
    for name, cls in al.DETECTORS.items():
        assert isinstance(cls.capabilities, Capabilities), name
        assert stored[name]["capabilities"] == dataclasses.asdict(cls.capabilities), name
    assert not al.SupervisedRNN.capabilities.calibrates and al.SupervisedRNN.capabilities.early_warning
    assert al.Continuation.capabilities.learns_online
    assert {n for n, c in al.DETECTORS.items() if c.capabilities.exports_onnx} == {"LatentDistance", "Reconstruction"}


def _class_checks(path: Path) -> list[str]:
    """Places in ``path`` that test a detector's class: isinstance with a detector class, or a
    comparison with a detector's name."""
    names = set(al.DETECTORS)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
            kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            if any(getattr(k, "id", getattr(k, "attr", None)) in names for k in kinds):
                found.append(f"{path.name}:{node.lineno}")
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Constant) and s.value in names for s in sides):
                found.append(f"{path.name}:{node.lineno}")
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
            if any(getattr(s, "attr", None) in names for s in [node.left, *node.comparators]):
                found.append(f"{path.name}:{node.lineno}")
    return found


#: the detectors' own files may know their classes; every other file of the package may not
DETECTOR_FILES = {ROOT / (cls.__module__.replace(".", "/") + ".py") for cls in al.DETECTORS.values()}
OUTSIDE = [p for p in sorted((ROOT / "anomalib_lite").rglob("*.py")) if p not in DETECTOR_FILES]


@pytest.mark.parametrize("path", [*OUTSIDE, ROOT / "cli.py"], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_code_outside_the_detectors_asks_for_a_detector_class(path):
    assert _class_checks(path) == []


def test_the_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(det, al):\n    if isinstance(det, Continuation): pass\n"
                   "    if type(det).__name__ == 'SupervisedRNN': pass\n    if cls is not al.SupervisedRNN: pass\n")
    assert _class_checks(bad) == ["bad.py:2", "bad.py:3", "bad.py:4"]


def test_learning_while_scoring_is_refused_by_capability(tmp_path):
    import numpy as np

    from anomalib_lite.runtime.series_io import score_series
    from anomalib_lite.data.sources import load

    t = np.arange(300)
    path = tmp_path / "s.csv"
    path.write_text("value\n" + "".join(f"{np.sin(i / 5):.4f}\n" for i in t))
    det = al.SupervisedRNN(window=8, horizon=2, hidden=4, epochs=1, device="cpu")
    with pytest.raises(al.AnomalyError, match="SupervisedRNN does not learn online; drop --learn"):
        score_series(det, load(str(path)), learn=True)
