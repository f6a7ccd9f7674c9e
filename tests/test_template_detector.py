"""A new detector is one file: this one registers itself and declares what it can do, and goes
through fit, save, load, the command line and the contract without any other file touched."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import anomalib_lite as al
from anomalib_lite import validate as v
from anomalib_lite.detectors.base import RUN_CHECKS, Capabilities, Detector, register
from anomalib_lite.registry import DETECTORS


class MeanDistance(Detector):
    """Distance of an image to the mean normal image; maps = per-pixel distance.

    Parameters
    ----------
    power : float, default 2.0
        The norm taken over an image's pixels.
    contamination : float or None, default None
    batch_size : int, default 64
    device : str, default "auto"
    seed : int, default 0
    verbose : bool, default False
    """

    capabilities = Capabilities(has_maps=True)
    command = "mean-distance"
    cli_examples = ("--data data/brick/train -o mean.anomaly",)
    input_kind = "image"
    _param_checks = {**RUN_CHECKS, "power": v.number(0.5, 8)}
    _learned = ("mean_",)

    def __init__(self, power: float = 2.0, contamination: float | None = None, batch_size: int = 64,
                 device: str = "auto", seed: int = 0, verbose: bool = False):
        self.power, self.contamination, self.batch_size = power, contamination, batch_size
        self.device, self.seed, self.verbose = device, seed, verbose

    def _reset(self) -> None:
        self.device_, self.mean_, self._sum = self._resolve_device(), None, None

    def _update(self, batch, fitting: bool) -> None:
        x = batch.x.to(self.device_, torch.float64).sum(0)
        self._sum = x if self._sum is None else self._sum + x
        self.mean_ = (self._sum / (self.n_seen_ + len(batch))).float()

    def _learned_arrays(self) -> dict:
        return {"mean_": (tuple(self.input_shape_), torch.float32, "tensor")}

    def _score_map_batch(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.device_) - self.mean_).abs().pow(self.power).mean(1)

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self._score_map_batch(x).flatten(1).mean(1).pow(1 / self.power)


@pytest.fixture(autouse=True, scope="module")
def registered():
    """``@register`` on the class, undone afterwards: the other tests see the package's own five."""
    import cli

    register(MeanDistance)
    cli.add_detector(MeanDistance)
    yield
    del DETECTORS["MeanDistance"]
    for table in (cli.fit.commands, cli.FIT, cli.EXAMPLES, cli.specs.load()["commands"]):
        table.pop(MeanDistance.command)


def _images(n, seed, spot=False):
    rng = np.random.default_rng(seed)
    x = (0.5 + 0.05 * rng.standard_normal((n, 1, 16, 16))).astype(np.float32)
    if spot:
        x[:, :, 2:6, 2:6] = 1.0
    return x.clip(0, 1)


def test_the_template_fits_ranks_saves_and_loads(tmp_path):
    det = MeanDistance(device="cpu").fit(_images(40, 0)).calibrate(_images(20, 1), fpr=0.1)
    normal, spotted = det.decision_function(_images(10, 2)), det.decision_function(_images(10, 3, spot=True))
    assert spotted.min() > normal.max()
    maps = det.score_map(_images(2, 3, spot=True))
    assert maps.shape == (2, 16, 16) and maps[:, 2:6, 2:6].mean() > 10 * maps[:, 8:, 8:].mean()
    det.save(tmp_path / "m.anomaly")
    back = al.load(tmp_path / "m.anomaly")
    assert type(back) is MeanDistance and back.threshold_ == det.threshold_
    np.testing.assert_allclose(back.decision_function(_images(10, 3, spot=True)), spotted, rtol=1e-6)


def test_the_template_gets_its_fit_command(tmp_path):
    import cli

    np.save(tmp_path / "train.npy", _images(40, 0))
    out = tmp_path / "m.anomaly"
    res = CliRunner().invoke(cli.cli, ["fit", "mean-distance", "--data", str(tmp_path / "train.npy"), "--power", "1",
                                       "--fpr", "0.05", "--device", "cpu", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "fitted MeanDistance on 40 samples" in res.output and "cross-fitting on all 40 samples" in res.output
    assert al.load(out).power == 1.0
    help_ = CliRunner().invoke(cli.cli, ["fit", "mean-distance", "--help"]).output
    assert "The norm taken over an image's pixels." in help_ and "anomaly fit mean-distance --data" in help_


@pytest.mark.parametrize("name", ["fit", "partial_fit"])
def test_the_template_keeps_the_contract(name):
    det = MeanDistance(device="cpu")
    getattr(det, name)(_images(30, 0))
    assert det.n_seen_ == 30 and det.input_shape_ == (1, 16, 16)
    with pytest.raises(al.AnomalyError):
        det.decision_function(np.zeros((2, 3, 16, 16), np.float32))  # another shape: one clear error


def test_the_template_passes_the_contract_suite(tmp_path):
    """The contract suite every built-in detector passes (tests/test_contract.py), on the template."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import test_contract
    finally:
        sys.path.pop(0)
    test_contract.run_contract(MeanDistance, tmp_path)
