import pytest
import torch
from torch import nn

from anomalib_lite import AnomalyError
from anomalib_lite.training.loop import TrainConfig, fit_model


def _data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    return x, (x @ w).squeeze(1)


def _mse(model, step):
    return ((model(step.x).squeeze(1) - step.y) ** 2).mean()


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))


def test_loss_falls_and_best_weights_are_kept():
    x, y = _data()
    model = _model()
    res = fit_model(model, _mse, x, y, TrainConfig(epochs=15, lr=1e-2, batch_size=32))
    assert res.train_loss[-1] < 0.2 * res.train_loss[0]
    assert res.val_loss[res.best_epoch] == min(res.val_loss)
    assert not model.training  # left in eval mode


def test_same_seed_same_weights_different_seed_different():
    x, y = _data()
    runs = []
    for seed in (0, 0, 1):
        m = _model()
        fit_model(m, _mse, x, y, TrainConfig(epochs=3, seed=seed))
        runs.append(torch.cat([p.flatten() for p in m.parameters()]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_early_stopping_stops_when_held_out_loss_stalls():
    x, y = _data()
    y = torch.randn_like(y)  # pure noise: the held-out loss cannot improve for long
    res = fit_model(_model(), _mse, x, y, TrainConfig(epochs=200, lr=3e-2, patience=3, batch_size=32))
    assert res.stopped == "early_stopping" and len(res.train_loss) < 200
    # the result says which weights the model kept, judged on how many held-out samples
    assert res.held_out == 40 and res.kept_epoch == res.best_epoch == len(res.train_loss) - 4


def test_the_result_says_which_epoch_was_kept_and_describe_says_it_in_a_line():
    """Without held-out samples (under 20 samples, or no patience) the last epoch's weights stay,
    whatever epoch had the lowest training loss, and no held-out loss is claimed."""
    from anomalib_lite.training.loop import describe, history

    x, y = _data(15)
    res = fit_model(_model(), _mse, x, y, TrainConfig(epochs=6, lr=1e-2, patience=2))
    assert res.held_out == 0 and res.kept_epoch == 5 and res.stopped == "epochs"
    assert describe(res, 6, 2) == f"6 epochs, training loss {res.train_loss[0]:.3f} -> {res.train_loss[-1]:.3f}"
    x, y = _data()
    res = fit_model(_model(), _mse, x, torch.randn_like(y), TrainConfig(epochs=200, lr=3e-2, patience=3))
    line = describe(res, 200, 3)
    assert line.startswith(f"{len(res.train_loss)} of 200 epochs (stopped early: the held-out loss had not "
                           "improved for 3 epochs (--patience)), training loss ")
    assert line.endswith(f"; kept epoch {res.best_epoch + 1}'s weights, held-out loss "
                         f"{res.val_loss[res.best_epoch]:.3f} on 40 samples")
    old = {k: v for k, v in res.to_dict().items() if k not in ("held_out", "kept_epoch")}  # an older bundle's
    assert history(old, "h").held_out == 0 and history(res.to_dict(), "h") == res


def test_a_held_out_loss_still_falling_at_the_last_epoch_says_more_epochs_may_help():
    """Every epoch asked ran and the last was the best held-out one, still falling: the result
    line says by how much and that more epochs may help; not when it stopped early, was flat, or
    had no held-out samples."""
    from anomalib_lite.training.loop import TrainResult, describe, still_falling

    def run(val, stopped="epochs", held_out=40):
        val = list(val)
        return TrainResult(train_loss=[1.0] * len(val), val_loss=val, best_epoch=val.index(min(val)),
                           stopped=stopped, held_out=held_out, kept_epoch=len(val) - 1 if stopped == "epochs"
                           else val.index(min(val)))
    falling = run([1.0, 0.8, 0.6, 0.5])
    assert still_falling(falling) == pytest.approx((0.375, 2))  # (0.8 -> 0.5)
    assert describe(falling, 4, 5).endswith("held-out loss 0.500 on 40 samples; the held-out loss still fell 38 % over the last 2 "
                                            "epochs: more epochs may help (--epochs)")
    x, y = _data()
    res = fit_model(_model(), _mse, x, y, TrainConfig(epochs=3, lr=1e-3, patience=5))  # (far from fitted)
    assert res.kept_epoch == 2 and "more epochs may help (--epochs)" in describe(res, 3, 5), describe(res, 3, 5)
    for flat in (run([1.0, 0.8, 0.799, 0.7985]), run([1.0, 0.8, 0.6, 0.5], stopped="early_stopping"),
                 run([1.0, 0.8, 0.6, 0.5], held_out=0), run([0.5, 0.9, 0.6]), run([0.5])):
        assert still_falling(flat) is None and "more epochs" not in describe(flat, 4, 5)


def test_time_budget_is_respected():
    x, y = _data(4000)
    res = fit_model(_model(), _mse, x, y, TrainConfig(epochs=10_000, max_time=0.5, patience=None))
    assert res.stopped == "time" and res.seconds < 5


def test_augmentation_is_applied_to_training_batches_only():
    seen = {"train": [], "val": []}
    x = torch.zeros(100, 1, 8, 8)

    def loss(model, step):
        seen["train" if step.train else "val"].append(float(step.x.mean()))
        return model(step.x).mean() * 0 + 1.0

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    cfg = {"seed": 0, "steps": [{"op": "brightness", "delta": [0.5, 0.5]}]}
    fit_model(model, loss, x, None, TrainConfig(epochs=2, patience=None), augment=cfg)
    assert all(abs(v - 0.5) < 1e-6 for v in seen["train"])
    assert all(v == 0.0 for v in seen["val"])


@pytest.mark.parametrize(
    "cfg, message",
    [
        (TrainConfig(epochs=0), "epochs=0"),
        (TrainConfig(optimizer="lion"), "optimizer='lion'"),
        (TrainConfig(val_fraction=1.5), "val_fraction"),
    ],
)
def test_bad_config(cfg, message):
    x, y = _data(50)
    with pytest.raises(AnomalyError, match=message):
        fit_model(_model(), _mse, x, y, cfg)


def test_bad_augment_config_is_one_error():
    x, y = _data(50)
    with pytest.raises(AnomalyError, match="augment: .*twirl"):
        fit_model(_model(), _mse, x, y, TrainConfig(epochs=1), augment={"steps": [{"op": "twirl"}]})


def test_diverging_loss_is_reported():
    x, y = _data(100)
    with pytest.raises(AnomalyError, match="loss became"):
        fit_model(_model(), lambda m, s: _mse(m, s) * float("nan"), x, y, TrainConfig(epochs=1))


def test_a_dataset_trains_like_the_tensor_it_holds():
    """Random-access data is shuffled and held out by index exactly as a tensor is."""
    from torch.utils.data import TensorDataset

    x, _ = _data(200)

    def energy(model, step):
        return model(step.x).pow(2).mean()

    weights = []
    for data, workers in ((x, 0), (TensorDataset(x), 0), (TensorDataset(x), 2)):
        m = _model()
        fit_model(m, energy, data, None, TrainConfig(epochs=2, batch_size=32, num_workers=workers))
        weights.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.allclose(weights[0], weights[1], rtol=1e-6, atol=1e-7)
    assert torch.allclose(weights[0], weights[2], rtol=1e-6, atol=1e-7)
    with pytest.raises(AnomalyError, match="targets with the data"):
        fit_model(_model(), energy, TensorDataset(x), torch.zeros(200), TrainConfig(epochs=1))
    with pytest.raises(AnomalyError, match="num_workers"):
        fit_model(_model(), energy, x, None, TrainConfig(epochs=1, num_workers=-1))
