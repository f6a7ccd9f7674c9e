"""Thresholds: turning scores into decisions without labels.

The threshold is set on scores of held-out *normal* data at a target false positive rate, in the
conformal way: a score ``s`` gets the p-value ``(1 + #{s_i >= s}) / (n + 1)`` against the n
calibration scores, and ``s > threshold`` exactly when that p-value is at most ``fpr``. On
exchangeable data this bounds the false positive rate by ``fpr``.

A conformal p-value cannot go below ``1 / (n + 1)``: every score above the largest calibration
score gets that same value. The series detectors rank further: :func:`tail_p_values` fits an
exponential tail (a generalised Pareto tail of shape 0, the peaks-over-threshold model of extreme
value theory) to the calibration scores (by default to their top tenth; a series detector's
between their top 20 % and 10 %, which anomalies among them barely move: :func:`fit_tail`) and
continues the p-value past the largest ones, so a more extreme score always gets a smaller
p-value; :func:`tail_threshold` is the matching threshold, which also reaches rates that a small
calibration set cannot certify.

For series and streams two label-free alternatives: :func:`dynamic_threshold` (Telemanom's
non-parametric search over mean + z*std with pruning, on a batch of smoothed errors) and
:class:`MovingThreshold` (mean + k*std or a quantile of a moving window of past scores).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import AnomalyError, shown
from .evidence import Change, Cycle, Likelihood, Neighbours
from ..components.streaming import MovingWindow

__all__ = ["MovingThreshold", "SurpriseScore", "as_scores", "check_fpr", "check_scores", "drift", "dynamic_threshold",
           "fit_tail", "fpr_threshold", "p_values", "tail_p_values", "tail_threshold"]


def as_scores(scores, where: str = "scores") -> np.ndarray:
    """Scores as a float64 array of their own shape (NaN kept: a series' first window has none),
    or one AnomalyError for what is not numbers (text, a dict, ragged lists)."""
    try:
        return np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise AnomalyError(f"{where}: not numbers (got {shown(scores, 60)})") from None


def check_scores(scores, where: str = "scores") -> np.ndarray:
    """1-D float64 array of finite scores, or AnomalyError."""
    s = as_scores(scores, where).reshape(-1)
    if s.size == 0:
        raise AnomalyError(f"{where}: no scores")
    if not np.isfinite(s).all():
        raise AnomalyError(f"{where}: score {int(np.flatnonzero(~np.isfinite(s))[0])} is not finite")
    return s


def check_fpr(fpr) -> float:
    """A target false-positive rate: a number in (0, 1), or one AnomalyError (a string from a
    config, a bool, 0 or 1)."""
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float, np.number)) or not 0 < fpr < 1:
        raise AnomalyError(f"fpr: must be a number in (0, 1), got {shown(fpr, 40)}")
    return float(fpr)


def fpr_threshold(normal_scores, fpr: float = 0.01, hint: str = "") -> float:
    """The smallest threshold whose conformal p-value test flags at most ``fpr`` of normals.

    Needs at least ``1/fpr - 1`` calibration scores to reach the rate; with fewer it returns the
    largest normal score (flagging only what exceeds every normal) and warns (``hint``: what the
    caller can do about it, appended).
    """
    fpr = check_fpr(fpr)
    s = np.sort(check_scores(normal_scores, "calibration scores"))[::-1]
    allowed = int(np.floor(fpr * (len(s) + 1) + 1e-9)) - 1  # calibration scores allowed >= s
    if allowed < 0:
        warnings.warn(
            f"fpr={fpr:g} is below what {len(s)} calibration scores can certify: the smallest is "
            f"1/{len(s) + 1} = {1 / (len(s) + 1):.3g} (fpr={fpr:g} needs {int(np.ceil(1 / fpr - 1))} normal samples); "
            f"threshold = the largest normal score{hint}",
            stacklevel=2,
        )
        return float(s[0])
    return float(s[min(allowed, len(s) - 1)])


def p_values(scores, calibration_scores) -> np.ndarray:
    """Conformal p-values ``(1 + #{c >= s}) / (n + 1)``: small means unlike the normal data.
    A NaN score (a series still warming up) has a NaN p-value."""
    cal = np.sort(check_scores(calibration_scores, "calibration scores"))
    s = as_scores(scores)
    n_ge = len(cal) - np.searchsorted(cal, s, side="left")
    return np.where(np.isnan(s), np.nan, (1.0 + n_ge) / (len(cal) + 1.0))


#: :func:`drift`: the p-value level, and the fewest samples it judges
DRIFT_LEVEL, DRIFT_MIN_SAMPLES = 0.25, 20


def drift(p) -> dict | None:
    """Whether a batch still looks like the data its threshold was calibrated on.

    Against data exchangeable with the calibration set, a conformal p-value is at most 1/4 for
    about a quarter of the samples. When more than half of a batch of 20 or more are, the batch is
    mostly anomalous, or it drifted (good parts from another batch of material, another light):
    then the threshold's false-positive rate is no longer guaranteed for its normal samples (it
    may still be met, when the drift is small beside the threshold). By chance that happens to
    under 2.5 % of batches of 20 against 20 calibration scores, under 0.6 % against 100.
    Returns ``{"n", "low", "share"}`` (``low``: samples with p <= 1/4) when it happens, else None.
    NaN p-values (a series warming up) are left out.
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    p = p[~np.isnan(p)]
    low = int(np.sum(p <= DRIFT_LEVEL))
    if p.size < DRIFT_MIN_SAMPLES or 2 * low <= p.size:
        return None
    return {"n": int(p.size), "low": low, "share": low / p.size}


def fit_tail(calibration_scores, start: float | None = None) -> tuple[np.ndarray, int, float, float]:
    """Sorted calibration scores, m, a (the m-th largest score, where the fitted tail takes over
    from the counts) and beta (the exponential tail's scale).

    ``start=None``: m = min(10, n - 1), beta the mean excess of the top tenth of the scores (at
    least 5) over the score just below them. ``start`` (a share, e.g. 0.2): a tail that
    anomalies among the calibration scores (a series' training steps hold what its data holds)
    move little: a is the score above which the top ``start`` lie, and beta is set by the step
    from there to the top ``start / 2`` (the scores' own exponential decay between the two), so
    how large the scores above the top ``start / 2`` are does not matter, only how many there
    are (5 % anomalies among exponential scores move the 1 % threshold from 4.6 to 6.9; the
    default tail's goes past 15). Below 20 scores, as ``start=None``."""
    cal = np.sort(check_scores(calibration_scores, "calibration scores"))
    n = len(cal)
    if n < 2:  # one score: no tail to fit; a scale from its size
        return cal, 1, float(cal[-1]), max(abs(float(cal[-1])), 1e-12)
    if start is not None and n >= 20:
        m = max(4, int(round(start * n)))
        half = -(-m // 2)
        a = float(cal[n - m])
        beta = (float(cal[n - half]) - a) / float(np.log(m / half))
        return cal, m, a, max(beta, 1e-9 * max(1.0, abs(a)))
    k = min(n - 1, max(5, int(np.ceil(0.1 * n))))
    beta = float(np.mean(cal[n - k :] - cal[n - k - 1]))
    m = min(10, n - 1)
    a = float(cal[n - m])
    return cal, m, a, max(beta, 1e-9 * max(1.0, abs(a)))


def tail_p_values(scores, calibration_scores, tail: tuple | None = None) -> np.ndarray:
    """p-values that keep ranking past the largest calibration score: conformal
    ``(1 + #{c >= s}) / (n + 1)`` up to the m-th largest score a (m = 10, or n - 1 for fewer
    scores), beyond it ``m / (n + 1) * exp(-(s - a) / beta)``, beta the mean excess of the top
    tenth of the scores (an exponential tail: a generalised Pareto tail of shape 0). Strictly
    decreasing past a; NaN gives NaN. ``tail``: :func:`fit_tail` of the calibration scores,
    when the caller keeps it (a stream's p-values, one step at a time), or another fit of them
    (``fit_tail(..., start=)``)."""
    cal, m, a, beta = tail if tail is not None else fit_tail(calibration_scores)
    n = len(cal)
    s = as_scores(scores)
    n_ge = n - np.searchsorted(cal, s, side="left")
    with np.errstate(over="ignore", invalid="ignore"):
        tail = m / (n + 1.0) * np.exp(-(s - a) / beta)
    p = np.where(s > a, tail, (1.0 + n_ge) / (n + 1.0))
    return np.where(np.isnan(s), np.nan, p)


def tail_threshold(calibration_scores, fpr: float = 0.01, start: float | None = None) -> float:
    """The threshold matching :func:`tail_p_values` (with ``fit_tail(..., start)``): ``s >
    threshold`` exactly when its p-value is at most ``fpr``: conformal (:func:`fpr_threshold`)
    where the counts decide (``fpr`` at or above the tail's share), the fitted tail where they
    do not (no warning, and no falling back to the largest score)."""
    fpr = check_fpr(fpr)
    cal, m, a, beta = fit_tail(calibration_scores, start)
    n = len(cal)
    if fpr * (n + 1) >= m:
        return fpr_threshold(cal, fpr)
    return a + beta * float(np.log(m / ((n + 1.0) * fpr)))


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def dynamic_threshold(
    errors, z_range: tuple[float, float] = (2.5, 12.0), z_step: float = 0.5, prune: float = 0.13
) -> tuple[float, np.ndarray]:
    """Telemanom's threshold (Hundman et al. 2018) on a batch of smoothed errors.

    Among ``mean + z*std`` for z in ``z_range``, pick the one whose removal of the points above it
    lowers the mean and std of the rest the most per flagged point and sequence:
    ``(dmean/mean + dstd/std) / (n_flagged + n_sequences**2)``; at most half the points may be
    flagged. Then prune: sort the flagged sequences by their peak, append the largest unflagged
    error, and unflag the sequences after the last peak that is at least ``prune`` (13 %) above
    the next. Returns ``(threshold, flags)``; NaN errors are never flagged.
    """
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    finite = np.isfinite(e)
    v = e[finite]
    flags = np.zeros(e.shape, dtype=bool)
    if v.size < 2 or v.std() == 0:
        return float("inf"), flags
    mu, sd = v.mean(), v.std()
    best, eps_best = -np.inf, np.inf
    for z in np.arange(z_range[0], z_range[1] + 1e-9, z_step):
        eps = mu + z * sd
        above = v > eps
        n_above = int(above.sum())
        if n_above == 0 or n_above >= 0.5 * v.size:
            continue
        rest = v[~above]
        gain = (mu - rest.mean()) / max(abs(mu), 1e-12) + (sd - rest.std()) / sd
        score = gain / (n_above + len(_runs(above)) ** 2)
        if score > best:
            best, eps_best = score, eps
    if not np.isfinite(eps_best):
        return float(mu + z_range[1] * sd), flags
    flags = finite & (np.nan_to_num(e, nan=-np.inf) > eps_best)
    runs = _runs(flags)
    peaks = np.array([e[a:b].max() for a, b in runs])
    order = np.argsort(-peaks, kind="stable")
    ladder = np.append(peaks[order], e[finite & ~flags].max(initial=0.0))
    drops = (ladder[:-1] - ladder[1:]) / np.maximum(ladder[:-1], 1e-12)
    big = np.flatnonzero(drops >= prune)
    keep = 0 if big.size == 0 else int(big[-1]) + 1  # sequences ranked below this are pruned
    for rank in order[keep:]:
        a, b = runs[rank]
        flags[a:b] = False
    return float(eps_best), flags


class MovingThreshold:
    """A streaming threshold from the previous ``window`` finite scores.

    ``method="std"``: flag when the score exceeds mean + ``k`` * std of the window;
    ``method="quantile"``: when it exceeds the window's ``q`` quantile. Each score is judged
    against the scores before it (test, then learn), then joins the window; NaN scores are
    never flagged and never join. Nothing is flagged before ``min_count`` scores were seen, nor
    at or below ``floor`` (scores in known units: a floor keeps float noise on a flat series from
    being flagged).
    """

    def __init__(self, method: str = "std", window: int = 1000, k: float = 4.0, q: float = 0.99,
                 min_count: int | None = None, floor: float = -np.inf):
        if method not in ("std", "quantile"):
            raise AnomalyError(f"moving threshold method '{method}': unknown; use 'std' or 'quantile'")
        if not isinstance(window, int) or window < 2:
            raise AnomalyError(f"threshold_window={window!r}: must be an integer >= 2")
        if not 0 < q < 1:
            raise AnomalyError(f"threshold_q={q}: must be in (0, 1)")
        self.method, self.k, self.q, self.floor = method, float(k), float(q), float(floor)
        self.min_count = min(window, 30) if min_count is None else int(min_count)
        self.window = MovingWindow(window)

    def current(self) -> float:
        """The threshold the next score will be judged against (inf while warming up)."""
        w = self.window
        if len(w) < max(self.min_count, 1):
            return float("inf")
        t = w.mean() + self.k * w.std() if self.method == "std" else w.quantile(self.q)
        return max(t, self.floor)

    def update(self, scores) -> np.ndarray:
        """Flags for ``scores`` in order; each then joins the window."""
        s = as_scores(scores).reshape(-1)
        flags = np.zeros(s.shape, dtype=bool)
        for i, v in enumerate(s.tolist()):
            if np.isnan(v):
                continue
            flags[i] = v > self.current()
            self.window.push(v)
        return flags



class SurpriseScore:
    """NAB's [0, 1] anomaly score, online, from a stream of a detector's scores and other evidence.

    HTM's anomaly likelihood (Ahmad et al. 2017, the detector behind NAB's scoreboard), on the
    detector's smoothed scores: the surprise of a step is ``L = -log10 p``, p the Gaussian tail
    probability of its score under the mean and standard deviation of the previous ``history``
    scores (the long-run distribution, seeded with ``prior``: the calibration scores;
    :class:`anomalib_lite.scoring.evidence.Likelihood`). Scores in units of each series' own typical error
    become tail probabilities, which compare across series: NAB chooses one threshold for all of
    them. Then HTM's filter keeps alarms short: a step at or above ``alarm`` (p <= 1e-5, HTM's
    "red") alarms only if the step before did not, and none within ``refractory`` steps after the
    last alarm does (one event, one alarm: NAB rewards the first detection in a window and charges
    every one outside); such steps are held at ``rest`` (p = 1e-3, HTM's "yellow"). The output
    ``L / (L + scale)`` is strictly increasing in L and never reaches 1: no cap, however extreme
    the step. NaN scores give NaN (and leave the state alone); the result does not depend on how
    the stream is chunked (each kind of evidence computes a step by the same operations in any
    chunk).

    More signals, all off by default:

    * ``season`` (a period in steps): an event that recurs is not new. A step whose forecast
      surprise is no higher than the largest within ``reach`` steps of the same phase one period
      earlier is held at ``rest`` (a forecaster's blind spot at a daily jump surprises every
      day; an anomaly surprises once).
    * ``settle``: the stream's first ``settle`` steps (NaN ones included) never alarm; they are
      held at ``rest``.
    * ``values`` given to :meth:`update` (the series itself, one row per score, on one scale per
      channel: standardised) feed the kinds of evidence that do not depend on the detector, each
      turned into a surprise on its own history (:class:`anomalib_lite.scoring.evidence.Likelihood`, the
      same ``history``, ``min_count`` and ``min_std``); a step's surprise is the largest of the
      forecast's and theirs:

      - ``extremes`` (on by default when values are given): NAB's HTM detector's "spatial
        anomaly": a value beyond the range of every earlier value by more than ``tolerance`` (5 %)
        of that range adds ``alarm`` to the forecast's surprise.
      - ``cycle`` (steps, e.g. one week): a calendar's longer rhythm, which a forecaster that
        reads the last hours cannot see (a public holiday looks like an ordinary Sunday): the
        distance to the median of the same phase in the last ``depth`` cycles, EWMA-smoothed
        with span ``span`` (:class:`anomalib_lite.scoring.evidence.Cycle`), silent for its first
        ``cycle_warm`` distances (its history must span the shorter rhythm first).
      - ``neighbours`` (a subsequence length in steps): the distance of the latest subsequence
        to its nearest neighbour among those of the last ``memory`` steps
        (:class:`anomalib_lite.scoring.evidence.Neighbours`): a spike, a new level, a new shape.
      - ``change`` (a window in steps): whether the last ``change`` steps come from the
        distribution of the ``reference`` steps before them (default 8 windows): a change in
        level or variance (:class:`anomalib_lite.scoring.evidence.Change`), silent for its first
        ``change_warm`` values.

    After each :meth:`update`, ``last_levels`` holds each kind's surprise per step (forecast:
    after the season's rest and the extremes' addition), for explaining an alarm or a miss.
    """

    KINDS = ("forecast", "cycle", "neighbours", "change")

    def __init__(self, prior=(), history: int = 8640, refractory: int = 64, alarm: float = 5.0,
                 rest: float = 3.0, scale: float = 5.0, min_count: int = 30, min_std: float = 0.01,
                 season: int = 0, reach: int = 0, tolerance: float = 0.05, settle: int = 0,
                 cycle: int = 0, depth: int = 3, span: float = 10.0, cycle_warm: int = 0,
                 extremes: bool = True, neighbours: int = 0, memory: int = 4000, change: int = 0,
                 reference: int = 0, change_warm: int = 0):
        if not isinstance(history, int) or history < 2 or refractory < 0:
            raise AnomalyError(f"SurpriseScore: history={history!r} must be an integer >= 2, refractory >= 0")
        if season < 0 or reach < 0 or (season and reach >= season) or tolerance < 0:
            raise AnomalyError(f"SurpriseScore: season={season!r}, reach={reach!r} must be >= 0 with reach < season, "
                               f"tolerance={tolerance!r} >= 0")
        if cycle < 0 or depth < 1 or not span >= 1 or cycle_warm < 0:
            raise AnomalyError(f"SurpriseScore: cycle={cycle!r}, cycle_warm={cycle_warm!r} must be >= 0, "
                               f"depth={depth!r}, span={span!r} >= 1")
        if neighbours < 0 or (neighbours and memory < neighbours) or change < 0 or change == 1 or reference < 0 \
                or (change and reference == 1) or change_warm < 0:
            raise AnomalyError(f"SurpriseScore: neighbours={neighbours!r} must be >= 0 (and memory={memory!r} >= it), "
                               f"change={change!r} and reference={reference!r} 0 or >= 2, change_warm={change_warm!r} >= 0")
        self.history, self.refractory, self.alarm, self.rest = history, int(refractory), float(alarm), float(rest)
        self.scale, self.min_count, self.min_std = float(scale), int(min_count), float(min_std)
        self.season, self.reach, self.tolerance = int(season), int(reach), float(tolerance)
        self.settle, self.steps, self.extremes = int(settle), 0, bool(extremes)
        ring = self.season + self.reach + 1 if self.season else 0  # past surprises, written twice (at i and
        self.past = np.zeros(2 * ring)  # i + ring) so that the steps around one season back are one slice
        self.scored = 0  # surprises in the ring so far
        self.low = self.high = None  # the range of the values seen
        self.forecast = Likelihood(history, min_count, min_std, prior=prior)
        like = lambda warm=0: Likelihood(history, min_count, min_std, warm=warm)  # noqa: E731
        self.kinds: dict[str, tuple] = {}  # name -> (evidence, its likelihood)
        if cycle:
            self.kinds["cycle"] = (Cycle(cycle, depth, span), like(cycle_warm))
        if neighbours:
            self.kinds["neighbours"] = (Neighbours(neighbours, memory), like())
        if change:
            self.kinds["change"] = (Change(change, reference or 8 * change), like(change_warm))
        self.since_alarm = self.refractory + 1
        self.was_alarm = False
        self.last_levels: dict[str, np.ndarray] = {}
        self.channels: int | None = None  # of the values the kinds of evidence read so far

    @property
    def alarm_level(self) -> float:
        """The output at which a step alarms (0.5 with the defaults): ``output >= alarm_level``
        flags one step per event."""
        return self.alarm / (self.alarm + self.scale)

    def surprise(self, score: float) -> float:
        """``-log10`` of the Gaussian tail probability of ``score`` under the history."""
        return self.forecast.surprise(score)

    def _recurs(self, level: float) -> bool:
        """Whether a surprise this high was seen near the same phase one season earlier (and
        push it to the ring)."""
        if not self.season:
            return False
        size, t = len(self.past) // 2, self.scored
        seen = False
        if t >= self.season + self.reach:
            start = (t - self.season - self.reach) % size
            seen = level <= float(self.past[start : start + 2 * self.reach + 1].max())
        self.past[t % size] = self.past[t % size + size] = level
        self.scored += 1
        return seen

    def _new_extreme(self, value: np.ndarray) -> bool:
        """NAB's spatial anomaly: a value beyond the range seen so far by more than ``tolerance``
        of that range, in any channel (then the range takes it in)."""
        ok = np.isfinite(value)
        if not ok.any():
            return False
        if self.low is None:
            self.low, self.high = np.where(ok, value, np.inf), np.where(ok, value, -np.inf)
            return False
        span = self.high - self.low
        with np.errstate(invalid="ignore"):
            ranged = ok & np.isfinite(span) & (span > 0)
            out = ranged & ((value > self.high + self.tolerance * span) | (value < self.low - self.tolerance * span))
        self.low = np.where(ok, np.minimum(self.low, value), self.low)
        self.high = np.where(ok, np.maximum(self.high, value), self.high)
        return bool(out.any())

    def update(self, scores, values=None) -> np.ndarray:
        """The [0, 1] scores of the next steps, in order; ``values``: the series' steps (n,) or
        (n, D) the scores belong to (for the evidence that reads the series), optional."""
        s = as_scores(scores).reshape(-1)
        if len(s) == 0:  # an empty chunk: nothing to score, nothing learned
            self.last_levels = {name: np.zeros(0) for name in self.KINDS}
            return np.zeros(0)
        if values is not None:
            values = np.asarray(values, dtype=np.float64)
            if values.size % len(s):
                raise AnomalyError(f"SurpriseScore: {values.size} values for {len(s)} scores: give one row of values per score")
            values = values.reshape(len(s), -1)
            if self.channels is not None and values.shape[1] != self.channels:
                raise AnomalyError(f"SurpriseScore: values of {values.shape[1]} channel(s), but this stream's "
                                   f"earlier values had {self.channels}")
            self.channels = values.shape[1]
        out = np.full(s.shape, np.nan)
        kinds = self.kinds if values is not None else {}
        levels = {name: np.zeros(len(s)) for name in self.KINDS}
        forecast = levels["forecast"]
        read = [(levels[name], like.update, ev.stats(values).tolist()) for name, (ev, like) in kinds.items()]
        for i, v in enumerate(s.tolist()):
            extreme = values is not None and self.extremes and self._new_extreme(values[i])
            top = 0.0
            for level_of, learn, stat in read:  # each kind learns from every step, scored or not
                level_of[i] = level = learn(stat[i])
                top = max(top, level)
            self.steps += 1
            if math.isnan(v):
                forecast[i] = math.nan
                continue
            level = raw = self.forecast.update(v)
            if self._recurs(raw):
                level = min(level, self.rest)
            if extreme:
                level += self.alarm
            forecast[i] = level
            out[i] = self._gated(max(level, top))
        self.last_levels = levels
        return out

    def _gated(self, level: float, refractory: bool = True) -> float:
        """A step's [0, 1] score from its surprise ``level``: an alarm rests (to ``rest``) while
        the step before alarmed, within the ``refractory`` steps after an alarm (unless told
        otherwise) and while the score settles; ``level / (level + scale)`` after."""
        self.since_alarm += 1
        before = level
        if level >= self.alarm:
            if self.was_alarm or (refractory and self.since_alarm <= self.refractory) or self.steps <= self.settle:
                level = min(level, self.rest)
            else:
                self.since_alarm = 0
        self.was_alarm = before >= self.alarm
        return level / (level + self.scale)
