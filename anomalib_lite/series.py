"""What the series detectors (Continuation, SupervisedRNN) share.

* Inputs are time steps: :func:`anomalib_lite.data.iter_series` reads them; a sample is one step
  of D channels, scores are one per step, NaN until a detector has a full window of past steps.
* A stream state carries over from one ``score(chunk)`` to the next (the last steps, smoothing,
  moving thresholds): scoring a series at once or chunk by chunk gives the same scores, bit for
  bit, because networks always run on fixed-size blocks of windows (see :func:`run_blocks`).
  ``reset()`` starts a new stream; ``calibrate`` scores its data as a stream of its own and
  leaves the current stream where it was. A loaded bundle starts from a reset stream.
* ``flag(scores)`` turns scores into anomaly flags with the detector's threshold rule:
  ``"calibrated"`` (``threshold_`` from ``calibrate``), ``"moving"`` (mean + k*std of a moving
  window of past scores), ``"quantile"`` (a moving quantile) or ``"dynamic"`` (Telemanom, on the
  scores given at once); ``predict(data)`` is ``flag(score(data))``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import backbones

from .base import Detector
from .data import Batch, iter_series
from .errors import AnomalyError
from .thresholds import MovingThreshold, dynamic_threshold, fpr_threshold, p_values

__all__ = ["THRESHOLDS", "ForecastNet", "SequenceNet", "SeriesDetector", "run_blocks"]

THRESHOLDS = ("calibrated", "moving", "quantile", "dynamic")
_BLOCK = 32  # windows per forward pass


@torch.no_grad()
def run_blocks(model: nn.Module, windows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``model(windows)`` on blocks of exactly ``_BLOCK`` windows (the last one zero-padded), so
    a window's output is bit-identical whatever windows share its block; results on the CPU."""
    out = []
    for i in range(0, len(windows), _BLOCK):
        n = min(_BLOCK, len(windows) - i)
        block = windows.new_zeros((_BLOCK, *windows.shape[1:]))  # always a fresh contiguous block
        block[:n] = windows[i : i + n]
        out.append(model(block.to(device))[:n].float().cpu())
    return torch.cat(out) if out else windows.new_empty((0,))


class _CausalConv(nn.Module):
    """A residual block of two dilated causal convolutions (kernel 3)."""

    def __init__(self, c_in: int, c_out: int, dilation: int, dropout: float):
        super().__init__()
        self.pad = 2 * dilation
        self.conv1 = nn.Conv1d(c_in, c_out, 3, dilation=dilation)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, dilation=dilation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.conv1(nn.functional.pad(x, (self.pad, 0)))))
        h = self.drop(torch.relu(self.conv2(nn.functional.pad(h, (self.pad, 0)))))
        return torch.relu(h + self.skip(x))


class _Encoder(nn.Module):
    """(B, W, D) windows -> (B, hidden) summary: the last state of an LSTM/GRU, or the last step of
    a temporal CNN whose dilations (1, 2, 4, ...) cover the window."""

    def __init__(self, kind: str, d_in: int, hidden: int, layers: int, dropout: float, window: int):
        super().__init__()
        self.kind = kind
        if kind in ("lstm", "gru"):
            rnn = nn.LSTM if kind == "lstm" else nn.GRU
            self.net = rnn(d_in, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        else:
            blocks, d, reach = [], 1, 1
            while reach < window:
                blocks.append(_CausalConv(d_in if not blocks else hidden, hidden, d, dropout))
                reach += 4 * d
                d *= 2
            self.net = nn.Sequential(*blocks) if blocks else nn.Conv1d(d_in, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind in ("lstm", "gru"):
            return self.net(x)[0][:, -1]
        return self.net(x.transpose(1, 2))[:, :, -1]


class ForecastNet(nn.Module):
    """Predicts the next ``horizon`` steps (B, H, D) from a window (B, W, D) as changes from the
    window's last value. ``relative=True`` also reads the window relative to that value: shifting
    a window shifts its forecast, so after a level shift only the change itself is a surprise
    (right for raw measurements; wrong for embeddings, whose absolute values carry the content)."""

    def __init__(self, kind: str, d_in: int, hidden: int, layers: int, dropout: float, window: int, horizon: int,
                 relative: bool = True):
        super().__init__()
        self.horizon, self.d_in, self.relative = horizon, d_in, relative
        self.encoder = _Encoder(kind, d_in, hidden, layers, dropout, window)
        self.head = nn.Linear(hidden, horizon * d_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x[:, -1:, :]
        seen = x - last if self.relative else x
        return last + self.head(self.encoder(seen)).view(-1, self.horizon, self.d_in)


class SequenceNet(nn.Module):
    """One logit per window (B, W, D) -> (B,)."""

    def __init__(self, kind: str, d_in: int, hidden: int, layers: int, dropout: float, window: int):
        super().__init__()
        self.encoder = _Encoder(kind, d_in, hidden, layers, dropout, window)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))[:, 0]


class SeriesDetector(Detector):
    """Base of the series detectors: reading steps, the stream state, flags and calibration."""

    input_kind = "series"
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

    def _resolve_device(self) -> torch.device:
        try:
            return backbones.resolve_device(self.device)
        except backbones.BackboneError as e:
            raise AnomalyError(str(e)) from None

    def _set_scaler(self, series: np.ndarray) -> None:
        """Mean and std per channel (``scaling="channel"``: channels in their own units) or one
        for all (``"global"``: embeddings, where near-constant channels must not dominate)."""
        if getattr(self, "scaling", "channel") == "global":
            mean = np.full(series.shape[1], series.mean(dtype=np.float64))
            std = np.full(series.shape[1], series.std(dtype=np.float64))
        else:
            mean, std = series.mean(0, dtype=np.float64), series.std(0, dtype=np.float64)
        self.scaler_mean_, self.scaler_std_ = mean, np.where(std > 0, std, 1.0)

    def _check_scaling(self) -> None:
        if self.scaling not in ("channel", "global"):
            raise AnomalyError(f"scaling='{self.scaling}': unknown; use 'channel' or 'global'")

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        """Values standardised with the training mean and std (float32)."""
        return ((x - self.scaler_mean_) / self.scaler_std_).astype(np.float32)

    # ------------------------------------------------------------------ stream state
    def _new_stream(self):
        raise NotImplementedError

    def reset(self) -> SeriesDetector:
        """Start a new stream: forget the past steps, smoothing and moving-threshold state."""
        self._stream = self._new_stream() if self._is_fitted() else None
        return self

    def _moving_threshold(self) -> MovingThreshold | None:
        mode = getattr(self, "threshold", "calibrated")
        if mode not in ("moving", "quantile"):
            return None
        return MovingThreshold(
            "std" if mode == "moving" else "quantile", self.threshold_window, self.threshold_k, self.threshold_q,
            floor=self._score_floor,
        )

    # ------------------------------------------------------------------ thresholds
    def calibrate(self, normal, fpr: float = 0.01) -> SeriesDetector:
        """Set ``threshold_`` from the scores of a normal series, scored as a stream of its own
        (the current stream is left as it was); its first ``window`` steps have no score."""
        self._require_fitted()
        kept = self._stream
        self.reset()
        try:
            scores = self.score(normal)
        finally:
            self._stream = kept
        finite = scores[np.isfinite(scores)]
        if finite.size == 0:
            raise AnomalyError(
                f"calibration data: a series of {len(scores)} steps gives no score; it must be longer "
                f"than window={self.window}"
            )
        self.threshold_ = fpr_threshold(finite, fpr)
        self.fpr_ = float(fpr)
        self.calibration_scores_ = np.sort(finite)
        return self

    def flag(self, scores) -> np.ndarray:
        """Anomaly flags for scores (in stream order) under the ``threshold`` rule; NaN is never
        flagged. The moving rules carry their window over from call to call (reset by ``reset``)."""
        self._require_fitted()
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        mode = getattr(self, "threshold", "calibrated")
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
        return getattr(self, "threshold", "calibrated") != "calibrated" or self.threshold_ is not None

    def predict(self, data) -> np.ndarray:
        """``flag(score(data))``: like ``score``, it continues the stream."""
        self._require_fitted()
        if not self.can_flag():
            self._require_calibrated()
        return self.flag(self.score(data))

    def targets(self, labels) -> np.ndarray:
        """What the scores should rank high, from 0/1 anomaly labels per step: the labels."""
        return np.asarray(labels, dtype=np.int64)

    def unit_scores(self, scores) -> np.ndarray:
        """Scores mapped to [0, 1] (NAB's results format): 1 - p-value against the calibration
        scores, so the mapping is the same for every series; NaN stays NaN."""
        return 1.0 - self.p_values(scores)

    def p_values(self, scores) -> np.ndarray:
        """Conformal p-values against the calibration scores; NaN scores give NaN."""
        if getattr(self, "calibration_scores_", None) is None:
            raise AnomalyError(f"{self._name} has no calibration scores: call calibrate(normal_series) first")
        return p_values(scores, self.calibration_scores_)
