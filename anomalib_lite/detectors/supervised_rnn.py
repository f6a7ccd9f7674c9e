"""SupervisedRNN: early warning learned from labelled series.

Labels are 0/1 per step (1 = anomalous); an anomaly starts where a 1 follows a 0. An LSTM or GRU
reads the series step by step (each value and, with ``changes``, its change from the step before),
its state carried over the whole stream, and outputs after each
step t the probability that an anomaly starts within (t, t + ``horizon``] (``horizon=0``: that one
starts at t, i.e. detection). It trains on crops of the series whose first ``window`` steps warm
the state up; the last ``horizon`` steps of a training series have unknown targets and are not
trained on. Training is weighted against class imbalance (``pos_weight``, default: negatives /
positives), and early stopping holds out the *last* ``val_fraction`` of the crops: splits are by
time, never at random. With the balanced loss 0.5 is the natural decision point (``threshold_``
after ``fit``); the score is a ranking, not a calibrated probability. Scores are NaN for the
first ``window - 1`` steps. One new step costs one step of the network (numpy, see
:mod:`anomalib_lite.detectors.series`).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .. import validate as v
from .base import RUN_CHECKS, Capabilities, register
from ..data.batches import Batch
from ..errors import AnomalyError
from ..scoring.metrics import early_warning_labels, onsets
from ..scoring.thresholds import as_scores
from .series import CROP_SPAN, SERIES_CHECKS, STEP_CHUNK, SeriesDetector, training_crops
from ..components.series_nets import StreamNet
from ..training.loop import TrainConfig, fit_model, history

__all__ = ["SupervisedRNN"]

_NETWORKS = ("lstm", "gru")
_TOP = float(np.nextafter(1.0, 0.0))  # (the largest probability below 1: a logit of 36.7; 1 itself maps there)


class _Stream:
    def __init__(self, det: SupervisedRNN):
        self.seen = 0
        self.state = det.model_.encoder.zero_state(1)
        self.last = None  # the previous step's values (for its change)


@register
class SupervisedRNN(SeriesDetector):
    """Per-step probability that an anomaly starts within the next ``horizon`` steps.

    Parameters
    ----------
    window : int, default 64
        Steps read before the first prediction (NaN scores until then).
    horizon : int, default 20
        Warning span in steps (0 = detect at the onset).
    network : {"lstm", "gru"}, default "lstm"
    hidden : int, default 32
    num_layers : int, default 1
    dropout : float, default 0.0
    scaling : {"channel", "global"}, default "channel"
    changes : bool, default True
        Also read each step's change from the step before (standardised on its own). A
        precursor that shows in how the series moves (growing jitter, a new slope) rather than
        in its level is then as plain to the network as a level is: on the sample labelled
        series, whose precursor is growing jitter, values alone are near chance
        (``benchmarks/rnn_inputs.py``).
    pos_weight : float or None, default None
        Weight of positive steps in the loss (None: negatives / positives).
    fpr : float or None, default None
        None: ``threshold_`` is 0.5, the balanced loss's decision point (not a calibrated
        probability: with little to learn, most scores sit near it). A rate: ``threshold_`` is
        set after training so that about this share of normal steps alarm (conformal, as
        ``calibrate`` does), from the scores of the training series' last ``val_fraction``, which
        the weights did not learn from, at its normal steps (no anomaly, none starting within
        ``horizon``): their counts up to the 10th largest, past it an exponential tail fitted to
        their logits, which stays below 1 (``benchmarks/rnn_fpr.py``); p-values then come with
        the scores.
    epochs : int, default 30
        Passes over the training windows (at most: early stopping and ``max_time`` end it
        sooner; ``$ANOMALY_MAX_EPOCHS`` caps it).
    batch_size : int, default 64
        Windows per optimisation step.
    lr : float, default 3e-3
        Learning rate (AdamW). 3e-3 rather than 1e-3: with a few dozen onsets, early stopping
        ends training within a few epochs, before 1e-3 has learned a precursor
        (``benchmarks/rnn_inputs.py``: +4.7 to +14.8 ROC-AUC on every precursor kind).
    patience : int or None, default 5
        Epochs without a better validation loss before training stops (None: all epochs).
    val_fraction : float, default 0.2
        The last share of the windows, in time, held out to measure that loss.
    max_time : float or None, default None
        Training time budget in seconds (training stops before the step that would cross it).
    contamination, device, seed, verbose
        The run parameters every detector has (:class:`~anomalib_lite.detectors.base.Detector`).
    threads : int or None, default None

    Attributes
    ----------
    model_ : anomalib_lite.components.series_nets.StreamNet
    scaler_mean_, scaler_std_ : ndarray of shape (D,), or (2 D,) with ``changes`` (the values' then the changes')
    history_ : anomalib_lite.training.loop.TrainResult
    threshold_ : float
        0.5 after ``fit`` (the balanced loss's natural decision point), or with ``fpr`` the
        threshold calibrated on the validation tail (``calibration_scores_``: its normal steps' scores).

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import SupervisedRNN
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=400), np.zeros(400, int)
    >>> for onset in (100, 250, 350):
    ...     x[onset - 5 : onset] += 3  # a precursor, then the anomaly
    ...     y[onset : onset + 5] = 1
    >>> det = SupervisedRNN(window=8, horizon=5, epochs=2, device="cpu").fit(x, y)
    >>> det.decision_function(x).shape
    (400,)
    """

    capabilities = Capabilities(calibrates=False, early_warning=True)
    command = "rnn"  # `anomaly fit rnn`
    cli_examples = ('--data data/labelled.csv --label-column anomaly --horizon 20 -o warn.anomaly',)
    quick_params = {"window": 4, "horizon": 1, "hidden": 4, "epochs": 1}

    _param_checks = {
        **SERIES_CHECKS,
        "horizon": v.integer(0, 100_000),
        "network": v.one_of(*_NETWORKS),
        "changes": v.boolean(),
        "pos_weight": v.none_or(v.number(0, 1e9, lo_open=True)),
        "fpr": v.none_or(v.number(0, 1, lo_open=True, hi_open=True)),
        **RUN_CHECKS,
    }
    _fitted_checks = {"history_": v.none_or(history), "onsets_": v.integer(0, 1 << 62)}
    _supervised = True
    _learned = ("model_", "scaler_mean_", "scaler_std_")
    _params_added = {"changes": False, "fpr": None}  # what bundles written before them did

    def __init__(
        self,
        window: int = 64,
        horizon: int = 20,
        network: str = "lstm",
        hidden: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
        scaling: str = "channel",
        changes: bool = True,
        pos_weight: float | None = None,
        fpr: float | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 3e-3,
        patience: int | None = 5,
        val_fraction: float = 0.2,
        max_time: float | None = None,
        contamination: float | None = None,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
        threads: int | None = None,
    ):
        self.window = window
        self.horizon = horizon
        self.network = network
        self.hidden = hidden
        self.num_layers = num_layers
        self.dropout = dropout
        self.scaling = scaling
        self.changes = changes
        self.pos_weight = pos_weight
        self.fpr = fpr
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

    def _net(self, dim: int, device=None) -> StreamNet:
        return self._build_net(lambda: StreamNet(self.network, dim, self.hidden, self.num_layers, self.dropout,
                                                 self.window, 1), device)

    def _build(self, dim: int) -> None:
        self.model_ = self._net(dim)
        self._stepper = None

    def _check_more(self) -> None:
        if self.fpr is not None and self.contamination is not None:
            raise AnomalyError("fpr and contamination both set the threshold: give one (fpr: on the validation tail)")
        if self.fpr is not None and not self.val_fraction:
            raise AnomalyError("fpr: calibrates on the validation tail, so it needs val_fraction > 0")

    def _width(self) -> int:
        """Channels the network reads: the values, and their changes with ``changes``."""
        return int(self.input_shape_[0]) * (2 if self.changes else 1)

    def _build_learned(self, device) -> dict:
        return {"model_": self._net(self._width(), device)}

    def _learned_arrays(self) -> dict:
        return {name: ((self._width(),), torch.float64, "numpy") for name in self._learned[1:]}

    def _set_scaler(self, series: np.ndarray) -> None:
        """The values' scaling (``scaling``), then with ``changes`` the changes' own, so steps of
        jitter are not measured against the span of the level."""
        super()._set_scaler(series)
        if self.changes:
            mean, std = self.scaler_mean_, self.scaler_std_
            super()._set_scaler(self._inputs(series, None)[:, series.shape[1]:])
            self.scaler_mean_ = np.concatenate([mean, self.scaler_mean_])
            self.scaler_std_ = np.concatenate([std, self.scaler_std_])

    def _inputs(self, x: np.ndarray, last: np.ndarray | None) -> np.ndarray:
        """What the network reads of steps ``x`` (n, D): the values, then with ``changes`` each
        step's change from the one before (``last``: the stream's previous step; none before
        the first step, whose change is 0)."""
        if not self.changes:
            return x
        before = np.concatenate([x[:1] if last is None else last[None], x[:-1]])
        return np.concatenate([x, x - before], axis=1)

    def _reset(self) -> None:
        self.device_ = self._resolve_device()
        self.model_ = None
        self.scaler_mean_ = self.scaler_std_ = None
        self.history_ = None
        self._chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._stream = None
        self._stepper = None

    def _new_stream(self) -> _Stream:
        return _Stream(self)

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
        x = torch.cat([c[0] for c in self._chunks]).double().numpy()
        y = torch.cat([c[1] for c in self._chunks]).numpy()
        self._chunks = []
        w, h = self.window, self.horizon
        n_known = len(x) - h  # steps whose target is known
        if n_known - (w - 1) < 2:
            raise AnomalyError(f"data: a series of {len(x)} steps is too short for window + horizon = {w + h}")
        target = early_warning_labels(y, h).astype(np.float64)
        target[n_known:] = np.nan
        n_pos = int(np.nansum(target[w - 1 :]))
        if n_pos == 0:
            raise AnomalyError(
                f"data: no anomaly starts in the labels ({int(y.sum())} anomalous steps); nothing to warn of"
            )
        n_neg = int(np.sum(target[w - 1 :] == 0))
        self._set_scaler(x)
        values, x = x, self._inputs(x, None)
        self._build(x.shape[1])
        burn = w - 1  # the first step with a score has window - 1 steps before it
        # a crop at every step, however long the series (Continuation's crop_plan was no better
        # here: BENCHMARKS.md, "SupervisedRNN early warning", 2026-12-07)
        span = min(CROP_SPAN, len(x) - burn)
        xs, ys = training_crops(self._scaled(x), target[:, None], burn, span, 1)
        weight = torch.tensor(self.pos_weight if self.pos_weight is not None else n_neg / n_pos)

        def loss(model, step):
            logit = model(step.x)[0][:, burn:, 0]
            t = step.y[:, burn:, 0]
            ok = torch.isfinite(t)
            if not bool(ok.any()):
                return (logit * 0.0).sum()
            return torch.nn.functional.binary_cross_entropy_with_logits(
                logit[ok], t[ok], pos_weight=weight.to(logit.device)
            )

        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                          val_fraction=self.val_fraction, val_split="tail", max_time=self.max_time,
                          seed=self.seed, verbose=self.verbose).check()
        self.history_ = fit_model(self.model_, loss, xs, ys, cfg, self.device_, desc="fit")
        self.onsets_ = int(len(onsets(y)))
        self.model_.eval()
        self._stepper = None
        self.threshold_ = 0.5
        if self.fpr is not None:
            self._calibrate_on_tail(values, y, target)
        self.reset()

    def _calibrate_on_tail(self, values: np.ndarray, y: np.ndarray, target: np.ndarray) -> None:
        """``threshold_`` at ``fpr`` from the normal steps of the training series' validation
        tail (its last ``val_fraction`` of scored steps; the whole series, in-sample, without
        one), scored as one stream: their counts, and past the 10th largest an exponential tail
        of their logits (:meth:`_tail_scale`, :meth:`_tail_start`)."""
        self.reset()
        scores = self._score_steps(values)
        first = self.window - 1
        known = int(np.sum(np.isfinite(target[first:])))
        start = first + known - int(round(self.val_fraction * known))
        normal = np.zeros(len(values), dtype=bool)
        normal[start:] = True
        normal &= (target == 0) & (y == 0) & np.isfinite(scores)
        if not normal.any():
            raise AnomalyError(f"fpr: the last {self.val_fraction:g} of the series holds no normal step to calibrate on")
        self._set_threshold(scores[normal], self.fpr, clean=True)
        if self.threshold_ >= 1.0:  # (a logit past float64's last step below 1)
            warnings.warn(f"fpr={self.fpr:g}: the threshold lies at a probability of 1, so nothing will be flagged "
                          f"(the tail fitted to the largest of {int(normal.sum()):,} calibration scores reaches it); "
                          "give a larger fpr, or more normal steps to calibrate on (a longer series, val_fraction)",
                          stacklevel=4)

    def _tail_start(self) -> None:
        """The counts decide up to the 10th largest calibration score: the labels took the
        anomalies and the steps before them out of those scores (as a labelled Continuation's)."""
        return None

    def _tail_scale(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities as logits, the network's output before its sigmoid: an exponential tail
        fitted to probabilities passes 1 at small rates (where nothing is flagged), one fitted to
        logits stays below it (``benchmarks/rnn_fpr.py``)."""
        p = np.clip(scores, 1e-300, _TOP)
        return np.log(p) - np.log1p(-p)

    def _from_tail_scale(self, t: float) -> float:
        return float(1.0 / (1.0 + np.exp(-t)))

    # ------------------------------------------------------------------ scoring
    def _score_steps(self, x: np.ndarray) -> np.ndarray:
        if self._stream is None:
            self.reset()
        st, n = self._stream, len(x)
        z = self._scaled(self._inputs(x, st.last))
        st.last = x[-1].copy()
        if n <= STEP_CHUNK:
            if self._stepper is None:
                self._stepper = self.model_.stepper()
            logit = np.array([self._stepper.step(zi, st.state)[0] for zi in z])
        else:
            with torch.inference_mode():
                out, state = self.model_(torch.from_numpy(z[None].astype(np.float32)).to(self.device_), st.state)
            st.state = [s.double().cpu().numpy() for s in state]
            logit = out[0, :, 0].double().cpu().numpy()
        prob = 1.0 / (1.0 + np.exp(-logit))
        prob[: max(0, self.window - 1 - st.seen)] = np.nan
        st.seen += n
        return prob

    def summary(self) -> str:
        at = ("" if self.fpr is None else
              f"; threshold {self.threshold_:.3g} at fpr {self.fpr:g} on {len(self.calibration_scores_)} normal steps of its end")
        trained = super().summary()
        return f"{self.onsets_} anomaly onsets, horizon {self.horizon}{at}" + (f"; {trained}" if trained else "")

    def targets(self, labels) -> np.ndarray:
        """1 where an anomaly starts within the horizon: what the scores should rank high."""
        return early_warning_labels(labels, self.horizon)

    def unit_scores(self, scores, values=None, **options) -> np.ndarray:
        """The scores themselves: they already lie in [0, 1] (``values`` and the other options of
        :meth:`SeriesDetector.unit_scores` do not apply: a supervised probability needs no likelihood)."""
        return as_scores(scores)
