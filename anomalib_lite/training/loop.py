"""The one training loop: every model in anomalib_lite that learns by gradient descent uses it.

``fit_model(model, loss_fn, data, y, config)`` runs epochs of shuffled minibatches with an optional
augmentation pipeline (keyed by sample index and epoch, so runs are reproducible), AdamW/Adam/SGD
with a cosine or constant schedule, gradient clipping, mixed precision on CUDA, early stopping on
a held-out share of the data (the best weights are restored), an optional time budget (after
every step: stop when the next step and the held-out pass would not fit, so a run ends before the
budget, by less than a step; under torchrun, after the epoch that crosses it), and one progress bar over every step of every epoch
(the epoch and the loss in its text, an estimate for the whole run). Seeded: the same seed gives
the same weights.

``data`` is read batch by batch, never whole: an in-memory tensor (with targets ``y``: the series
detectors' windows) is indexed directly; anything else goes through
:func:`anomalib_lite.data.batches.training_data`. Random-access data (arrays, data sources such as lazy
image folders, map-style Datasets) is shuffled by index and read through a DataLoader with
``num_workers`` processes (pinned memory on CUDA); its results do not depend on the number of
workers. A DataLoader (or a list of batches) is read as given every epoch, with its own batching,
order and workers; it has no held-out share, so it trains on every batch without early stopping.

Under torchrun (:mod:`anomalib_lite.distributed`) the model trains with DistributedDataParallel:
every process draws the same batches (same seed) and computes the loss of its rows of each batch
(``rank::world``), weighted by its share of the batch, so the averaged gradient is the gradient of
the whole batch: the same steps as one process, up to float summation order (and BatchNorm,
whose batch statistics are each process's rows; dropout draws differ too). The losses, the
held-out loss, early stopping and the time budget are decided from all processes' figures, so
every process stops at the same epoch with the same weights.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

import torch
from torch import nn

from .. import distributed, progress
from ..data.batches import TrainingData, training_data
from ..errors import AnomalyError

__all__ = ["TRAIN_CHECKS", "Step", "TrainConfig", "TrainResult", "augment_pipeline", "fit_model", "history"]


@dataclass
class Step:
    """One minibatch as a loss function sees it: samples (already augmented when training),
    targets, their indices in the training data, the epoch, and whether this is a training step
    (False on held-out batches). Index and epoch key any random draws the loss makes."""

    x: torch.Tensor
    y: torch.Tensor | None
    index: torch.Tensor
    epoch: int
    train: bool


#: loss_fn(model, step) -> scalar loss
LossFn = Callable[[nn.Module, Step], torch.Tensor]

_OPTIMIZERS = ("adamw", "adam", "sgd")
_SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit_model` (detectors expose them as their own parameters)."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    grad_clip: float | None = 5.0
    val_fraction: float = 0.1
    val_split: str = "random"  # "random", or "tail": the last samples (time order: series windows)
    patience: int | None = 5
    max_time: float | None = None  # seconds; stop before the step that would cross it
    after_items: int = 0  # samples the detector scores once training ends (kept out of max_time)
    amp: bool = True  # mixed precision, CUDA only
    num_workers: int = 2  # DataLoader processes decoding lazy data (in-memory data: none)
    seed: int = 0
    verbose: bool = False

    def check(self) -> TrainConfig:
        def bad(name, why):
            raise AnomalyError(f"{name}={getattr(self, name)!r}: {why}")

        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "must be a positive integer")
        if not self.lr > 0:
            bad("lr", "must be > 0")
        if self.optimizer not in _OPTIMIZERS:
            bad("optimizer", f"unknown; use one of {', '.join(_OPTIMIZERS)}")
        if self.schedule not in _SCHEDULES:
            bad("schedule", f"unknown; use one of {', '.join(_SCHEDULES)}")
        if self.val_split not in ("random", "tail"):
            bad("val_split", "unknown; use 'random' or 'tail'")
        if not 0 <= self.val_fraction < 1:
            bad("val_fraction", "must be in [0, 1)")
        if self.patience is not None and self.patience < 1:
            bad("patience", "must be >= 1 or None")
        if not isinstance(self.num_workers, int) or isinstance(self.num_workers, bool) or self.num_workers < 0:
            bad("num_workers", "must be an integer >= 0")
        return self

    @classmethod
    def from_params(cls, params: dict) -> TrainConfig:
        """Pick the fields this class knows from a detector's parameters."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names}).check()

    @classmethod
    def for_epochs(cls, params: dict, epochs: int, val: bool = True) -> TrainConfig:
        """A detector's config for ``epochs``; ``val=False`` (minibatch learning) drops the
        held-out share and early stopping."""
        return cls.from_params({**params, "epochs": epochs, "val_fraction": 0.1 if val else 0.0,
                                "patience": params.get("patience") if val else None})


@dataclass
class TrainResult:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped: str = "epochs"  # "epochs", "early_stopping" or "time"
    seconds: float = 0.0
    held_out: int = 0  # samples held out for early stopping (0: none; val_loss is then the training loss)
    kept_epoch: int = -1  # the epoch (0-based) whose weights the model keeps: the best held-out one, else the last

    def to_dict(self) -> dict:
        return asdict(self)

    def kept_loss(self) -> float | None:
        """The held-out loss of the weights the model kept (None without held-out samples)."""
        return self.val_loss[self.kept_epoch] if self.held_out and 0 <= self.kept_epoch < len(self.val_loss) else None


def _checks() -> dict:
    from .. import validate as v

    return {
        "epochs": v.integer(1, 100_000),
        "lr": v.number(0, 10, lo_open=True),
        "weight_decay": v.number(0, 10),
        "patience": v.none_or(v.integer(1, 100_000)),
        "max_time": v.none_or(v.number(0, lo_open=True)),
        "num_workers": v.integer(0, 64),
    }


#: checks of the training parameters the trained detectors share
TRAIN_CHECKS = _checks()


def history(value, name):
    """A bundle's training history (a JSON object) as a :class:`TrainResult`; checks it."""
    if isinstance(value, TrainResult):
        return value
    from .. import validate as v

    losses = v.list_of(v.number(), 1_000_000)
    checked = v.record({"train_loss": losses, "val_loss": losses, "best_epoch": v.integer(-1, 1 << 40),
                        "stopped": v.one_of("epochs", "early_stopping", "time"),
                        "seconds": v.number(0), "held_out": v.integer(0, 1 << 40),
                        "kept_epoch": v.integer(-1, 1 << 40)},
                       optional=("held_out", "kept_epoch"))(value, name)  # (absent from older bundles)
    return TrainResult(**checked)


def check_augment(value, name):
    """An augment config: a dict, a YAML/JSON path or an ``augment.Pipeline``."""
    if value is None or isinstance(value, (dict, str)) or hasattr(value, "to_config"):
        return value
    raise AnomalyError(f"{name}: expected an augment config (dict, YAML/JSON path) or an augment.Pipeline")


def augment_pipeline(augment):
    """An ``augment.Pipeline`` from a config dict/path/pipeline, or None."""
    if augment is None:
        return None
    import augment as augment_pkg

    if isinstance(augment, augment_pkg.Pipeline):
        return augment
    try:
        return augment_pkg.Pipeline.from_config(augment, backend="torchvision")
    except augment_pkg.AugmentError as e:
        raise AnomalyError(f"augment: {e}") from None


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise AnomalyError("training: the model has no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _batches(n: int, batch_size: int, gen: torch.Generator | None):
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def _own_rows(n: int, rank: int, world: int) -> tuple[torch.Tensor, float]:
    """This process's rows of a batch of ``n`` (``rank::world``) and its loss weight
    ``world * share``: DDP averages over processes, so the sum is the whole batch's mean loss. A
    process with no row of a small batch computes the first row with weight 0 (DDP needs every
    process to take part in each step)."""
    rows = torch.arange(rank, n, world)
    return (rows, world * len(rows) / n) if len(rows) else (torch.arange(min(1, n)), 0.0)


def _wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model under DistributedDataParallel in a process group, else itself."""
    if not distributed.active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    # every trainable parameter takes part in the loss (extractors drop the stages past their last layer)
    return distributed.collective("starting DistributedDataParallel", DistributedDataParallel, model, device_ids=ids)


class _TensorReader:
    """The fast path for in-memory tensors (series windows): index them, no per-item collation."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None):
        self.x, self.y = x, y

    def read(self, batches):
        for idx in batches:
            yield self.x[idx], None if self.y is None else self.y[idx], idx


def _capped(cfg: TrainConfig) -> TrainConfig:
    """``$ANOMALY_MAX_EPOCHS``: at most that many epochs for every training run (quick trials of
    the commands, CI), said once per run as a warning."""
    raw = os.environ.get("ANOMALY_MAX_EPOCHS")
    if not raw:
        return cfg
    try:
        cap = int(raw)
        if cap < 1:
            raise ValueError
    except ValueError:
        raise AnomalyError(f"ANOMALY_MAX_EPOCHS={raw!r}: must be a whole number >= 1") from None
    if cap >= cfg.epochs:
        return cfg
    warnings.warn(f"ANOMALY_MAX_EPOCHS={cap}: training {cap} of {cfg.epochs} epochs", stacklevel=3)
    return replace(cfg, epochs=cap)


def held_out_count(n: int, cfg: TrainConfig) -> int:
    """Samples of ``n`` (with random access) that :func:`fit_model` holds out for early stopping:
    ``val_fraction`` of them, none under 20."""
    return round(n * cfg.val_fraction) if n >= 20 else 0


def fit_model(
    model: nn.Module,
    loss_fn: LossFn,
    x,
    y: torch.Tensor | None = None,
    config: TrainConfig | None = None,
    device: torch.device | str = "cpu",
    augment=None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` in place on ``x`` (samples, and targets ``y`` for a tensor ``x``); returns
    the loss history.

    ``x``: a tensor, or anything :func:`anomalib_lite.data.batches.training_data` reads (targets then come
    with the data). ``augment`` (an ``augment.Pipeline`` or its config) transforms each training
    batch with draws keyed by (seed, epoch, sample index); held-out batches are never augmented.
    """
    cfg = _capped((config or TrainConfig()).check())
    device = torch.device(device)
    pipeline = augment_pipeline(augment)
    gen = torch.Generator().manual_seed(cfg.seed)
    if isinstance(x, torch.Tensor):
        data, reader = None, _TensorReader(x, y)
        n = len(x)
    else:
        if y is not None:
            raise AnomalyError("training: give targets with the data (an (x, y) pair or a Dataset), not as y")
        data = x if isinstance(x, TrainingData) else training_data(x, batch_size=cfg.batch_size)
        reader = data.reader(cfg.num_workers, device.type == "cuda", cfg.seed) if data.random_access else None
        n = len(data) if data.random_access else 0
    if reader is not None:  # random access: shuffled by index, held-out share by index
        n_val = held_out_count(n, cfg)
        # held out: a random share, or ("tail") the last samples, so series are split by time
        perm = torch.randperm(n, generator=gen) if cfg.val_split == "random" else torch.roll(torch.arange(n), n_val)
        val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        if len(train_idx) == 0:
            raise AnomalyError("training: no samples to train on")
        steps = math.ceil(len(train_idx) / cfg.batch_size)
    else:  # read as given every epoch
        n_val, val_idx, steps = 0, None, data.n_batches
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    opt = _optimizer(model, cfg)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps))
        if cfg.schedule == "cosine"
        else None
    )
    result, best_state, best_val, bad_epochs = TrainResult(), None, math.inf, 0
    start = time.perf_counter()
    # one bar over every step of every epoch: its estimate is for the whole run (or the budget)
    bar = progress.bar(cfg.epochs * steps, desc, cfg.verbose, unit="step")
    val_seconds, val_total, out_of_time, done = 0.0, 0.0, False, 0  # done: steps taken (a hidden bar counts none)
    model.to(device)
    net = _wrap(model, device)  # DDP under torchrun: each process its rows of every batch
    rank, world = distributed.rank(), distributed.world()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)
        for epoch in range(cfg.epochs):
            model.train()
            total, count = 0.0, 0
            if reader is not None:
                whole = [train_idx[pos] for pos in _batches(len(train_idx), cfg.batch_size, gen)]
                own = [_own_rows(len(b), rank, world) for b in whole]
                weights = [w for _, w in own]
                batches = reader.read([b[rows] for b, (rows, _) in zip(whole, own)])
            else:
                weights = None
                batches = ((b.x, b.y, b.index) for b in data.epoch())
            bar.set_description(f"{desc} epoch {epoch + 1}/{cfg.epochs}")
            for step, (xb, yb, idx) in enumerate(batches):
                if weights is not None:
                    weight = weights[step]
                else:  # read as given: every process reads the batch and keeps its rows
                    rows, weight = _own_rows(len(idx), rank, world)
                    if world > 1:
                        xb, yb, idx = xb[rows], None if yb is None else yb[rows], idx[rows]
                xb = xb.to(device, non_blocking=True)
                if pipeline is not None:
                    xb = pipeline(xb, indices=idx.tolist(), epoch=epoch)
                yb = None if yb is None else yb.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    loss = loss_fn(net, Step(xb, yb, idx, epoch, True))
                n_own = len(idx) if weight else 0
                value = loss.item()
                bad = not math.isfinite(value)
                if world > 1:  # the batch's loss (and whether any process's went bad) from every process
                    value_sum, n_own, bad = distributed.all_sum(
                        [0.0 if bad else value * n_own, n_own, float(bad and n_own > 0)], "sharing the loss")
                    value = value_sum / max(n_own, 1)
                    n_own, bad = int(n_own), bad > 0
                if bad:
                    raise AnomalyError(f"training: the loss became {value if world == 1 else 'non-finite'} "
                                       f"in epoch {epoch + 1}; lower lr")
                opt.zero_grad(set_to_none=True)
                if world > 1:  # DDP averages the gradients over processes during backward
                    distributed.collective("exchanging gradients", scaler.scale(loss * weight).backward)
                else:
                    scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                if sched is not None:
                    sched.step()
                total += value * n_own
                count += n_own
                done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{total / count:.4g}", refresh=False)
                # the time budget, checked after every step (one process; several agree once per epoch):
                # stop when the next step and the held-out pass that follows would not fit in it
                if cfg.max_time is not None and world == 1:
                    elapsed = time.perf_counter() - start
                    per_step = (elapsed - val_total) / done
                    val_cost = val_seconds if val_seconds else 0.5 * per_step * math.ceil(n_val / cfg.batch_size)
                    # what scoring after training will take (in-sample scores, calibration), at the
                    # held-out pass's rate: the budget is for the whole fit, not the loop alone
                    rate = val_seconds / n_val if val_seconds and n_val else 0.5 * per_step / cfg.batch_size
                    if elapsed + per_step + val_cost + cfg.after_items * rate > cfg.max_time:
                        out_of_time = True
                        break
            result.train_loss.append(total / max(count, 1))
            if n_val:
                t_val = time.perf_counter()
                own_val = val_idx[rank::world] if world > 1 else val_idx
                v_sum, v_n = distributed.all_sum(_evaluate(model, loss_fn, reader, own_val, cfg, device),
                                                 "sharing the held-out loss")
                val = v_sum / v_n
                val_seconds = time.perf_counter() - t_val
                val_total += val_seconds
            else:
                val = result.train_loss[-1]
            result.val_loss.append(val)
            if val < best_val - 1e-12:
                best_val, bad_epochs, result.best_epoch = val, 0, epoch
                if n_val and cfg.patience:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            if n_val and cfg.patience and bad_epochs >= cfg.patience:
                result.stopped = "early_stopping"
                break
            if cfg.max_time is not None:
                elapsed = time.perf_counter() - start
                late = out_of_time or elapsed > cfg.max_time
                if world > 1:  # stop together: when any process ran out of time
                    late = distributed.all_sum([float(late)], "sharing the time budget")[0] > 0
                if late:
                    result.stopped = "time"
                    break
                # what the budget leaves, so the bar's estimate is for the run that will happen
                per_step = (elapsed - val_total) / max(done, 1)
                bar.total = min(cfg.epochs * steps, done + int((cfg.max_time - elapsed) / per_step) + 1)
    bar.close()
    del net
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    result.held_out = int(n_val)
    result.kept_epoch = result.best_epoch if best_state is not None else len(result.train_loss) - 1
    return result


def describe(h: TrainResult, asked: int, patience: int | None, unit: str = "sample") -> str:
    """What a training run did, for a result line: the epochs run of those asked and why it
    stopped, the training loss from the first epoch to the last, and, where samples were held
    out, which epoch's weights were kept (the best held-out one under early stopping, else the
    last) with its held-out loss on how many samples."""
    from ..errors import plural

    why = {"early_stopping": f"stopped early: the held-out loss had not improved for {plural(patience or 0, 'epoch')} "
                             "(--patience)", "time": "stopped by --max-time"}.get(h.stopped)
    n = len(h.train_loss)
    text = (f"{n} of {plural(asked, 'epoch')} ({why})" if why else plural(n, "epoch"))
    if n:
        text += f", training loss {h.train_loss[0]:.3f} -> {h.train_loss[-1]:.3f}"
    kept = h.kept_loss()
    if kept is not None:
        text += f"; kept epoch {h.kept_epoch + 1}'s weights, held-out loss {kept:.3f} on {plural(h.held_out, unit)}"
        fall = still_falling(h)
        if fall is not None:
            text += (f"; the held-out loss still fell {100 * fall[0]:.0f} % over the last {plural(fall[1], 'epoch')}: more epochs "
                     "may help (--epochs)")
    return text


def still_falling(h: TrainResult, span: int = 2, least: float = 0.01) -> tuple[float, int] | None:
    """(relative fall, epochs) of the held-out loss over the last ``span`` epochs, when every
    epoch asked ran, the last one's weights were kept (the best held-out loss so far) and the loss
    fell by more than ``least`` of itself: training stopped while still learning what generalises.
    None otherwise (early stopping, a time budget, no held-out samples, a flat or rising loss)."""
    v = h.val_loss
    if h.stopped != "epochs" or not h.held_out or h.kept_epoch != len(v) - 1 or len(v) < 2 or v[-1] > min(v):
        return None
    k = min(span, len(v) - 1)
    before = v[-1 - k]
    if not (before > 0.0 and math.isfinite(before)):
        return None
    fall = (before - v[-1]) / before
    return (fall, k) if fall > least else None


@torch.no_grad()
def _evaluate(model, loss_fn, reader, idx, cfg, device) -> tuple[float, int]:
    """Summed held-out loss and the number of samples (``idx``: this process's share); draws
    keyed by epoch 0 so every epoch is judged on the same task."""
    model.eval()
    total = 0.0
    order = [idx[i : i + cfg.batch_size] for i in range(0, len(idx), cfg.batch_size)]
    for xb, yb, b in reader.read(order):
        yb = None if yb is None else yb.to(device, non_blocking=True)
        total += loss_fn(model, Step(xb.to(device, non_blocking=True), yb, b, 0, False)).item() * len(b)
    return total, len(idx)
