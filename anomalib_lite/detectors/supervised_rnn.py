"""SupervisedRNN: early warning learned from labelled series.

Labels are 0/1 per step (1 = anomalous); an anomaly starts where a 1 follows a 0. An LSTM or GRU
reads the ``window`` steps up to t and outputs, per step, the probability that an anomaly starts
within (t, t + ``horizon``] (``horizon=0``: that one starts at t, i.e. detection). The last
``horizon`` steps of a training series have unknown targets and are not trained on. Training is
weighted against class imbalance (``pos_weight``, default: negatives / positives), and early
stopping holds out the *last* ``val_fraction`` of the windows: splits are by time, never at random.
With the balanced loss 0.5 is the natural decision point (``threshold_`` after ``fit``); the
score is a ranking, not a calibrated probability. Scores are NaN for the first ``window - 1`` steps.
"""
from __future__ import annotations

import numpy as np
import torch

from ..base import register
from ..data import Batch
from ..errors import AnomalyError
from ..metrics import early_warning_labels
from ..series import SequenceNet, SeriesDetector, run_blocks
from ..streaming import sliding_windows
from ..training import TrainConfig, fit_model

__all__ = ["SupervisedRNN"]

_CELLS = ("lstm", "gru")


class _Stream:
    def __init__(self, dim: int):
        self.context = np.zeros((0, dim), dtype=np.float32)  # the last window - 1 raw steps


@register
class SupervisedRNN(SeriesDetector):
    """Per-step probability that an anomaly starts within the next ``horizon`` steps.

    Parameters
    ----------
    window: steps read per prediction; horizon: warning span (0 = detect at onset).
    cell: "lstm" or "gru"; hidden, layers, dropout: network size.
    scaling: standardise each channel ("channel") or all with one scale ("global": embeddings).
    pos_weight: weight of positive steps in the loss (None = negatives / positives).
    epochs, batch_size, lr, patience, val_fraction, max_time: the training loop.
    """

    def __init__(
        self,
        window: int = 64,
        horizon: int = 20,
        cell: str = "lstm",
        hidden: int = 32,
        layers: int = 1,
        dropout: float = 0.0,
        scaling: str = "channel",
        pos_weight: float | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        patience: int | None = 5,
        val_fraction: float = 0.2,
        max_time: float | None = None,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.window = window
        self.horizon = horizon
        self.cell = cell
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.scaling = scaling
        self.pos_weight = pos_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.val_fraction = val_fraction
        self.max_time = max_time
        self.device = device
        self.seed = seed
        self.verbose = verbose

    def _check_params(self) -> None:
        self._check_scaling()
        if self.cell not in _CELLS:
            raise AnomalyError(f"cell='{self.cell}': unknown; use one of {', '.join(_CELLS)}")
        for name, low in (("window", 1), ("horizon", 0), ("hidden", 1), ("layers", 1), ("epochs", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise AnomalyError(f"{name}={value!r}: must be an integer >= {low}")
        if not 0 <= self.dropout < 1:
            raise AnomalyError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.pos_weight is not None and not self.pos_weight > 0:
            raise AnomalyError(f"pos_weight={self.pos_weight}: must be > 0 (or None for balanced)")

    def _build(self, dim: int) -> None:
        torch.manual_seed(self.seed)
        self.model_ = SequenceNet(self.cell, dim, self.hidden, self.layers, self.dropout, self.window)
        self.model_.to(self.device_).eval()

    def _reset(self) -> None:
        self.device_ = self._resolve_device()
        self.model_ = None
        self.scaler_mean_ = self.scaler_std_ = None
        self._chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._stream = None

    def _new_stream(self) -> _Stream:
        return _Stream(int(self.input_shape_[0]))

    # ------------------------------------------------------------------ fitting
    def _update(self, batch: Batch, fitting: bool) -> None:
        if not fitting:
            raise AnomalyError("SupervisedRNN learns from whole labelled series: use fit(), not partial_fit()")
        if batch.y is None:
            raise AnomalyError(
                "data: SupervisedRNN needs 0/1 labels per step: pass (x, y), a CSV with --label-column, "
                "or a nab: series"
            )
        self._chunks.append((batch.x, batch.y))

    def _finish_fit(self) -> None:
        x = torch.cat([c[0] for c in self._chunks]).numpy()
        y = torch.cat([c[1] for c in self._chunks]).numpy()
        self._chunks = []
        w, h = self.window, self.horizon
        n_win = len(x) - w + 1 - h  # windows whose target is known
        if n_win < 2:
            raise AnomalyError(f"data: a series of {len(x)} steps is too short for window + horizon = {w + h}")
        target = early_warning_labels(y, h)[w - 1 : w - 1 + n_win]
        n_pos = int(target.sum())
        if n_pos == 0:
            raise AnomalyError(
                f"data: no anomaly starts in the labels ({int(y.sum())} anomalous steps); nothing to warn of"
            )
        self._set_scaler(x)
        self._build(x.shape[1])
        wins = sliding_windows(torch.from_numpy(self._scaled(x)), w)[:n_win]
        weight = torch.tensor(self.pos_weight if self.pos_weight is not None else (n_win - n_pos) / n_pos)

        def loss(model, step):
            return torch.nn.functional.binary_cross_entropy_with_logits(
                model(step.x), step.y, pos_weight=weight.to(step.x.device)
            )

        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                          val_fraction=self.val_fraction, val_split="tail", max_time=self.max_time,
                          seed=self.seed, verbose=self.verbose).check()
        self.train_result_ = fit_model(self.model_, loss, wins, torch.from_numpy(target.astype(np.float32)),
                                       cfg, self.device_, desc="fit")
        self.threshold_ = 0.5
        self.reset()

    # ------------------------------------------------------------------ scoring
    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if self._stream is None:
            self.reset()
        st, w = self._stream, self.window
        x = x.cpu().numpy()
        n, m = len(x), len(st.context)
        steps = np.concatenate([st.context, x])
        out = np.full(n, np.nan)
        first = max(0, w - 1 - m)
        if first < n:
            wins = sliding_windows(torch.from_numpy(self._scaled(steps)), w)[m + first - w + 1 : m + n - w + 1]
            out[first:] = torch.sigmoid(run_blocks(self.model_, wins, self.device_)).double().numpy()
        st.context = steps[len(steps) - (w - 1) :] if w > 1 else steps[:0]
        return torch.from_numpy(out)

    def targets(self, labels) -> np.ndarray:
        """1 where an anomaly starts within the horizon: what the scores should rank high."""
        return early_warning_labels(labels, self.horizon)

    def unit_scores(self, scores) -> np.ndarray:
        """The scores themselves: they already lie in [0, 1]."""
        return np.asarray(scores, dtype=np.float64)

    # ------------------------------------------------------------------ bundles
    def _get_state(self):
        tensors = {f"model.{k}": v for k, v in self.model_.state_dict().items()}
        tensors["scaler_mean"] = torch.from_numpy(self.scaler_mean_)
        tensors["scaler_std"] = torch.from_numpy(self.scaler_std_)
        return tensors, {"stream": "starts reset after loading"}

    def _set_state(self, tensors, meta) -> None:
        self._check_params()
        self._reset()
        self.scaler_mean_ = tensors["scaler_mean"].numpy()
        self.scaler_std_ = tensors["scaler_std"].numpy()
        self._build(int(self.input_shape_[0]))
        self.model_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.model_.eval()
