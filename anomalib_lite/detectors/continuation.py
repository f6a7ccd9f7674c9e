"""Continuation: anomaly = a series that does not continue the way its past says it should.

A forecaster (LSTM or temporal CNN) reads a ``window`` of standardised past steps and predicts the
next ``horizon`` steps (Telemanom, Hundman et al. 2018). Each step is predicted up to ``horizon``
times; the score of a step is the absolute error of the mean of those forecasts, divided per
channel by the mean error on the training series, averaged over channels, and smoothed by an EWMA
of span ``smoothing``. Scores are NaN for the first ``window`` steps of a stream.

Streams: ``score(chunk)`` continues from the previous chunk (see :mod:`anomalib_lite.series`);
``partial_fit(chunk)`` is test-then-train: it scores the chunk (``last_scores_``, ``last_flags_``),
then learns from the windows it completed, skipping windows whose targets were flagged when
``learn_flagged=False``; chunks longer than ``batch_size`` are scored and learned batch by batch.
Started without ``fit``, it keeps its first ``warm_up`` steps (scores NaN), trains on them like
``fit`` does, then goes on test-then-train.
"""
from __future__ import annotations

import numpy as np
import torch

from ..base import register
from ..data import Batch
from ..errors import AnomalyError
from ..series import THRESHOLDS, ForecastNet, SeriesDetector, run_blocks
from ..streaming import Ewma, sliding_windows
from ..training import TrainConfig, fit_model

__all__ = ["Continuation"]

_MODELS = ("lstm", "tcn")
_MIN_ERROR = 1e-3  # in standard deviations of the data: smaller training errors are numerical noise


class _Stream:
    """What carries over from one chunk to the next."""

    def __init__(self, det: Continuation, dim: int):
        h = det.horizon
        self.context = np.zeros((0, dim), dtype=np.float32)  # last `window` raw steps
        self.forecasts = np.full((h, h, dim), np.nan, dtype=np.float32)  # made at the last h steps
        self.ewma = Ewma(det.smoothing)
        self.threshold = det._moving_threshold()
        self.tail = np.zeros((0, dim), dtype=np.float32)  # last window+horizon-1 steps, to learn
        self.tail_flags = np.zeros(0, dtype=bool)


@register
class Continuation(SeriesDetector):
    """Forecast-error anomaly detector for series and streams.

    Parameters
    ----------
    model: "lstm" or "tcn" (temporal CNN: dilated causal convolutions covering the window).
    window, horizon: steps read, steps predicted.
    hidden, layers, dropout: network size (``layers`` counts LSTM layers).
    relative: read each window relative to its last value (level shifts surprise only where they
        happen); set False for embeddings of frames, whose absolute values are the content.
    scaling: "channel" (standardise each channel, and divide its error by its own training
        error) or "global" (one scale for all channels: embeddings).
    smoothing: EWMA span of the score (1 = none).
    threshold: "calibrated", "moving", "quantile" or "dynamic" (see :mod:`anomalib_lite.series`);
        threshold_window, threshold_k, threshold_q: the moving rules' window, k and quantile.
    learn_flagged: whether ``partial_fit`` learns from windows whose targets were flagged.
    learn_every: windows collected by ``partial_fit`` before one online update (SGD at
        ``online_lr``, default ``10 * lr``: its steps shrink with the gradient, unlike Adam's).
    warm_up: steps ``partial_fit`` collects and trains on when started without ``fit``
        (default ``10 * (window + horizon)``).
    epochs, batch_size, lr, patience, val_fraction, max_time: the training loop (the last
        ``val_fraction`` of the windows, in time, is held out for early stopping).
    """

    #: scores are in units of the mean training error: moving thresholds never flag below it
    _score_floor = 1.0

    def __init__(
        self,
        model: str = "lstm",
        window: int = 64,
        horizon: int = 5,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.2,
        relative: bool = True,
        scaling: str = "channel",
        smoothing: float = 20.0,
        threshold: str = "calibrated",
        threshold_window: int = 2000,
        threshold_k: float = 4.0,
        threshold_q: float = 0.99,
        learn_flagged: bool = True,
        learn_every: int = 64,
        online_lr: float | None = None,
        warm_up: int | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        patience: int | None = 5,
        val_fraction: float = 0.1,
        max_time: float | None = None,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.model = model
        self.window = window
        self.horizon = horizon
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.relative = relative
        self.scaling = scaling
        self.smoothing = smoothing
        self.threshold = threshold
        self.threshold_window = threshold_window
        self.threshold_k = threshold_k
        self.threshold_q = threshold_q
        self.learn_flagged = learn_flagged
        self.learn_every = learn_every
        self.online_lr = online_lr
        self.warm_up = warm_up
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.val_fraction = val_fraction
        self.max_time = max_time
        self.device = device
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------ set-up
    def _check_params(self) -> None:
        if self.model not in _MODELS:
            raise AnomalyError(f"model='{self.model}': unknown; use one of {', '.join(_MODELS)}")
        self._check_scaling()
        if self.threshold not in THRESHOLDS:
            raise AnomalyError(f"threshold='{self.threshold}': unknown; use one of {', '.join(THRESHOLDS)}")
        lowest = {"window": 2, "threshold_window": 2, "horizon": 1, "hidden": 1, "layers": 1, "epochs": 1,
                  "batch_size": 1, "learn_every": 1}
        for name, low in lowest.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise AnomalyError(f"{name}={value!r}: must be an integer >= {low}")
        if not 0 <= self.dropout < 1:
            raise AnomalyError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.warm_up is not None and (not isinstance(self.warm_up, int) or self.warm_up <= self.window + self.horizon):
            raise AnomalyError(f"warm_up={self.warm_up!r}: must be an integer > window + horizon")
        if not self.smoothing >= 0:
            raise AnomalyError(f"smoothing={self.smoothing}: must be >= 0 (an EWMA span; 1 = none)")
        if not 0 < self.threshold_q < 1 or not self.threshold_k > 0:
            raise AnomalyError("threshold_q must be in (0, 1) and threshold_k > 0")

    def _build(self, dim: int) -> None:
        torch.manual_seed(self.seed)
        self.model_ = ForecastNet(self.model, dim, self.hidden, self.layers, self.dropout, self.window, self.horizon,
                                  self.relative)
        self.model_.to(self.device_).eval()

    def _reset(self) -> None:
        self.device_ = self._resolve_device()
        self.model_ = None
        self.scaler_mean_ = self.scaler_std_ = self.err_scale_ = None
        self.n_updates_ = 0
        self._chunks: list[torch.Tensor] = []  # fit: the training series; partial_fit: warm-up
        self._pending: list[torch.Tensor] = []
        self._stream = None

    def _new_stream(self) -> _Stream:
        return _Stream(self, int(self.input_shape_[0]))

    def _config(self, **changes) -> TrainConfig:
        cfg = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "patience": self.patience,
               "val_fraction": self.val_fraction, "val_split": "tail", "max_time": self.max_time,
               "seed": self.seed, "verbose": self.verbose}
        return TrainConfig(**{**cfg, **changes}).check()

    def _loss(self, model, step) -> torch.Tensor:
        x, target = step.x[:, : self.window], step.x[:, self.window :]
        return torch.nn.functional.mse_loss(model(x), target)

    # ------------------------------------------------------------------ fitting
    def _update(self, batch: Batch, fitting: bool) -> None:
        if fitting:
            self._chunks.append(batch.x)
            return
        x = batch.x.numpy()
        if self.model_ is None:  # partial_fit from scratch: collect the warm-up steps, then train
            self._chunks.append(batch.x)
            self._last.append(np.full(len(x), np.nan))
            self._last_flags.append(np.zeros(len(x), dtype=bool))
            warm = torch.cat(self._chunks).numpy()
            if len(warm) >= (self.warm_up or 10 * (self.window + self.horizon)):
                self._chunks = []
                self._train(warm)
                with torch.inference_mode():
                    self._score_steps(warm)  # fills the stream's window, smoothing and threshold
                self._stream.tail = warm[-(self.window + self.horizon - 1) :]
                self._stream.tail_flags = np.zeros(len(self._stream.tail), dtype=bool)
            return
        if self._stream is None:
            self.reset()
        with torch.inference_mode():
            scores = self._score_steps(x)
        flags = self.flag(scores) if self.can_flag() else np.zeros(len(x), dtype=bool)
        self._last.append(scores)
        self._last_flags.append(flags)
        self._learn_online(x, flags)

    def partial_fit(self, chunk) -> Continuation:
        """Test-then-train on the next chunk of the stream: score it (``last_scores_``,
        ``last_flags_``), then learn from it; the first call after ``fit`` continues a new stream."""
        self._last, self._last_flags = [], []
        super().partial_fit(chunk)
        self.last_scores_ = np.concatenate(self._last) if self._last else np.zeros(0)
        self.last_flags_ = np.concatenate(self._last_flags) if self._last_flags else np.zeros(0, dtype=bool)
        return self

    def _learn_online(self, x: np.ndarray, flags: np.ndarray | None) -> None:
        st, span = self._stream, self.window + self.horizon
        flags = np.zeros(len(x), dtype=bool) if flags is None else flags
        steps = np.concatenate([st.tail, x])
        marks = np.concatenate([st.tail_flags, flags])
        st.tail, st.tail_flags = steps[-(span - 1) :], marks[-(span - 1) :]
        wins = sliding_windows(torch.from_numpy(self._scaled(steps)), span)
        if not self.learn_flagged and len(wins):
            bad = sliding_windows(torch.from_numpy(marks[:, None]), span)[:, self.window :].any(dim=(1, 2))
            wins = wins[~bad]
        if len(wins):
            self._pending.append(wins.contiguous())
        if sum(len(w) for w in self._pending) >= self.learn_every:
            data = torch.cat(self._pending)
            self._pending = []
            lr = self.online_lr if self.online_lr is not None else 10 * self.lr
            cfg = self._config(epochs=1, lr=lr, optimizer="sgd", val_fraction=0.0, patience=None,
                               schedule="constant", seed=self.seed + 1 + self.n_updates_, verbose=False)
            fit_model(self.model_, self._loss, data, None, cfg, self.device_, desc="partial_fit")
            self.n_updates_ += 1

    def _finish_fit(self) -> None:
        series = torch.cat(self._chunks).numpy()
        self._chunks = []
        self._train(series)

    def _train(self, series: np.ndarray) -> None:
        """Scaler, network and error scale from one series; leaves a reset stream."""
        span = self.window + self.horizon
        if len(series) < span + 1:
            raise AnomalyError(
                f"data: a series of {len(series)} steps is too short for window + horizon = {span}; "
                "give a longer series or a smaller --window"
            )
        self._set_scaler(series)
        self._build(series.shape[1])
        wins = sliding_windows(torch.from_numpy(self._scaled(series)), span)
        self.train_result_ = fit_model(self.model_, self._loss, wins, None, self._config(), self.device_, desc="fit")
        self.err_scale_ = np.ones(series.shape[1])
        self.reset()
        with torch.inference_mode():
            err = self._errors(series)
        ok = ~np.isnan(err[:, 0])
        scale = err[ok].mean(0)
        if self.scaling == "global":
            scale = np.full_like(scale, scale.mean())
        self.err_scale_ = np.maximum(scale, _MIN_ERROR)
        self.reset()

    # ------------------------------------------------------------------ scoring
    def _errors(self, x: np.ndarray) -> np.ndarray:
        """|step - mean of its forecasts| per channel, standardised (n, D); NaN without forecasts.
        Advances the stream: context and the forecasts still pending."""
        st, w, h = self._stream, self.window, self.horizon
        n, dim = x.shape
        steps = np.concatenate([st.context, x])
        m = len(st.context)
        z = self._scaled(steps)
        new = np.full((n, h, dim), np.nan, dtype=np.float32)
        first = max(0, w - 1 - m)  # first new step that ends a full window
        if first < n:
            wins = sliding_windows(torch.from_numpy(z), w)[m + first - w + 1 : m + n - w + 1]
            new[first:] = run_blocks(self.model_, wins, self.device_).numpy()
        made = np.concatenate([st.forecasts, new])  # made[h + i]: forecast made at new step i
        total, count = np.zeros((n, dim)), np.zeros(n)
        for k in range(1, h + 1):  # forecast of step i made k steps earlier, in a fixed order
            f = made[h - k : h - k + n, k - 1]
            ok = ~np.isnan(f[:, 0])
            total += np.where(ok[:, None], f, 0.0)
            count += ok
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.abs(z[m:] - total / count[:, None])
        st.context, st.forecasts = steps[-w:], made[-h:]
        return err

    def _score_steps(self, x: np.ndarray) -> np.ndarray:
        err = self._errors(x) / self.err_scale_
        return self._stream.ewma.update(err.mean(1))

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.model_ is None:
            raise AnomalyError("Continuation is still warming up: partial_fit needs window + horizon steps first")
        if self._stream is None:
            self.reset()
        return torch.from_numpy(self._score_steps(x.cpu().numpy()))

    # ------------------------------------------------------------------ bundles
    def _get_state(self):
        if self.model_ is None:
            raise AnomalyError("Continuation: nothing to save yet (still warming up)")
        tensors = {f"model.{k}": v for k, v in self.model_.state_dict().items()}
        tensors["scaler_mean"] = torch.from_numpy(self.scaler_mean_)
        tensors["scaler_std"] = torch.from_numpy(self.scaler_std_)
        tensors["err_scale"] = torch.from_numpy(np.asarray(self.err_scale_, dtype=np.float64))
        return tensors, {"n_updates": self.n_updates_, "stream": "starts reset after loading"}

    def _set_state(self, tensors, meta) -> None:
        self._check_params()
        self._reset()
        self.scaler_mean_ = tensors["scaler_mean"].numpy()
        self.scaler_std_ = tensors["scaler_std"].numpy()
        self.err_scale_ = tensors["err_scale"].numpy()
        self.n_updates_ = int(meta.get("n_updates", 0))
        self._build(int(self.input_shape_[0]))
        self.model_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.model_.eval()
