"""Continuation: anomaly = a series that does not continue the way its past says it should.

A causal forecaster (a dilated temporal CNN or an LSTM, :mod:`anomalib_lite.components.series_nets`) reads
the standardised series step by step and, after each step, predicts the next ``horizon`` steps
(Telemanom, Hundman et al. 2018). With ``relative=True`` it reads the changes from step to step
(first differences), so a level shift surprises only where it happens, and it predicts the coming
steps as changes from the last value. Each step is predicted up to ``horizon`` times; its score is
the absolute error of the mean of those forecasts, divided per channel by the mean error on the
training series, averaged over channels, and smoothed by an EWMA of span ``smoothing``. Scores
are NaN for the first ``window`` steps of a stream (``season_ + window`` with a season).

Streams: the network's state carries over from step to step and from one ``score(chunk)`` to the
next, so one new step costs one step of the network (a few small numpy products); see
:mod:`anomalib_lite.detectors.series`. ``partial_fit(chunk)`` is test-then-train: it scores the chunk
(``last_scores_``, ``last_flags_``), then learns from the steps whose targets it has seen,
skipping flagged targets when ``learn_flagged=False``. Started without ``fit``, it keeps its first
``warm_up`` steps (scores NaN), trains on them like ``fit`` does, then goes on test-then-train.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from .. import validate as v
from .base import RUN_CHECKS, Capabilities, register
from ..data.batches import Batch
from ..errors import AnomalyError
from .series import (
    CROP_SPAN,
    SCORE_CHUNK,
    SERIES_CHECKS,
    STEP_CHUNK,
    THRESHOLDS,
    SeriesDetector,
    crop_plan,
    labelled_steps,
    masked_mse,
    seasonal_period,
    training_crops,
)
from ..components.series_nets import StreamNet
from ..components.streaming import Ewma
from ..scoring.thresholds import check_fpr
from ..training.loop import TrainConfig, fit_model, history

__all__ = ["Continuation"]

_NETWORKS = ("lstm", "tcn")
_MIN_ERROR = 0.01  # in standard deviations of the data: finer errors are below a measurement's resolution
_SPAN = CROP_SPAN  # steps with a loss after a window (training crops, online updates)


class _Stream:
    """What carries over from one step (and chunk) to the next."""

    def __init__(self, det: Continuation, dim: int):
        h = det.horizon
        self.seen = 0  # steps of this stream so far
        self.last: np.ndarray | None = None  # the last standardised step (for differences)
        self.season = np.zeros((det.season_, dim))  # the last season_ standardised steps, oldest first
        self.state = det.model_.encoder.zero_state(1)
        self.sums = np.zeros((h, dim))  # forecasts made for the next h steps: their sum ...
        self.counts = np.zeros(h)  # ... and number
        self.ewma = Ewma(det.smoothing)
        self.threshold = det._moving_threshold()
        self.learn_x = np.zeros((0, dim))  # partial_fit: recent raw steps, which of them it must
        self.learn_skip = np.zeros(0, dtype=bool)  # not learn (flagged, labelled), and how many leading ones are only context
        self.learn_done = det.season_ + det.window


def pool_forecasts(f: np.ndarray, valid: np.ndarray, carried: np.ndarray, counts: np.ndarray):
    """The forecasts made for each step of a chunk, summed, and their number: ``f`` (n, h, D),
    ``f[i, k-1]`` made at step i for step i + k, counted where ``valid[i]``; ``carried`` (h, D)
    and ``counts`` (h,): the sums and numbers still pending for the chunk's first h steps.
    Returns (n + h, D) sums and (n + h,) numbers; their last h rows are the next chunk's pending."""
    n, h = f.shape[:2]
    total, count = np.zeros((n + h, f.shape[2])), np.zeros(n + h)
    total[:h] += carried
    count[:h] += counts
    for k in range(1, h + 1):
        total[k : k + n] += f[:, k - 1] * valid[:, None]
        count[k : k + n] += valid
    return total, count


@register
class Continuation(SeriesDetector):
    """Forecast-error anomaly detector for series and streams.

    Parameters
    ----------
    network : {"lstm", "tcn"}, default "lstm"
        The causal forecaster: an LSTM whose state carries over the whole stream (in training,
        ``window`` steps warm it up before each crop's loss), or dilated causal convolutions
        whose receptive field covers ``window`` steps.
    window : int, default 64
        Steps read (and NaN scores at a stream's start, after the season's period if any).
    horizon : int, default 5
        Steps predicted after each step.
    hidden : int, default 32
    num_layers : int, default 2
        Recurrent layers (LSTM).
    dropout : float, default 0.1
    relative : bool, default True
        Read step-to-step changes (a level shift surprises only where it happens); False for
        embeddings of frames, whose absolute values are the content.
    scaling : {"channel", "global"}, default "channel"
        Standardise (and divide the errors of) each channel on its own, or all with one scale.
    season : int or "auto", default "auto"
        Period of a seasonal pattern in steps (e.g. 288 for daily at 5 minutes): the forecaster
        also reads what the series did one period earlier. "auto" detects it (autocorrelation
        peak >= 0.5, kept when it explains >= 20 % of the forecasts' changes); 0 turns it off.
    smoothing : float, default 10.0
        EWMA span of the score (1 = none).
    threshold_rule : {"calibrated", "moving", "quantile", "dynamic"}, default "calibrated"
        How ``flag``/``predict`` turn scores into flags (see :mod:`anomalib_lite.detectors.series`).
    threshold_window : int, default 2000
    threshold_k : float, default 4.0
    threshold_q : float, default 0.99
        The moving rules' window, k (mean + k std) and quantile.
    learn_flagged : bool, default True
        Whether ``partial_fit`` learns from steps whose targets were flagged.
    learn_every : int, default 64
        Steps ``partial_fit`` collects before one online update (SGD at ``online_lr``).
    online_lr : float or None, default None
        Learning rate of online updates (None: ``10 * lr``).
    warm_up : int or None, default None
        Steps ``partial_fit`` collects and trains on when started without ``fit``
        (None: ``10 * (window + horizon)``).
    epochs : int, default 30
        Passes over the training crops (at most: early stopping and ``max_time`` end it sooner;
        ``$ANOMALY_MAX_EPOCHS`` caps it).
    batch_size : int, default 64
        Crops per optimisation step.
    lr : float, default 1e-3
        Learning rate (AdamW).
    patience : int or None, default 5
        Epochs without a better validation loss before training stops (None: all epochs).
    val_fraction : float, default 0.1
        The last share of the crops, in time, held out to measure that loss.
    max_time : float or None, default None
        Training time budget in seconds (training stops before the step that would cross it).
    contamination, device, seed, verbose
        The run parameters every detector has (:class:`~anomalib_lite.detectors.base.Detector`).
    threads : int or None, default None
        Torch intra-op threads (None: one for these small networks on the CPU).

    Attributes
    ----------
    model_ : anomalib_lite.components.series_nets.StreamNet
    scaler_mean_, scaler_std_, input_scale_, err_scale_ : ndarray of shape (D,)
        Standardisation, scale of the step-to-step changes, mean training error per channel.
    season_ : int
        The season's period in steps (0: none); ``season_weight_``, ``season_clip_`` its terms.
    history_ : anomalib_lite.training.loop.TrainResult
    threshold_, fpr_, calibration_scores_, holdout_scores_, clean_calibration_
        Set by :meth:`calibrate` or :meth:`cross_calibrate`: the threshold, its target rate, the
        scores that set it (the held-out end, completed to one season's period when shorter; or
        with every training step scored out of fold), the held-out end's own scores (the
        prior of :meth:`unit_scores`), and whether labels took the anomalies out of the scores
        that set it (then the counts set it; else a tail that anomalies barely move).

    Labels: a series given with 0/1 labels per step (an ``(X, y)`` pair, or a series source with a
    label column) is fitted without learning the steps labelled 1: no training target reaches
    them, and the error scale leaves them out (a forecaster that learned them would forecast
    them); :meth:`partial_fit` skips them too, and :meth:`calibrate` and :meth:`cross_calibrate`
    leave them, and the window after each, out of the threshold, which the counts of the scores
    left then set (``clean_calibration_``). (``fit(X, y)``'s ``y`` is ignored, as scikit-learn's
    unsupervised estimators do.)

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import Continuation
    >>> series = np.sin(np.arange(600) / 8.0)
    >>> det = Continuation(window=16, epochs=2, season=0, device="cpu").fit(series[:500])
    >>> det.decision_function(series[500:]).shape
    (100,)
    """

    capabilities = Capabilities(learns_online=True)
    command = "continuation"  # `anomaly fit continuation`
    cli_examples = ('--data data/series.csv --column value -o m.anomaly',
                    '--data "nab:realKnownCause/nyc_taxi.csv?stop=0.15" -o taxi.anomaly',)
    quick_params = {"window": 4, "horizon": 1, "hidden": 4, "num_layers": 1, "epochs": 1, "season": 0}

    _param_checks = {
        "network": v.one_of(*_NETWORKS),
        **SERIES_CHECKS,
        "horizon": v.integer(1, 1000),
        "relative": v.boolean(),
        "season": v.either(v.one_of("auto"), v.integer(0, 1_000_000), what="must be 'auto', 0 or a period in steps"),
        "smoothing": v.number(0, 1e6),
        "threshold_rule": v.one_of(*THRESHOLDS),
        "threshold_window": v.integer(2, 10_000_000),
        "threshold_k": v.number(0, 1000, lo_open=True),
        "threshold_q": v.number(0, 1, lo_open=True, hi_open=True),
        "learn_flagged": v.boolean(),
        "learn_every": v.integer(1, 1_000_000),
        "online_lr": v.none_or(v.number(0, 10, lo_open=True)),
        "warm_up": v.none_or(v.integer(2, 100_000_000)),
        **RUN_CHECKS,
    }
    _fitted_checks = {
        "season_": v.integer(0, 1_000_000),
        "n_updates_": v.integer(0, 1 << 62),
        "history_": v.none_or(history),
        "clean_calibration_": v.none_or(v.boolean()),  # (None: a bundle before it)
    }
    _fitted_optional = ("clean_calibration_",)  # bundles before it: the robust tail
    _learned = ("model_", "scaler_mean_", "scaler_std_", "input_scale_", "err_scale_", "season_weight_",
                "season_clip_")
    _positive_learned = ("scaler_std_", "input_scale_", "err_scale_", "season_clip_")

    def __init__(
        self,
        network: str = "lstm",
        window: int = 64,
        horizon: int = 5,
        hidden: int = 32,
        num_layers: int = 2,
        dropout: float = 0.1,
        relative: bool = True,
        scaling: str = "channel",
        season: int | str = "auto",
        smoothing: float = 10.0,
        threshold_rule: str = "calibrated",
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
        contamination: float | None = None,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
        threads: int | None = None,
    ):
        self.network = network
        self.window = window
        self.horizon = horizon
        self.hidden = hidden
        self.num_layers = num_layers
        self.dropout = dropout
        self.relative = relative
        self.scaling = scaling
        self.season = season
        self.smoothing = smoothing
        self.threshold_rule = threshold_rule
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
        self.contamination = contamination
        self.device = device
        self.seed = seed
        self.verbose = verbose
        self.threads = threads

    # ------------------------------------------------------------------ set-up
    def _check_more(self) -> None:
        if self.season not in ("auto", 0) and self.season <= self.horizon:
            raise AnomalyError(f"season={self.season!r}: must be 'auto', 0 (none) or a period in steps > horizon")
        if self.warm_up is not None and self.warm_up <= self.window + self.horizon:
            raise AnomalyError(f"warm_up={self.warm_up!r}: must be an integer > window + horizon")

    def _net(self, dim: int, device=None) -> StreamNet:
        d_in = dim * (1 + (self.horizon if self.season_ else 0))
        return self._build_net(lambda: StreamNet(self.network, d_in, self.hidden, self.num_layers, self.dropout,
                                                 self.window, self.horizon * dim), device)

    def _build(self, dim: int) -> None:
        self.model_ = self._net(dim)
        self._stepper = None

    def _build_learned(self, device) -> dict:
        return {"model_": self._net(int(self.input_shape_[0]), device)}

    def _learned_arrays(self) -> dict:
        d = (int(self.input_shape_[0]),)
        return {name: (d, torch.float64, "numpy") for name in self._learned[1:]}

    def _reset(self) -> None:
        self.device_ = self._resolve_device()
        self.model_ = None
        self.scaler_mean_ = self.scaler_std_ = self.input_scale_ = self.err_scale_ = self.season_weight_ = self.season_clip_ = None
        self.n_updates_ = 0
        self.season_ = 0
        self.history_ = None
        self._chunks: list[torch.Tensor] = []  # fit: the training series; partial_fit: warm-up
        self._chunk_labels: list[torch.Tensor | None] = []  # fit: the series' 0/1 labels, if given
        self._stream = None
        self._stepper = None

    def _new_stream(self) -> _Stream:
        return _Stream(self, int(self.input_shape_[0]))

    def _config(self, **changes) -> TrainConfig:
        cfg = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "patience": self.patience,
               "val_fraction": self.val_fraction, "val_split": "tail", "max_time": self.max_time,
               "seed": self.seed, "verbose": self.verbose}
        return TrainConfig(**{**cfg, **changes}).check()

    # ------------------------------------------------------------------ inputs and targets
    def _seasonal_reference(self, z: np.ndarray, past: np.ndarray, seen: int) -> np.ndarray:
        """The series as the seasonal inputs see it: each step, but at most ``season_clip_`` away
        from the reference one period earlier (a robust, Huber-style filter: an anomaly is not
        echoed in full one period later, while the usual season is followed exactly)."""
        p, n = self.season_, len(z)
        full = np.concatenate([past, z])
        for a in range(0, n, p):  # each block depends on the block one period before it
            idx = np.arange(a, min(n, a + p))
            ref = full[idx]  # one period earlier
            keep = (seen + idx < p)[:, None]
            full[p + idx] = np.where(keep, z[idx], ref + np.clip(z[idx] - ref, -self.season_clip_, self.season_clip_))
        return full[p:]

    def _inputs(self, z: np.ndarray, prev: np.ndarray | None, past: np.ndarray, seen: int):
        """What the network reads at each step of ``z`` (n, D), the seasonal changes, and the
        seasonal reference of ``z``.

        The network reads the step-to-step change in units of its training spread
        (``relative``; the first step of a stream reads no change), else the standardised value;
        with a season P, also ``ahead`` (n, horizon, D): the changes of the seasonal reference
        (:meth:`_seasonal_reference`) over the next ``horizon`` steps one period earlier (zero
        until a period has passed), which also enter the forecast through ``season_weight_``.
        ``prev``: the step before ``z`` (None at a stream's start); ``past``: the reference of
        the P steps before ``z``, oldest first; ``seen``: the stream's steps before ``z``.
        """
        if self.relative:
            before = np.concatenate([(z[:1] if prev is None else prev[None]), z[:-1]])
            u = (z - before) / self.input_scale_
        else:
            u = z
        p = self.season_
        if not p:
            return u, None, None
        n, h = len(z), self.horizon
        ref = self._seasonal_reference(z, past, seen)
        full = np.concatenate([past, ref])  # full[i]: step i - p of the chunk
        i = np.arange(n)
        ahead = full[i[:, None] + np.arange(1, h + 1)] - full[i][:, None]  # (n, h, D)
        ahead[seen + i < p] = 0.0
        return np.concatenate([u, (ahead / self.input_scale_).reshape(n, -1)], axis=1), ahead, ref

    def _targets(self, z: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
        """(T, horizon * D): the changes from step t to t + 1 ... t + horizon (NaN past the end,
        and at every step t whose span t ... t + horizon holds a step of ``skip``: steps the
        network must not learn, labelled anomalous or a cross-fitting fold's block)."""
        n, dim = z.shape
        h = self.horizon
        y = np.full((n, h, dim), np.nan)
        for k in range(1, h + 1):
            y[: n - k, k - 1] = z[k:] - z[: n - k]
        if skip is not None and skip.any():  # any skipped step among t ... t + h
            reach = np.convolve(skip[::-1].astype(np.int64), np.ones(h + 1, np.int64))[: n][::-1] > 0
            y[reach] = np.nan
        return y.reshape(n, -1)

    def _loss(self, model, step) -> torch.Tensor:
        pred, _ = model(step.x)
        return masked_mse(pred[:, self.window :], step.y[:, self.window :])

    # ------------------------------------------------------------------ fitting
    def _update(self, batch: Batch, fitting: bool) -> None:
        if fitting:
            self._chunks.append(batch.x)
            self._chunk_labels.append(batch.y)
            return
        x = batch.x.double().numpy()
        if self.model_ is None:  # partial_fit from scratch: collect the warm-up steps, then train
            self._chunks.append(batch.x)
            self._chunk_labels.append(batch.y)
            self._last.append(np.full(len(x), np.nan))
            self._last_flags.append(np.zeros(len(x), dtype=bool))
            if sum(len(c) for c in self._chunks) >= (self.warm_up or 10 * (self.window + self.horizon)):
                warm, labelled = self._collected()
                self._train(warm, labelled if labelled.any() else None)
                self._score_steps(warm)  # fills the stream's state, smoothing and threshold
                keep = self.season_ + self.window + self.horizon
                self._stream.learn_x, self._stream.learn_skip = warm[-keep:], labelled[-keep:]
            return
        if self._stream is None:
            self.reset()
        scores = self._score_steps(x)
        flags = self.flag(scores) if self.can_flag() else np.zeros(len(x), dtype=bool)
        self._last.append(scores)
        self._last_flags.append(flags)
        self._learn_online(x, flags, labelled_steps(batch.x, batch.y))

    def partial_fit(self, X, y=None) -> Continuation:
        """Test-then-train on the next chunk of the stream: score it (``last_scores_``,
        ``last_flags_``), then learn from it, except the steps labelled 1 (an ``(X, labels)``
        pair, or a source's label column); the first call after ``fit`` continues a new stream."""
        self._last, self._last_flags = [], []
        super().partial_fit(X, y)
        self.last_scores_ = np.concatenate(self._last) if self._last else np.zeros(0)
        self.last_flags_ = np.concatenate(self._last_flags) if self._last_flags else np.zeros(0, dtype=bool)
        return self

    def _learn_online(self, x: np.ndarray, flags: np.ndarray, labelled: np.ndarray | None = None) -> None:
        """Queue the new steps; every ``learn_every`` steps whose targets are complete, one SGD
        epoch on crops whose loss covers exactly those steps (with their window of context).
        No target reaches a step labelled anomalous (``labelled``), nor, unless
        ``learn_flagged``, a flagged one."""
        st, w, h = self._stream, self.window, self.horizon
        skip = np.zeros(len(x), dtype=bool) if self.learn_flagged else np.asarray(flags, dtype=bool).reshape(-1)
        st.learn_x = np.concatenate([st.learn_x, x])
        st.learn_skip = np.concatenate([st.learn_skip, skip if labelled is None else skip | labelled])
        ready = len(st.learn_x) - h  # steps whose h targets are known
        if ready - st.learn_done < self.learn_every:
            return
        z = self._scaled(st.learn_x)
        y = self._targets(z, st.learn_skip)
        y[: st.learn_done] = np.nan  # context only, or learned already
        u, ahead, _ = self._inputs(z, None, np.zeros((self.season_, z.shape[1])), 0)
        if ahead is not None:
            y -= (self.season_weight_ * ahead).reshape(len(z), -1)
        length = min(w + _SPAN, len(z))
        starts = list(range(st.learn_done - w, ready - length + 1, _SPAN)) + [ready - length]
        starts = sorted({max(0, s) for s in starts})
        xs = torch.from_numpy(np.stack([u[s : s + length] for s in starts]).astype(np.float32))
        ys = torch.from_numpy(np.stack([y[s : s + length] for s in starts]).astype(np.float32))
        if torch.isfinite(ys).any():
            lr = self.online_lr if self.online_lr is not None else 10 * self.lr
            cfg = self._config(epochs=1, lr=lr, optimizer="sgd", val_fraction=0.0, patience=None,
                               schedule="constant", seed=self.seed + 1 + self.n_updates_, verbose=False)
            fit_model(self.model_, self._loss, xs, ys, cfg, self.device_, desc="partial_fit")
            self.model_.eval()
            self._stepper = None
            self.n_updates_ += 1
        keep = self.season_ + w + h  # the next steps' context; their targets are not known yet
        st.learn_x, st.learn_skip = st.learn_x[-keep:], st.learn_skip[-keep:]
        st.learn_done = self.season_ + w

    def _fit_season(self, z: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """The season (period, weight, clip) of a standardised training series: the period given,
        or detected (:func:`anomalib_lite.detectors.series.seasonal_period`); the clip, 3 robust standard
        deviations of the change from one period to the next (at least 0.1); the weight, by
        least squares: how much of the change one period earlier recurs in the next ``horizon``
        steps. A detected season that explains less than 20 % of those changes is dropped."""
        w, h, dim = self.window, self.horizon, z.shape[1]
        none = (0, np.zeros(dim), np.ones(dim))
        p = self.season
        if p == "auto":  # a period of at most 60 % of the series leaves 40 % to learn it on
            p = seasonal_period(z, 2 * h, min(int(0.6 * len(z)), len(z) - w - h - _SPAN))
        if not p or len(z) - h - w - p < 1:
            return none if not p else (p, np.zeros(dim), np.ones(dim))
        d = z[p:] - z[:-p]
        spread = 1.4826 * np.median(np.abs(d - np.median(d, 0)), 0)
        if self.scaling == "global":
            spread = np.full(dim, spread.mean())
        self.season_, self.season_clip_ = p, 3.0 * np.maximum(spread, 0.1)
        _, ahead, _ = self._inputs(z, None, np.zeros((p, dim)), 0)
        y = self._targets(z).reshape(ahead.shape)[w + p : len(z) - h]
        a = ahead[w + p : len(z) - h]
        known = np.isfinite(y).all(axis=(1, 2))  # (all of them, but in a cross-fitting fold)
        y, a = y[known], a[known]
        num, den = (y * a).sum(axis=(0, 1)), (a * a).sum(axis=(0, 1))
        if self.scaling == "global":
            num, den = np.full(dim, num.sum()), np.full(dim, den.sum())
        weight = np.clip(num / np.where(den > 0, den, 1.0), 0.0, 1.0)
        gain = 1.0 - ((y - weight * a) ** 2).sum() / max((y**2).sum(), 1e-12)
        if self.season == "auto" and gain < 0.2:
            return none
        return p, weight, self.season_clip_

    def _collected(self) -> tuple[np.ndarray, np.ndarray]:
        """The steps collected for training (float64) and a bool per step: labelled anomalous;
        empties the collection."""
        series = torch.cat(self._chunks).double().numpy()
        labelled = np.concatenate([labelled_steps(x, y) for x, y in zip(self._chunks, self._chunk_labels)])
        self._chunks, self._chunk_labels = [], []
        return series, labelled

    def _finish_fit(self) -> None:
        series, skip = self._collected()
        if getattr(self, "_skip", None) is not None:  # a cross-fitting fold's block (and labelled steps)
            skip |= self._skip
        self._train(series, skip if skip.any() else None)

    def _train(self, series: np.ndarray, skip: np.ndarray | None = None) -> None:
        """Scaler, network and error scale from one series; leaves a reset stream. ``skip``: a
        bool per step the network must not learn (no target reaches it, and the error scale is
        measured without it): labelled anomalous, or a cross-fitting fold's block."""
        w, h = self.window, self.horizon
        if len(series) < w + h + 1:
            raise AnomalyError(
                f"data: a series of {len(series)} steps is too short for window + horizon = {w + h}; "
                "give a longer series or a smaller window (window= in Python, anomaly fit continuation --window)"
            )
        self._set_scaler(series)
        z = self._scaled(series)
        spread = np.diff(z, axis=0).std(0) if self.scaling == "channel" else np.full(z.shape[1], np.diff(z, axis=0).std())
        self.input_scale_ = np.where(spread > 1e-6, spread, 1.0)
        self.season_, self.season_weight_, self.season_clip_ = self._fit_season(z)
        first = w + self.season_  # the first step trained on: a period, then a window, behind it
        if len(z) - h - first < 1:
            raise AnomalyError(
                f"data: a series of {len(series)} steps is too short for season = {self.season_} + window + horizon"
            )
        self._build(series.shape[1])
        u, ahead, _ = self._inputs(z, None, np.zeros((self.season_, z.shape[1])), 0)
        y = self._targets(z, skip)
        y[:first] = np.nan
        if ahead is not None:  # the network learns what the seasonal term leaves
            y -= (self.season_weight_ * ahead).reshape(len(z), -1)
        start = max(0, first - w)
        span, stride = crop_plan(len(z) - start - w)
        x, y = training_crops(u[start:], y[start:], w, span, stride)
        if skip is not None:  # crops with no target go (they would be validation samples of loss 0)
            taught = torch.isfinite(y[:, w:]).any(dim=2).any(dim=1)
            x, y = x[taught], y[taught]
            if len(x) == 0 and getattr(self, "_skip", None) is None:  # (a fold's block: cross_calibrate's cut)
                raise AnomalyError(
                    f"data: every step's forecast target reaches a step labelled anomalous ({int(skip.sum()):,} of "
                    f"{len(skip):,} steps labelled; a target spans the {h + 1} steps from t to t + horizon): nothing "
                    "normal is left to learn; fit on a stretch with normal runs longer than the horizon")
        self.history_ = fit_model(self.model_, self._loss, x, y, self._config(), self.device_, desc="fit")
        self.model_.eval()
        self._stepper = None
        self.err_scale_ = np.ones(series.shape[1])
        self.reset()
        err = self._errors(series)
        ok = ~np.isnan(err[:, 0])
        if skip is not None and (ok & ~skip).any():  # the error scale of the steps it learned
            ok &= ~skip
        scale = err[ok].mean(0)
        if self.scaling == "global":
            scale = np.full_like(scale, scale.mean())
        self.err_scale_ = np.maximum(scale, _MIN_ERROR)
        self.reset()

    # ------------------------------------------------------------------ calibration
    def cross_calibrate(self, X, fpr: float = 0.01, folds: int = 3, after=None, normal=None) -> Continuation:
        """Calibrate on the training series itself, scored out of fold, so that every phase of
        its rhythm counts (time-blocked cross-fitting).

        ``X`` is the series this detector was fitted on. Its steps with a score (past the first
        ``window + season_``) are cut into ``folds`` consecutive blocks; for each, a clone is
        fitted on ``X`` with no target in the block (its steps still reach the network as the
        context of the steps after it) and scores the block as the continuation of the steps
        before it, its errors in this detector's units (``err_scale_``). The clones keep this
        detector's season (or none), so each fold refits the same structure. ``after``: steps
        that follow ``X``, held out of the fit (``fit``'s held-out end), scored by this detector
        as ``X``'s continuation; they join the calibration scores and are :meth:`unit_scores`'
        prior (``holdout_scores_``; without them, the out-of-fold scores are). ``normal``: one
        bool per step of ``X`` then ``after``, False where a step may not calibrate (labelled
        anomalous, or within a window after such a step, whose input still holds it); the prior
        keeps every score. Costs ``folds`` fits.

        Why: a held-out end is one stretch of the series, often shorter than its rhythm (60 steps
        of a daily rhythm of 288 in NAB's probationary periods). Completed to one period by
        in-sample scores, its thresholds flagged 7.7 % (dev half) and 12.1 % (held-out half) of
        NAB's later normal steps, mean over the series, at a 1 % target; with the training steps
        scored out of 3 folds, 2.7 % and 2.8 % (median 0.6 % and 0.2 %; what is left is drift;
        ``benchmarks/series_calibration.py``). Both with the series' tail
        (:data:`~anomalib_lite.detectors.series.TAIL_START`), which anomalies inside the training
        series barely raise.
        """
        self._require_fitted()
        check_fpr(fpr)
        folds = int(folds)
        if isinstance(X, Iterator):
            raise AnomalyError("cross-fitting reads the training series again: give it as an array, a DataFrame "
                               "or a data source, not a one-shot iterator")
        x, labelled = self._steps_and_labels(X)
        n = len(x)
        if folds < 2 or n < self.blocks_needed(folds):
            first = self.window + self.season_
            raise AnomalyError(f"cross-fitting: a series of {n} steps cannot make {folds} blocks of more than "
                               f"horizon = {self.horizon} steps after its first {first} (window"
                               f"{' + season' if self.season_ else ''}, which have no score; folds >= 2)")
        oof = np.full(n, np.nan)
        edges = np.linspace(self.window + self.season_, n, folds + 1).astype(int)  # the steps with a score
        for a, b in zip(edges[:-1], edges[1:]):
            part = self._fold_clone().set_params(season=self.season_)  # this detector's season (or none), refitted
            part._skip = labelled.copy()
            part._skip[a:b] = True
            with warnings.catch_warnings():  # (what the fold's data would warn of, the fit on all of it said)
                warnings.simplefilter("ignore", UserWarning)
                part.fit(x)
            part._skip = None
            part.err_scale_ = self.err_scale_  # its errors in this detector's units
            oof[a:b] = part.reset().decision_function(x)[a:b]
        held = self._stream_scores(x, after)[1] if after is not None else np.zeros(0)
        scores = np.concatenate([oof, held])
        if normal is None and after is not None:
            labelled = np.concatenate([labelled, self._labels_of(after, len(held))])
        if normal is None and labelled.any():  # (labelled: a bool per step of scores, the series' and after's)
            normal = self.calibrating_steps(labelled)
        if normal is not None:
            normal = np.asarray(normal, dtype=bool).reshape(-1)
            if normal.shape != scores.shape:
                raise AnomalyError(f"cross-fitting: normal= holds {normal.size} steps for the {n} of the series "
                                   f"and the {len(held)} after it")
            scores = np.where(normal, scores, np.nan)
        self._set_threshold(scores, fpr, clean=normal is not None)
        scored = held if after is not None else oof
        self.holdout_scores_ = np.sort(scored[np.isfinite(scored)])
        return self

    def blocks_needed(self, folds: int) -> float:
        # the steps with a score (a period and a window behind them), in blocks longer than the horizon (the
        # targets masked before a block)
        return self.window + getattr(self, "season_", 0) + folds * (self.horizon + 1)  # (unfitted: no season yet)

    # ------------------------------------------------------------------ scoring
    def _errors(self, x: np.ndarray) -> np.ndarray:
        """|step - mean of its forecasts| per channel, standardised (n, D); NaN without forecasts.
        Advances the stream: the network's state and the forecasts still pending."""
        if len(x) <= STEP_CHUNK:
            return self._errors_stepwise(x)
        st, h = self._stream, self.horizon
        z, out, ahead, valid = self._network_pass(x)
        f = z[:, None, :] + out.reshape(len(z), h, z.shape[1])  # f[i, k-1]: made at i for i + k
        if ahead is not None:
            f += self.season_weight_ * ahead
        total, count = pool_forecasts(f, valid, st.sums, st.counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.abs(z - total[: len(z)] / count[: len(z), None])
        st.sums, st.counts = total[len(z) :], count[len(z) :]
        return err

    def _network_pass(self, x: np.ndarray):
        """One torch pass of the network over a chunk (n, D) of raw steps, continuing the stream:
        (standardised steps, the network's outputs (n, out) in float64, the seasonal term or
        None, 1.0 where a step's forecasts count). Advances the network's state, the season's
        buffer, the last step and the steps seen; the pending forecasts are the caller's."""
        st = self._stream
        z = self._scaled(x)
        u, ahead, ref = self._inputs(z, st.last, st.season, st.seen)
        if self.season_:
            st.season = np.concatenate([st.season, ref])[-self.season_ :]
        with torch.inference_mode():
            out, state = self.model_(torch.from_numpy(u[None].astype(np.float32)).to(self.device_), st.state)
        st.state = [s.double().cpu().numpy() for s in state]
        valid = (st.seen + np.arange(len(z)) >= self.window + self.season_ - 1).astype(np.float64)
        st.last, st.seen = z[-1].copy(), st.seen + len(z)
        return z, out[0].double().cpu().numpy(), ahead, valid

    def _errors_stepwise(self, x: np.ndarray) -> np.ndarray:
        """:meth:`_errors` one step at a time in numpy (short chunks: one new point)."""
        st, w = self._stream, self.window
        if self._stepper is None:
            self._stepper = self.model_.stepper()
        step, shape, season, h = self._stepper.step, st.sums.shape, self.season_, self.horizon
        z = self._scaled(x)
        err = np.full(z.shape, np.nan)
        for i in range(len(z)):
            zi = z[i]
            if st.counts[0] > 0:
                err[i] = np.abs(zi - st.sums[0] / st.counts[0])
            st.sums[:-1], st.counts[:-1] = st.sums[1:], st.counts[1:]
            st.sums[-1], st.counts[-1] = 0.0, 0.0
            if self.relative:
                u = np.zeros_like(zi) if st.last is None else (zi - st.last) / self.input_scale_
            else:
                u = zi
            if season:
                past = st.season
                if st.seen >= season:
                    ahead = past[1 : h + 1] - past[0]
                    ref = past[0] + np.minimum(np.maximum(zi - past[0], -self.season_clip_), self.season_clip_)  # np.clip, at a third of its cost
                else:
                    ahead, ref = np.zeros((h, len(zi))), zi
                u = np.concatenate([u, (ahead / self.input_scale_).reshape(-1)])
                past[:-1] = past[1:]
                past[-1] = ref
            out = step(u, st.state).reshape(shape)
            if season:
                out += self.season_weight_ * ahead
            if st.seen >= w + season - 1:
                st.sums += zi + out
                st.counts += 1.0
            st.last = zi
            st.seen += 1
        return err

    def _score_steps(self, x: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            raise AnomalyError("Continuation is still warming up: partial_fit needs window + horizon steps first")
        if self._stream is None:
            self.reset()
        err = self._errors(x) / self.err_scale_
        return self._stream.ewma.update(err.sum(1) / err.shape[1])  # the mean over channels (np.mean costs more per call)
