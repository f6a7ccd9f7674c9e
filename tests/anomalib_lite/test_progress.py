"""Progress and time budgets: every stage that can take a while has a bar (shown on a terminal in
verbose mode), training has one bar over the whole run, and a time budget holds within a step
even when one epoch is longer than the budget."""
import io
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import anomalib_lite as al
from anomalib_lite import progress
from anomalib_lite.training.loop import TrainConfig, fit_model


def _record(monkeypatch) -> list:
    """Every bar made, as [desc, total, unit, verbose, final position]."""
    made = []

    def spy(total, desc, verbose, unit="sample"):  # drawn into a buffer: tests have no terminal
        b = tqdm(total=total, desc=desc, unit=unit, file=io.StringIO(), disable=False)
        made.append(b)
        b.log = [desc, total, unit, verbose]
        return b

    monkeypatch.setattr(progress, "bar", spy)
    return made


def test_latent_fit_shows_features_coreset_and_calibration(monkeypatch):
    made = _record(monkeypatch)
    x = np.random.default_rng(0).random((60, 1, 16, 16), dtype=np.float32)
    det = al.LatentDistance(coreset_ratio=0.05, verbose=True, device="cpu").fit(x[:50]).calibrate(x[50:], fpr=0.1)
    stages = [b.log[0] for b in made]
    assert stages[0] == "features" and stages[1].startswith("coreset") and stages[-1] == "calibrate"
    features, coreset, calibrate = made[0], made[1], made[-1]
    assert features.log[1] == features.n == 50 and calibrate.n == calibrate.log[1] == 10
    assert coreset.n == coreset.log[1] > 1 and coreset.log[2] == "pass"
    assert all(b.log[3] for b in made)  # verbose: shown on a terminal (--quiet turns them off)
    assert det.threshold_ is not None


def test_training_has_one_bar_for_every_step_of_every_epoch(monkeypatch):
    made = _record(monkeypatch)
    x = torch.randn(200, 8)
    y = x.sum(1)
    model = nn.Linear(8, 1)
    fit_model(model, lambda m, s: ((m(s.x).squeeze(1) - s.y) ** 2).mean(), x, y,
              TrainConfig(epochs=4, batch_size=30, patience=None, verbose=True), desc="net")
    bar = made[-1]
    steps = int(np.ceil(180 / 30))  # 10 % held out
    assert bar.log[:3] == ["net", 4 * steps, "step"] and bar.n == 4 * steps
    assert bar.desc.startswith("net epoch 4/4")


def test_a_time_budget_shorter_than_an_epoch_holds_within_ten_percent():
    x = torch.randn(2000, 8)
    y = x.sum(1)

    def slow(m, s):  # 20 ms a step, 45 steps an epoch: an epoch takes 0.9 s
        time.sleep(0.02)
        return ((m(s.x).squeeze(1) - s.y) ** 2).mean()

    t = time.perf_counter()
    res = fit_model(nn.Linear(8, 1), slow, x, y, TrainConfig(epochs=50, batch_size=40, patience=None, max_time=1.5))
    took = time.perf_counter() - t
    assert res.stopped == "time" and len(res.train_loss) == 2  # the second epoch was cut short
    assert took <= 1.5 * 1.1, took
