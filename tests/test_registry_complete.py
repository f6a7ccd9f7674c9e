"""Every list that names detectors names every registered detector (issue 22): a detector left
out of one would silently skip that suite, command or fuzzing seed."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import anomalib_lite as al
from anomalib_lite.app import options

ROOT = Path(__file__).resolve().parent.parent


def _module(path: Path):
    """A test or benchmark module by path (they are not packages), imported once."""
    name = f"_registry_check_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        sys.modules[name] = module
    return sys.modules[name]


REGISTERED = set(al.DETECTORS)


def test_the_cli_and_its_options_name_every_detector():
    import cli

    assert set(cli.FIT.values()) == REGISTERED and set(cli.EXAMPLES) == set(cli.FIT)
    assert all(cli.EXAMPLES[c] == list(al.DETECTORS[n].cli_examples) and cli.EXAMPLES[c] for c, n in cli.FIT.items())
    assert {c: n for c, n in cli.FIT.items()} == {cls.command: n for n, cls in al.DETECTORS.items()}
    targets = {where.split(":")[1] for where in options.targets().values()}
    assert REGISTERED <= targets


def test_the_contract_and_scikit_learn_suites_cover_every_detector():
    assert set(_module(ROOT / "tests" / "test_contract.py").CASES) == REGISTERED
    assert {type(e).__name__ for e in _module(ROOT / "tests" / "test_sklearn_checks.py").ESTIMATORS} == REGISTERED


def test_the_doctests_and_the_fuzzer_cover_every_detector():
    modules = set(_module(ROOT / "tests" / "test_doctests.py").MODULES)
    assert {cls.__module__ for cls in al.DETECTORS.values()} <= modules
    seeds = {name.split("-")[0] for name in _module(ROOT / "benchmarks" / "fuzz_bundles.py").NAMES}
    assert seeds == REGISTERED
