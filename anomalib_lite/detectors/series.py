"""What the series detectors (Continuation, SupervisedRNN) share.

* Inputs are time steps: :func:`anomalib_lite.data.batches.iter_series` reads them; a sample is one step
  of D channels, scores are one per step, NaN until a detector has seen ``window`` steps.
* A stream state carries over from one ``score(chunk)`` to the next: the network's state (a
  causal network, see :mod:`anomalib_lite.components.series_nets`), pending forecasts, smoothing and moving
  thresholds. Each step's work reuses the previous step's: a chunk of a few steps runs in numpy
  one step at a time, a longer chunk in one torch pass; both give the same scores up to float32
  rounding (:data:`TOLERANCE`), however the stream is cut. ``reset()`` starts a new stream;
  ``calibrate`` scores its data as a stream of its own (optionally continuing from ``context``,
  the steps before it) and leaves the current stream where it was. A loaded bundle starts from a
  reset stream. Steps with times (:func:`time_span`) that do not come after the stream's last
  step start a new stream, with a warning: a stream only goes forward in time.
* ``flag(scores)`` turns scores into anomaly flags with the detector's ``threshold_rule``:
  ``"calibrated"`` (``threshold_`` from ``calibrate``), ``"moving"`` (mean + k*std of a moving
  window of past scores), ``"quantile"`` (a moving quantile) or ``"dynamic"`` (Telemanom, on the
  scores given at once); ``predict(data)`` is ``flag(score(data))``.
* p-values and ``threshold_`` use an exponential tail fitted to the calibration scores between
  their top 20 % and 10 % (:data:`TAIL_START`;
  :func:`anomalib_lite.scoring.thresholds.tail_p_values`): they keep ranking past the largest calibration score, and anomalies among the calibration
  scores (a training series' own, scored out of fold) barely move them. Where labels took the
  anomalies out of the calibration scores (``clean_calibration_``), the counts decide instead. ``unit_scores`` maps a stream's scores to NAB's [0, 1] (see
  :class:`anomalib_lite.scoring.thresholds.SurpriseScore`).
* Torch threads follow :mod:`anomalib_lite.threads` (one on the CPU for these small networks,
  ``threads=N`` to override), restored after each call.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from .base import Detector
from ..data.batches import Batch, iter_series
from ..errors import AnomalyError
from ..components.streaming import sliding_windows
from ..scoring.metrics import in_spans, label_events
from ..scoring.thresholds import (
    MovingThreshold,
    SurpriseScore,
    as_scores,
    check_fpr,
    dynamic_threshold,
    fit_tail,
    tail_p_values,
    tail_threshold,
)
from ..threads import choose_threads, log_choice, torch_threads

__all__ = [
    "CROP_SPAN", "MAX_CROPS", "SCORE_CHUNK", "SERIES_CHECKS", "STEP_CHUNK", "TAIL_START", "THRESHOLDS", "TOLERANCE",
    "SeriesDetector", "crop_plan", "labelled_steps",
    "seasonal_period", "time_span", "training_crops",
]

THRESHOLDS = ("calibrated", "moving", "quantile", "dynamic")
#: a series' calibrated threshold and p-values: an exponential tail fitted to the scores between the
#: top 20 % and the top 10 % (``fit_tail(..., start=)``), so how large the scores of the anomalies a
#: training series holds are does not raise it. Chosen on NAB's dev half over the top tenth's mean
#: excess and over the top 10 % to 5 % (benchmarks/series_calibration.py). Not where labels took the
#: anomalies out of the calibration scores (:meth:`SeriesDetector._tail_start`).
TAIL_START = 0.2


def _series_checks() -> dict:
    from .. import validate as v

    return {
        "window": v.integer(1, 100_000),
        "hidden": v.integer(1, 4096),
        "num_layers": v.integer(1, 16),
        "dropout": v.number(0, 1, hi_open=True),
        "scaling": v.one_of("channel", "global"),
        "epochs": v.integer(1, 100_000),
        "batch_size": v.integer(1, 1 << 16),
        "lr": v.number(0, 10, lo_open=True),
        "patience": v.none_or(v.integer(1, 100_000)),
        "val_fraction": v.number(0, 1, hi_open=True),
        "max_time": v.none_or(v.number(0, lo_open=True)),
        "threads": v.none_or(v.integer(1, 1024)),
    }


#: checks of the parameters both series detectors have
SERIES_CHECKS = _series_checks()
#: chunks of at most this many steps are scored in numpy one step at a time, longer ones in torch
STEP_CHUNK = 16
#: a long series is scored in torch passes of this many steps (memory stays bounded)
SCORE_CHUNK = 16384
#: scores of one stream agree within ``rtol * |score| + atol`` however it is cut into chunks
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


CROP_SPAN = 8  # training crops: steps with a loss after the window that warms a network up ...
MAX_CROPS = 20_000  # ... a crop every step (each step a target in 8 crops an epoch) up to this many


def crop_plan(targets: int) -> tuple[int, int]:
    """(span, stride) of the training crops over ``targets`` steps a loss can fall on: a crop every
    step with a loss on its last :data:`CROP_SPAN`, up to :data:`MAX_CROPS` crops; past that, a
    crop every ``stride`` steps with a loss on its last ``stride``, so an epoch costs what 20,000
    steps cost and still takes every step as a target once (``benchmarks/long_series.py``)."""
    stride = max(1, -(-targets // MAX_CROPS))
    return min(max(CROP_SPAN, stride), targets), stride


def training_crops(inputs: np.ndarray, targets: np.ndarray, burn: int, span: int, stride: int):
    """Training samples for a causal network: crops of ``burn + span`` consecutive steps of
    ``inputs`` (T, D) and ``targets`` (T, K), as views (no copy) every ``stride`` steps. The
    first ``burn`` steps of a crop only warm up the network's state; the loss is taken on the
    last ``span`` (where a target is NaN, not at all)."""
    length = burn + span
    x = sliding_windows(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)), length)[::stride]
    y = sliding_windows(torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)), length)[::stride]
    return x, y


def time_span(data) -> tuple | None:
    """``((first, label), (last, label))`` of the steps' times (a number to compare, a label to
    show), when ``data`` carries them: a pandas object with an index of dates, or a series source
    with times; else None (arrays have no times)."""
    if isinstance(data, tuple) and len(data) == 2:  # (steps, labels)
        data = data[0]
    index = getattr(data, "index", None)
    if getattr(getattr(index, "dtype", None), "kind", "") == "M" and len(index):  # DatetimeIndex, any zone
        ns = index.asi8
        return (int(ns[0]), str(index[0])), (int(ns[-1]), str(index[-1]))
    times = getattr(data, "times", None)  # a SeriesSource
    if getattr(data, "kind", None) == "series" and times is not None and len(times):
        shown = getattr(data, "stamps", None) or times
        return (float(times[0]), str(shown[0])), (float(times[-1]), str(shown[-1]))
    return None


def seasonal_period(z: np.ndarray, min_lag: int, max_lag: int) -> int:
    """The seasonal period of a standardised series (T, D), or 0 when it has none. Peaks of the
    autocorrelation (averaged over channels) in [min_lag, max_lag] count when they reach 0.5 (a
    strong rhythm) and rise at least 0.2 above the lowest autocorrelation at a shorter lag (so a
    slowly decaying trend is not taken for a season); the period is the shortest peak within
    0.05 of the highest (a rhythm's multiples are peaks too)."""
    n = len(z)
    max_lag = min(max_lag, n - 2)
    if max_lag <= min_lag:
        return 0
    x = z - z.mean(0)
    f = np.fft.rfft(x, 2 * n, axis=0)
    ac = np.fft.irfft(f * np.conj(f), axis=0)[: max_lag + 2].sum(1)
    if ac[0] <= 0:
        return 0
    ac = ac / ac[0] * n / (n - np.arange(max_lag + 2))  # unbiased: each lag's own number of pairs
    low = np.minimum.accumulate(ac)
    k = np.arange(max(min_lag, 2), max_lag + 1)
    peaks = k[(ac[k] >= ac[k - 1]) & (ac[k] >= ac[k + 1]) & (ac[k] >= 0.5) & (ac[k] - low[k - 1] >= 0.2)]
    if peaks.size == 0:
        return 0
    return int(peaks[ac[peaks] >= ac[peaks].max() - 0.05][0])


def labelled_steps(x: torch.Tensor, y: torch.Tensor | None) -> np.ndarray:
    """A bool per step of a chunk ``x`` of steps: labelled anomalous by its 0/1 labels ``y`` (all
    False when the chunk comes without labels)."""
    return np.zeros(len(x), dtype=bool) if y is None else y.numpy().reshape(len(x)) > 0


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the finite targets (0 with a gradient when there are none)."""
    ok = torch.isfinite(target)
    if not bool(ok.any()):
        return (pred * 0.0).sum()
    return torch.nn.functional.mse_loss(pred[ok], target[ok])


class SeriesDetector(Detector):
    """Base of the series detectors: reading steps, the stream state, threads, flags and
    calibration."""

    input_kind = "series"
    shards_data = False  # one stream: every torchrun process reads all of it
    _positive_learned = ("scaler_std_",)
    #: moving thresholds never flag at or below this score
    _score_floor: float = -np.inf

    # ------------------------------------------------------------------ inputs
    def _iter_data(self, data, batch_size: int):
        return iter_series(data, batch_size)

    def _check_input(self, batch: Batch) -> None:
        expected = getattr(self, "input_shape_", None)
        if expected is not None and tuple(batch.x.shape[1:]) != tuple(expected):
            raise AnomalyError(
                f"data: the series has {batch.x.shape[1]} channel(s) but {self._name} was fitted on {expected[0]}"
            )

    def _few_steps(self, data) -> np.ndarray | None:
        """``data`` as float64 (n, D) steps when it is a short, clean array (the one-step fast
        path, which skips the general reader); None to take the general path, which also gives
        the errors for bad input."""
        if isinstance(data, (float, int)) and not isinstance(data, bool):
            x = np.array([[data]], dtype=np.float64)
        elif isinstance(data, np.ndarray) and data.dtype.kind == "f" and data.ndim <= 2 and data.size <= 4 * STEP_CHUNK:
            x = data.reshape(-1, 1) if data.ndim < 2 else data
        else:
            return None
        dim = int(self.input_shape_[0])
        if len(x) == 0 or len(x) > STEP_CHUNK or x.shape[1] != dim or not np.isfinite(x).all():
            return None
        return x.astype(np.float64)  # (the general reader's float64 too)

    def _set_scaler(self, series: np.ndarray) -> None:
        """Mean and std per channel (``scaling="channel"``: channels in their own units) or one
        for all (``"global"``: embeddings, where near-constant channels must not dominate)."""
        if getattr(self, "scaling", "channel") == "global":
            mean = np.full(series.shape[1], series.mean(dtype=np.float64))
            std = np.full(series.shape[1], series.std(dtype=np.float64))
        else:
            mean, std = series.mean(0, dtype=np.float64), series.std(0, dtype=np.float64)
        self.scaler_mean_, self.scaler_std_ = mean, np.where(std > 0, std, 1.0)

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        """Values standardised with the training mean and std (float64)."""
        return (np.asarray(x, dtype=np.float64) - self.scaler_mean_) / self.scaler_std_

    def _build_net(self, make, device=None) -> torch.nn.Module:
        """``make()`` under the detector's seed on ``device`` (default: the detector's), leaving
        the caller's random state alone."""
        device = self.device_ if device is None else device
        with torch.random.fork_rng(devices=[]), torch.device("meta" if str(device) == "meta" else "cpu"):
            torch.manual_seed(self.seed)
            net = make()
        return net.to(device).eval()

    def _after_load(self) -> None:
        self._stepper = None
        self.model_.eval()
        self._stream = None

    # ------------------------------------------------------------------ threads
    def _threads(self):
        """The thread policy for this detector's torch work (a context manager); the choice is
        logged once per detector in verbose mode."""
        model = getattr(self, "model_", None)
        if model is not None:
            n_params = sum(p.numel() for p in model.parameters())
        else:  # before the network exists: the size of its largest part, a generous estimate
            n_params = 8 * self.hidden * (self.hidden + int(getattr(self, "window", 1))) * getattr(self, "num_layers", 1)
        device = getattr(self, "device_", None) or "cpu"
        n, why = choose_threads(getattr(self, "threads", None), n_params, device)
        if getattr(self, "verbose", False) and getattr(self, "_threads_logged", None) != n:
            log_choice(self._name, n, why)
            self._threads_logged = n
        return torch_threads(n)

    #: whether ``fit`` learns from labels ``y`` (else they are ignored, as scikit-learn does; labels
    #: that come with the data, an ``(X, y)`` pair or a source's label column, still reach the
    #: detector: the forecaster does not learn the steps they mark)
    _supervised = False

    def fit(self, X, y=None) -> SeriesDetector:
        """Learn from a series ``X`` (anything :func:`anomalib_lite.data.batches.iter_series` reads);
        ``y``: 0/1 labels per step (the supervised detector needs them, others ignore them)."""
        data = X if y is None or not self._supervised else (X, y)
        self._check_params()  # before the thread policy sizes the network from hidden, window, num_layers
        with self._threads():
            return super().fit(data)

    def partial_fit(self, X, y=None) -> SeriesDetector:
        if getattr(self, "model_", None) is None:  # (the first call sizes the network, as fit does)
            self._check_params()
        with self._threads():
            return super().partial_fit(X if y is None or not self._supervised else (X, y))

    def decision_function(self, X) -> np.ndarray:
        """One anomaly score per step, continuing the stream (NaN while the first window fills).
        Steps with times (a pandas index of dates, a dated series source) that do not come after
        the stream's last step start a new stream, with a warning: a stream only goes forward, so
        scoring the same frame twice (``decision_function(df)`` then ``predict(df)``) gives the
        same scores rather than a continuation that jumps back in time."""
        self._require_fitted()
        data = X
        x = self._few_steps(data)
        if x is not None:
            if getattr(self, "_stream", None) is None:
                self.reset()
            return self._score_steps(x)
        span = time_span(data)
        if span is not None:
            self._follow_time(span)
        out = []
        with self._threads(), torch.inference_mode():
            for batch in iter_series(data, SCORE_CHUNK):
                self._check_input(batch)
                out.append(self._score_batch(batch.x).double().numpy())
        if span is not None:
            self._stream.last_time = span[1]
        return np.concatenate(out)

    def _follow_time(self, span: tuple) -> None:
        """A new stream (and one warning) when steps starting at ``span[0]`` do not come after
        the stream's last step."""
        last = getattr(getattr(self, "_stream", None), "last_time", None)
        if last is not None and not span[0][0] > last[0]:
            warnings.warn(
                f"{self._name}: these steps start at {span[0][1]}, not after the last step scored "
                f"({last[1]}): scored as a new stream (call reset() before scoring a series again; "
                "decision_function and predict continue the stream)", stacklevel=3)
            self.reset()

    def score(self, X, y=None) -> float:
        """As for every detector (ROC-AUC against 0/1 labels ``y``, else the mean of
        ``score_samples``), on ``X`` scored as a stream of its own: the same number every call."""
        kept = getattr(self, "_stream", None)
        self.reset()
        try:
            return super().score(X, y)
        finally:
            self._stream = kept

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if self._stream is None:
            self.reset()
        return torch.from_numpy(self._score_steps(x.cpu().double().numpy()))

    def _score_steps(self, x: np.ndarray) -> np.ndarray:
        """Scores of the next steps ``x`` (n, D) float64 of the stream."""
        raise NotImplementedError

    # ------------------------------------------------------------------ stream state
    def _new_stream(self):
        raise NotImplementedError

    def reset(self) -> SeriesDetector:
        """Start a new stream: forget the past steps, smoothing and moving-threshold state."""
        self._stream = self._new_stream() if self._is_fitted() and getattr(self, "model_", None) is not None else None
        return self

    def _moving_threshold(self) -> MovingThreshold | None:
        mode = getattr(self, "threshold_rule", "calibrated")
        if mode not in ("moving", "quantile"):
            return None
        return MovingThreshold(
            "std" if mode == "moving" else "quantile", self.threshold_window, self.threshold_k, self.threshold_q,
            floor=self._score_floor,
        )

    # ------------------------------------------------------------------ thresholds
    def calibrate(self, normal, fpr: float = 0.01, context=None, _in_sample: bool = False) -> SeriesDetector:
        """Set ``threshold_`` from the scores of a normal series, scored as a stream of its own
        (the current stream is left as it was). ``context``: the steps just before ``normal``
        (typically the training series it was cut from): the stream runs through them first, so
        ``normal`` is scored as their continuation and every one of its steps has a score.
        Without context its first ``window`` steps have none.

        A calibration set must hold every phase of the series' rhythm, since errors differ by
        phase (a busy day, a quiet night). When ``normal`` is shorter than the season's period,
        the context's last steps complete it to one period: their own scores (in-sample errors,
        as classical prediction intervals read them). NAB's probationary periods hold out 60
        steps of a daily rhythm of 288; their quiet phase alone gave thresholds that flagged
        16 % of the later normal steps, mean over the dev half, against a 1 % target
        (``benchmarks/series_calibration.py``). ``holdout_scores_`` keeps ``normal``'s own
        scores, the errors on steps the network never trained on: the prior of
        :meth:`unit_scores`' surprise."""
        check_fpr(fpr)  # (before the scoring)
        self._require_fitted()
        before, after = self._stream_scores(context, normal)
        held = after
        labelled = np.concatenate([self._labels_of(context, len(before)), self._labels_of(normal, len(after))])
        if labelled.any():  # (the prior keeps every score)
            ok = self.calibrating_steps(labelled)
            before, after = np.where(ok[: len(before)], before, np.nan), np.where(ok[len(before) :], after, np.nan)
        missing = getattr(self, "season_", 0) - len(after)  # steps short of one period
        self._set_threshold(np.concatenate([before[len(before) - missing :] if missing > 0 else before[:0], after]), fpr,
                            clean=bool(labelled.any()))
        self.holdout_scores_ = np.sort(held[np.isfinite(held)])
        return self

    def calibrating_steps(self, labelled) -> np.ndarray:
        """True where a step may calibrate a threshold: not labelled anomalous (``labelled``, a
        bool per step), nor within ``window`` steps after such a step, whose input still holds it."""
        labelled = np.asarray(labelled, dtype=bool).reshape(-1)
        return ~in_spans(label_events(labelled, after=int(getattr(self, "window", 0) or 0))[0], len(labelled))

    def _labels_of(self, data, n: int) -> np.ndarray:
        """A bool per step of ``data`` (``n`` steps; None: none): labelled anomalous. All False
        where ``data`` has no labels, or is a one-shot iterator (read once, by the scoring)."""
        if data is None or isinstance(data, Iterator):
            return np.zeros(n, dtype=bool)
        return np.concatenate([labelled_steps(b.x, b.y) for b in self._iter_data(data, SCORE_CHUNK)])

    def _steps_and_labels(self, data) -> tuple[np.ndarray, np.ndarray]:
        """The steps of ``data`` (n, D) as float64, and a bool per step: labelled anomalous
        (False where ``data`` has no labels)."""
        batches = list(self._iter_data(data, SCORE_CHUNK))
        x = np.concatenate([b.x.double().numpy() for b in batches])
        return x, np.concatenate([labelled_steps(b.x, b.y) for b in batches])

    def _stream_scores(self, context, normal) -> tuple[np.ndarray, np.ndarray]:
        """The scores of ``context`` (None: no steps) and of ``normal`` as its continuation, scored
        as a stream of their own; the current stream is left as it was."""
        kept = self._stream
        self.reset()
        try:
            before = self.decision_function(context) if context is not None else np.zeros(0)
            return before, self.decision_function(normal)
        finally:
            self._stream = kept

    def blocks_needed(self, folds: int) -> float:
        """The fewest training steps ``cross_calibrate`` can cut into ``folds`` time blocks (inf:
        this detector has no time-blocked cross-fitting)."""
        return float("inf")

    def _start(self, data) -> None:
        super()._start(data)
        self.holdout_scores_ = None
        self.clean_calibration_ = False

    def _in_sample_scores(self, X) -> np.ndarray:
        """The training series' own scores, scored as a stream of its own (the current stream is
        left as it was): ``decision_scores_``."""
        kept = self._stream
        self.reset()
        try:
            return self.decision_function(X)
        finally:
            self._stream = kept

    def _set_threshold(self, scores: np.ndarray, fpr: float, clean: bool = False) -> SeriesDetector:
        """``threshold_`` at ``fpr`` from calibration ``scores`` (NaN: steps left out). ``clean``:
        labels took the anomalies out of them (``clean_calibration_``, :meth:`_tail_start`)."""
        finite = scores[np.isfinite(scores)]
        if finite.size == 0:
            raise AnomalyError(
                f"calibration data: a series of {len(scores)} steps gives no score; it must be longer "
                f"than window={self.window}{self._season_note()} (or continue the training series: "
                "calibrate(..., context=train))"
            )
        if (finite.size + 1) * fpr < 1:  # below what they can certify: the fitted tail decides, unmeasured
            warnings.warn(f"fpr={fpr:g}: {finite.size} calibration scores certify rates down to 1/{finite.size + 1} = "
                          f"{1 / (finite.size + 1):.3g}; the threshold extrapolates the tail fitted to their largest "
                          "(calibrate on a longer normal stretch, e.g. --holdout, for a rate that is measured)",
                          stacklevel=3)
        self.clean_calibration_ = bool(clean)
        self.threshold_ = self._from_tail_scale(tail_threshold(self._tail_scale(finite), fpr, start=self._tail_start()))
        self.fpr_ = float(fpr)
        self.calibration_scores_ = np.sort(finite)
        return self

    def _season_note(self) -> str:
        p = getattr(self, "season_", 0)
        return f" + season={p}" if p else ""

    def flag(self, scores) -> np.ndarray:
        """Anomaly flags for scores (in stream order) under the ``threshold_rule``; NaN is never
        flagged. The moving rules carry their window over from call to call (reset by ``reset``)."""
        self._require_fitted()
        s = as_scores(scores).reshape(-1)
        mode = getattr(self, "threshold_rule", "calibrated")
        if getattr(self, "_stream", None) is None:
            self.reset()
        if mode == "dynamic":
            return dynamic_threshold(s)[1]
        if mode in ("moving", "quantile"):
            return self._stream.threshold.update(s)
        self._require_calibrated()
        return np.nan_to_num(s, nan=-np.inf) > self.threshold_

    def can_flag(self) -> bool:
        """Whether ``flag`` works now (the calibrated rule needs ``calibrate`` first)."""
        return getattr(self, "threshold_rule", "calibrated") != "calibrated" or self.threshold_ is not None

    def predict(self, X) -> np.ndarray:
        """``flag(decision_function(X))`` as 0/1: like ``decision_function``, it continues the
        stream."""
        self._require_fitted()
        if not self.can_flag():
            self._require_calibrated()
        return self.flag(self.decision_function(X)).astype(np.int64)

    def targets(self, labels) -> np.ndarray:
        """What the scores should rank high, from 0/1 anomaly labels per step: the labels."""
        return np.asarray(labels, dtype=np.int64)

    def _calibration_scores(self) -> np.ndarray:
        if getattr(self, "calibration_scores_", None) is None:
            raise AnomalyError(f"{self._name} has no calibration scores: call calibrate(normal_series) first")
        return self.calibration_scores_

    def unit_scores(self, scores, values=None, quiet: int = 0, settle: int = 0, cycle: int = 0,
                    cycle_warm: int = 0, extremes: bool = True, neighbours: int = 0, change: int = 0,
                    **options) -> np.ndarray:
        """A stream's scores (in order, from its start) mapped to [0, 1] for NAB: how surprising
        each step's score is against the stream's long-run distribution of scores (seeded with
        the calibration scores, when there are some), quiet after an alarm for ``quiet`` steps,
        at least a window, or a season's period when that is longer (an event disturbs the
        forecasts that read it, and the seasonal inputs one period later: one event, one alarm);
        with a season, a surprise that recurs at the same phase (within half a window) one
        period later does not alarm; the first ``settle`` steps never alarm. With ``values`` (the
        stream's steps, standardised here as in training) the evidence that reads the series
        itself: a new extreme of the series adds an alarm's worth of surprise (``extremes``);
        ``cycle`` (steps, e.g. a week): the distance to the same phase of the last three cycles
        (silent for its first ``cycle_warm`` steps); ``neighbours`` (steps): the distance of the
        latest subsequence of that length to its nearest earlier one; ``change`` (steps): a
        change in level or variance between the last ``change`` steps and the eight windows
        before them; each a surprise on its own history, the step's the largest
        (:class:`anomalib_lite.scoring.thresholds.SurpriseScore`, which takes ``options`` too). Never
        capped; comparable across series. NaN stays NaN. ``last_levels_``: each kind's surprise
        per step (``SurpriseScore.last_levels``), to explain an alarm or a miss."""
        prior = getattr(self, "holdout_scores_", None)  # (a bundle from before it: the calibration scores)
        prior = getattr(self, "calibration_scores_", None) if prior is None else prior
        season = getattr(self, "season_", 0)
        quiet = max(self.window, season, int(quiet))
        reach = min(self.window // 2, season - 1) if season else 0
        if values is not None:  # one scale per channel, the training data's
            values = np.asarray(values, dtype=np.float64)
            n, dim = len(np.ravel(scores)), int(self.input_shape_[0])
            if values.size != n * dim:
                raise AnomalyError(f"values: {values.size} values for {n} scores of a series of {dim} channel(s); "
                                   f"give the scored steps, one row of {dim} per score")
            values = self._scaled(values.reshape(n, dim))
        kw = dict(refractory=quiet, season=season, reach=reach, settle=settle, cycle=cycle,
                  span=max(1.0, float(getattr(self, "smoothing", 1.0))), cycle_warm=cycle_warm, extremes=extremes,
                  neighbours=neighbours, change=change)
        surprise = SurpriseScore(() if prior is None else prior, **{**kw, **options})
        out = surprise.update(scores, values)
        self.last_levels_ = surprise.last_levels
        return out

    def p_values(self, scores) -> np.ndarray:
        """p-values against the calibration scores, with a fitted exponential tail beyond them
        (:func:`anomalib_lite.scoring.thresholds.tail_p_values`); NaN scores give NaN. The tail is
        fitted once per set of calibration scores (a stream asks for one step's p-value at a time)."""
        cal, start = self._calibration_scores(), self._tail_start()
        kept = self.__dict__.get("_tail_of")
        if kept is None or kept[0] is not cal or kept[1] != start:
            kept = self._tail_of = (cal, start, fit_tail(self._tail_scale(cal), start=start))
        return tail_p_values(self._tail_scale(as_scores(scores)), None, tail=kept[2])

    def _tail_scale(self, scores: np.ndarray) -> np.ndarray:
        """Scores in the scale their tail is fitted in (threshold and p-values): as they are. A
        bounded score maps its bound away, so that a tail extrapolated past the largest
        calibration score stays inside it (:class:`SupervisedRNN`: probabilities as logits)."""
        return scores

    def _from_tail_scale(self, t: float) -> float:
        """A threshold found in :meth:`_tail_scale`'s scale, back in the scores' own."""
        return t

    def _tail_start(self) -> float | None:
        """Where the fitted tail of the threshold and p-values starts: :data:`TAIL_START`, a tail
        that anomalies among the calibration scores barely move; None (the counts decide up to
        the 10th largest score, as for images) where labels took the anomalies out of them
        (``clean_calibration_``). On the README's labelled sample, the robust tail flagged 0.13 %
        of the normal steps at a 1 % target, the counts 0.61 % (``benchmarks/labelled_sample.py``)."""
        return None if getattr(self, "clean_calibration_", False) else TAIL_START
