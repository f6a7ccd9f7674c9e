"""River's one-step API around the series detectors: ``score_one(x)`` then ``learn_one(x)``.

River (online machine learning) scores and learns one sample at a time, each a ``dict`` of
feature values::

    scorer = al.StreamScorer(al.Continuation(window=32))
    for x in stream:                     # x = {"value": 3.1} (or {"cpu": .., "mem": ..})
        score = scorer.score_one(x)      # higher = more anomalous; 0.0 until a score exists
        scorer.learn_one(x)

:class:`StreamScorer` keeps a series detector's stream going one step at a time. ``score_one``
moves the stream on by the step and remembers it, so the ``learn_one`` of the same step only learns
(a Continuation's test-then-train: the scores equal those of ``partial_fit`` on the whole stream);
``learn_one`` alone scores and learns. A detector not fitted yet learns its first ``warm_up`` steps
(Continuation) before it scores. A fitted ``SupervisedRNN`` learns offline from labelled series:
its ``learn_one`` only moves the stream on.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..errors import AnomalyError, shown

__all__ = ["StreamScorer"]


class StreamScorer:
    """``learn_one`` / ``score_one`` over a series detector (Continuation or SupervisedRNN).

    ``columns``: the dict keys read as channels, in order (default: the columns the detector was
    fitted on when it was fitted on a CSV, else the keys of the first sample, in their order).
    A sample may also be a number (one channel) or a sequence of numbers.
    """

    def __init__(self, detector, columns=None):
        if getattr(detector, "input_kind", None) != "series":
            raise AnomalyError(f"StreamScorer: {type(detector).__name__} is not a series detector "
                               "(Continuation or SupervisedRNN)")
        self.detector = detector
        self.columns = list(columns) if columns is not None else None
        self._scored = None  # (the step scored last, its flag): learn_one of the same step only learns

    def _step(self, x) -> np.ndarray:
        if isinstance(x, Mapping):
            if self.columns is None:
                info = getattr(self.detector, "data_info_", None) or {}
                self.columns = [c for c in (info.get("columns") or []) if c in x] or list(x)
            try:
                values = [x[c] for c in self.columns]
            except KeyError as e:
                raise AnomalyError(f"StreamScorer: the sample has no {e.args[0]!r}; columns are "
                                   f"{', '.join(map(str, self.columns))}") from None
        else:
            values = x if isinstance(x, (list, tuple, np.ndarray)) else [x]
        try:
            step = np.asarray(values, dtype=np.float64).reshape(1, -1)
        except (TypeError, ValueError):
            step = None
        if step is None or not np.isfinite(step).all():  # (off the one-step path: None became NaN)
            if step is None or any(v is None for v in np.ravel(np.asarray(values, dtype=object))):
                raise AnomalyError(f"StreamScorer: the sample is not a number or numbers ({shown(values, 80)})")
            raise AnomalyError(f"StreamScorer: the sample holds NaN or infinity ({values})")
        return step

    def score_one(self, x) -> float:
        """The anomaly score of ``x`` as the stream's next step (higher = more anomalous); 0.0
        until the detector is fitted and has seen a window of steps."""
        det = self.detector
        step = self._step(x)
        if not det._is_fitted() or getattr(det, "model_", None) is None:
            self._scored = None
            return 0.0
        score = float(det.decision_function(step)[0])
        flag = bool(det.flag([score])[0]) if det.can_flag() else False
        self._scored = (step, flag)
        return 0.0 if math.isnan(score) else score

    def learn_one(self, x) -> StreamScorer:
        """Learn from ``x`` (after ``score_one(x)``: without scoring it again)."""
        det = self.detector
        step = self._step(x)
        scored, self._scored = self._scored, None
        if not hasattr(det, "_learn_online"):  # learns offline only: move the stream on
            if scored is None or not np.array_equal(scored[0], step):
                self.score_one(x)
                self._scored = None
            return self
        if scored is not None and np.array_equal(scored[0], step) and det.model_ is not None:
            det._learn_online(step, np.array([scored[1]]))
        else:
            det.partial_fit(step)
        return self
