"""Issue 19, second pass: rules tried on NAB's score of the series route and not kept, each by
the protocol (``nab_score.halves``): chosen on the development half, judged once on the held-out
half, dropped when it helps the first and hurts the second.

Each rule is one change to ``nab.results_scores`` (the library's default, unchanged) written here,
outside the library, as small subclasses of its parts (:class:`TriedLikelihood`,
:class:`TriedCycle`, :class:`TriedScore`, put in place of ``SurpriseScore`` for the run), on the
network's raw scores that ``nab_ablation.py`` caches (Continuation with every default, seed 0):

* every rule on the development half (the example route);
* the rules that improved the development half on both routes (``JUDGED``) on the held-out half
  and all 31 series, by both routes, and on ``nab_two_weeks.py``'s proxy (4,032-step pieces,
  fitted here), by the pieces of each half's series.

The default row reproduces ``nab_ablation.py``'s (checked: its scores are ``results_scores``').
Run:  python benchmarks/nab_tried.py [--cache DIR] [--pieces DIR]   (about 15 minutes on 2 CPU cores
      with both caches filled; the first run fits the networks: 10 more minutes)
      python benchmarks/nab_tried.py --cache DIR --only TEXT [TEXT ...] [--failures]   (the rules named,
      dev half only, about 25 s; --only default --failures: the default and what each kind saw there)
"""
from __future__ import annotations

import argparse
import bisect
import hashlib
import math
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import record
import torch
import nab_ablation
from nab_ablation import Corpora, evidence_rows, raw_scores
from nab_score import halves
from nab_two_weeks import pieces
from scipy.special import log_ndtr, stdtr
from scipy.stats import chi2

import anomalib_lite as al
from anomalib_lite.evaluation import nab
from anomalib_lite.detectors import series as series_module
from anomalib_lite.scoring.evidence import Cycle, Likelihood, Neighbours
from anomalib_lite.components.streaming import Ewma, MovingWindow
from anomalib_lite.scoring.thresholds import SurpriseScore

KINDS = SurpriseScore.KINDS


class TriedLikelihood(Likelihood):
    """:class:`Likelihood` with another model of the statistic's history: ``model="tail"``
    (conformal p-values with an exponential tail: ``tail_p_values``' rule, its scale at least
    ``min_std``), ``span`` (a Student-t
    predictive with n / span effective values: the statistics of neighbouring steps share most of
    their inputs), ``recent`` (the smaller of the surprises against the history and against its
    last ``recent`` values), ``power`` (the statistic raised to it first: 1/3 is Wilson-Hilferty's
    normalising transform of a gamma variate), ``model="gpd"`` (a generalised Pareto tail over the
    largest values: ``_gpd``; "gpd+" with a shape >= 0, "gpd-min" the smaller of it and the Gaussian's)."""

    def __init__(self, history, min_count, min_std, warm=0, prior=(), model="", span=0.0, recent=0, power=0.0):
        prior = np.asarray(prior, dtype=np.float64).reshape(-1)
        if power:
            prior = np.maximum(prior, 0.0) ** power
        super().__init__(history, min_count, min_std, warm=warm, prior=prior)
        self.model, self.span, self.power = model, float(span), float(power)
        self.recent = MovingWindow(recent, ordered=False) if recent else None
        self.seq = deque((v for v in prior.tolist() if math.isfinite(v)), maxlen=int(history)) \
            if model == "gpd-dc" else None  # the history in time order
        self.fit_at, self.params = -1, None
        if model in ("tail", "gpd", "gpd+", "gpd-min", "gpd-dc"):  # a sorted copy of the history
            old, self.window = self.window, MovingWindow(history)
            for v in old.values:
                self.window.push(v)

    def _gauss(self, w, x: float) -> float:
        mean = w.mean()
        std = max(w.std(), self.min_std, 1e-9 * abs(mean))
        if self.span:
            ne = max(len(w) / self.span, 1.0 + 1e-9)
            p = float(stdtr(max(ne - 1.0, 0.5), -(x - mean) / (std * math.sqrt(1.0 + 1.0 / ne))))
            if p > 1e-300:
                return -math.log10(p)
        return float(-log_ndtr(-(x - mean) / std) / math.log(10.0))

    def surprise(self, x: float) -> float:
        if len(self.window) < self.min_count or math.isnan(x):
            return 0.0
        if self.model == "tail":  # tail_p_values' p-value, its scale at least min_std
            s = self.window.ordered
            n = len(s)
            k, m = min(n - 1, max(5, math.ceil(0.1 * n))), min(10, n - 1)
            beta = max(math.fsum(s[n - k :]) / k - s[n - k - 1], self.min_std, 1e-9 * max(1.0, abs(s[n - m])))
            if x > s[n - m]:
                return (math.log(n + 1.0) - math.log(m) + (x - s[n - m]) / beta) / math.log(10.0)
            return math.log10((n + 1.0) / (1.0 + n - bisect.bisect_left(s, x)))
        if self.model == "gpd-dc":
            return self._gpd_declustered(x)
        if self.model.startswith("gpd"):
            level = self._gpd(x)
            return min(level, self._gauss(self.window, x)) if self.model == "gpd-min" else level
        level = self._gauss(self.window, x)
        if self.recent is not None and len(self.recent) >= self.min_count:
            level = min(level, self._gauss(self.recent, x))
        return level

    def _peaks(self) -> tuple[list, int, int, float]:
        """The sorted history, its size n, k = max(10, sqrt n) (at most n / 3) and the threshold u
        of the peaks over it: the value below the k largest."""
        s = self.window.ordered
        n = len(s)
        k = min(n // 3, max(10, math.ceil(math.sqrt(n))))
        return s, n, k, s[n - k - 1]

    def _gpd(self, x: float) -> float:
        """Peaks over threshold (Pickands-Balkema-de Haan; SPOT, Siffer et al. 2017): the
        excesses of the k = max(10, sqrt n) largest values over the next one follow a generalised
        Pareto law, fitted by probability-weighted moments (Hosking & Wallis 1987); above that
        threshold p = k / (n + 1) times the law's tail, below it the empirical rank. Shape clamped
        to [-0.5, 0.5] ("gpd+": [0, 0.5], at least an exponential tail), scale at least min_std."""
        s, n, k, u = self._peaks()
        if x <= u:  # the empirical rank
            return math.log10((n + 1.0) / (1.0 + n - bisect.bisect_left(s, x)))
        xi, sigma = _pwm(np.asarray(s[n - k :]) - u)
        xi = min(max(xi, 0.0 if self.model == "gpd+" else -0.5), 0.5)
        sigma = max(sigma, self.min_std, 1e-9 * max(1.0, abs(u)))
        return _tail_surprise((x - u) / sigma, xi, k / (n + 1.0))

    def _gpd_declustered(self, x: float, gap: int = 32, refit: int = 16) -> float:
        """Peaks over threshold on declustered excesses (Coles 2001, 5.3; the runs method): the
        history's values above u (the k = max(10, sqrt n) largest values' lower edge) form clusters,
        runs of exceedances less than ``gap`` steps apart, one event each; a generalised Pareto law is
        fitted (probability-weighted moments) to each cluster's largest excess, and above u
        p = (clusters / (n + 1)) times its tail: the chance that a step starts an event at least this
        large. With under 6 clusters the tail is exponential with their mean excess. Below u, the
        empirical rank. Refitted every ``refit`` steps."""
        s, n, k, u = self._peaks()
        if x <= u:  # the empirical rank
            return math.log10((n + 1.0) / (1.0 + n - bisect.bisect_left(s, x)))
        if self.params is None or self.seen - self.fit_at >= refit:
            h = np.asarray(self.seq, dtype=np.float64)
            above = np.flatnonzero(h > u)
            if len(above) == 0:
                self.params = (u, 1, 0.0, max(self.min_std, 1e-9))
            else:
                starts = np.r_[0, np.flatnonzero(np.diff(above) >= gap) + 1]
                peaks = np.maximum.reduceat(h[above], starts) - u
                y = np.sort(peaks)
                m = len(y)
                xi, sigma = _pwm(y) if m >= 6 else (0.0, float(y.mean()))
                self.params = (u, m, min(max(xi, -0.5), 0.5), max(sigma, self.min_std))
            self.fit_at = self.seen
        u0, m, xi, sigma = self.params
        return _tail_surprise(max(x - u0, 0.0) / sigma, xi, max(m, 1) / (n + 1.0))

    def update(self, x: float) -> float:
        if self.power and not math.isnan(x):
            x = max(x, 0.0) ** self.power
        level = super().update(x)
        if self.seq is not None and not math.isnan(x):
            self.seq.append(x)
        if self.recent is not None and not math.isnan(x):
            self.recent.push(x)
        return level


def _pwm(y: np.ndarray) -> tuple[float, float]:
    """A generalised Pareto law's shape and scale from its ascending excesses ``y``, by
    probability-weighted moments (Hosking & Wallis 1987; their k is -shape); an exponential with
    the mean excess where the moments are degenerate."""
    m, a0 = len(y), float(y.mean())
    a1 = float((y * (1.0 - (np.arange(1, m + 1) - 0.35) / m)).mean())
    d = a0 - 2.0 * a1
    return (0.0, a0) if d <= 1e-12 or a0 <= 0 else (2.0 - a0 / d, 2.0 * a0 * a1 / d)


def _tail_surprise(z: float, xi: float, rate: float) -> float:
    """-log10 of ``rate`` times the generalised Pareto law's tail at ``z`` scales past the
    threshold (300 beyond the fitted endpoint of a bounded tail)."""
    if abs(xi) < 1e-6:
        log_tail = -z
    else:
        base = 1.0 + xi * z
        if base <= 0:
            return 300.0
        log_tail = -math.log(base) / xi
    return (-math.log(rate) - log_tail) / math.log(10.0)


class TriedCycle(Cycle):
    """:class:`Cycle` that compares only once ``least`` earlier cycles are behind a step (one
    earlier week is a single, noisy reference)."""

    def __init__(self, cycle, depth, span, least=1):
        super().__init__(cycle, depth, span)
        self.least = int(least)

    def stats(self, values):
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        cut = min(len(values), max(0, self.least * self.cycle - self.steps))  # steps with fewer cycles behind them ...
        if cut == 0:
            return super().stats(values)
        super().stats(values[:cut])
        self.smooth.value = None  # ... compare with nothing: the smoothing starts after them
        return np.concatenate([np.full(cut, np.nan), super().stats(values[cut:]) if cut < len(values) else []])


class Bocpd:
    """Bayesian online change-point detection (Adams & MacKay 2007) on the first channel: a
    Normal-Gamma model per run length (unknown mean and variance, prior mean 0, variance 1 on
    standardised values), constant hazard ``1 / hazard``, run lengths truncated at ``longest``
    (the tail's mass joins the longest). Each step's statistic: the posterior probability that
    a change happened within the last ``recent`` steps (NaN at a non-finite value)."""

    def __init__(self, hazard: float = 250.0, longest: int = 400, recent: int = 8):
        self.h, self.longest, self.recent = 1.0 / hazard, int(longest), int(recent)
        self.mu0, self.k0, self.a0, self.b0 = 0.0, 1.0, 1.0, 1.0
        self.logr = np.array([0.0])  # log posterior of the run length (0 steps at the start)
        self.mu, self.k = np.array([self.mu0]), np.array([self.k0])
        self.a, self.b = np.array([self.a0]), np.array([self.b0])

    def stats(self, values) -> np.ndarray:
        from scipy.special import gammaln

        v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)[:, 0]
        out = np.full(len(v), np.nan)
        for i, x in enumerate(v.tolist()):
            if not math.isfinite(x):
                continue
            mu, k, a, b = self.mu, self.k, self.a, self.b
            scale2 = b * (k + 1) / (a * k)  # Student-t predictive with 2a degrees of freedom
            z = (x - mu) ** 2 / scale2
            logp = (gammaln(a + 0.5) - gammaln(a) - 0.5 * np.log(2 * np.pi * a * scale2)
                    - (a + 0.5) * np.log1p(z / (2 * a)))
            grow = self.logr + logp + math.log(1 - self.h)
            change = np.logaddexp.reduce(self.logr + logp) + math.log(self.h)
            logr = np.concatenate([[change], grow])
            mu_n = np.concatenate([[self.mu0], (k * mu + x) / (k + 1)])
            k_n = np.concatenate([[self.k0], k + 1])
            a_n = np.concatenate([[self.a0], a + 0.5])
            b_n = np.concatenate([[self.b0], b + k * (x - mu) ** 2 / (2 * (k + 1))])
            if len(logr) > self.longest:  # the tail's mass joins the longest run
                logr[self.longest - 1] = np.logaddexp(logr[self.longest - 1], np.logaddexp.reduce(logr[self.longest:]))
                logr, mu_n, k_n, a_n, b_n = (t[: self.longest] for t in (logr, mu_n, k_n, a_n, b_n))
            logr -= np.logaddexp.reduce(logr)
            self.logr, self.mu, self.k, self.a, self.b = logr, mu_n, k_n, a_n, b_n
            out[i] = float(np.exp(logr[: self.recent]).sum())
        return out


class Cusum:
    """Page's two-sided CUSUM on each channel (the issue's "CUSUM"): each value standardised by
    the mean and standard deviation of an EWMA of span ``span`` (its reference, updated after the
    value is judged), then ``S+ = max(0, S+ + z - k)`` and ``S- = max(0, S- - z - k)``; the
    statistic is the largest of them over the channels. ``k = 0.5`` is the optimal allowance for a
    shift of one standard deviation: a small lasting shift accumulates, noise does not. No reset:
    the reference follows a new level, so the sums fall back by themselves. NaN for the first
    ``least`` steps (no reference yet) and at a non-finite value (the sums are kept)."""

    def __init__(self, span: float = 512.0, k: float = 0.5, least: int = 64, floor: float = 1e-4):
        self.a, self.k, self.least, self.floor = 2.0 / (span + 1.0), float(k), int(least), float(floor)
        self.mean = self.var = self.up = self.down = None
        self.steps = 0

    def stats(self, values) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        out = np.full(len(v), np.nan)
        for i, row in enumerate(v):
            ok = np.isfinite(row)
            if self.mean is None:
                if not ok.all():
                    continue
                self.mean, self.var = row.copy(), np.zeros_like(row)
                self.up, self.down = np.zeros_like(row), np.zeros_like(row)
                self.steps = 1
                continue
            if not ok.all():
                continue
            z = (row - self.mean) / np.sqrt(np.maximum(self.var, self.floor))
            self.up = np.maximum(0.0, self.up + z - self.k)
            self.down = np.maximum(0.0, self.down - z - self.k)
            if self.steps >= self.least:
                out[i] = float(max(self.up.max(), self.down.max()))
            d = row - self.mean
            self.mean = self.mean + self.a * d
            self.var = (1.0 - self.a) * (self.var + self.a * d * d)
            self.steps += 1
        return out


class Coarse:
    """:class:`Neighbours` at a coarser time scale (ARTime's downsampling; MERLIN's discords of
    several lengths): the stream pooled into blocks of ``block`` steps (each block's mean, with
    ``extremes`` also its largest and smallest value, as channels), and the distance of the last
    ``length`` blocks to their nearest earlier ones within ``memory`` steps. One statistic per
    block, at its last step; NaN between (no surprise there, nothing learned)."""

    def __init__(self, block: int = 8, length: int = 8, memory: int = 4000, extremes: int = 0):
        self.block, self.length, self.memory, self.extremes = int(block), int(length), int(memory), int(extremes)
        self.inner = Neighbours(self.length, max(self.length, self.memory // self.block))
        self.buf: list = []

    def stats(self, values) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        out = np.full(len(v), np.nan)
        for i, row in enumerate(v):
            self.buf.append(row)
            if len(self.buf) < self.block:
                continue
            b, self.buf = np.array(self.buf), []
            with np.errstate(invalid="ignore"):
                feat = np.concatenate([b.mean(0), b.max(0), b.min(0)]) if self.extremes else b.mean(0)
            out[i] = self.inner.stats(feat[None])[0]
        return out


_STATS: dict = {}  # the evidence statistics of a series, shared by every rule that does not change them


class TriedScore(SurpriseScore):
    """``SurpriseScore`` with the rules tried (``tried``, a dict; empty: exactly the library's):
    ``combine`` ("bonferroni": the largest surprise less log10 of the kinds compared; "hmp": the
    harmonic mean of their p-values, Bonferroni-corrected), ``family`` (less log10 of the steps
    the history holds over this many), ``discount`` (a kind's surprise less log10(1 + its earlier
    excursions above this level)), ``forecast``/``evidence`` (options of :class:`TriedLikelihood`),
    ``fhistory`` (the forecast's own history), ``least`` (:class:`TriedCycle`), ``relative`` (the
    forecast score over an EWMA of its past, of this span), ``calm`` (an alarm ends its event's
    quiet after this many steps below rest), ``persist`` (the forecast's surprise: its smallest
    over this many steps), ``recur`` (every kind's surprise that recurs one season earlier rests),
    ``hold`` (the quiet after an alarm holds every surprise above rest at rest, not only alarms),
    ``breakout`` (a new excursion at least this far above the surprise of the alarm that began the
    quiet alarms inside it),
    ``phased`` (the forecast's surprise against the history of its phase of the season, in this many
    phases, once a phase holds ``min_count`` values; before, and with no season, the pooled one)."""

    def __init__(self, prior=(), tried=None, **kw):
        super().__init__(prior, **kw)
        self.smooth_span = float(kw.get("span", 10.0))  # the cycle's smoothing (unit_scores: the detector's)
        t = self.tried = dict(tried or {})
        p = np.asarray(prior, dtype=np.float64).reshape(-1)
        self.level_ref = None
        if t.get("relative") and len(p):
            self.level_ref = float(p.mean())
            p = p / max(self.level_ref, 1e-9)
        self.vol, self.last_x = deque(maxlen=int(t.get("volatility") or 1)), None
        if t.get("volatility"):  # its scale differs from the calibration scores': no prior
            p = ()
        if t.get("forecast") or t.get("fhistory") or t.get("relative") or t.get("volatility"):
            self.forecast = TriedLikelihood(t.get("fhistory") or self.history, self.min_count, self.min_std, prior=p,
                                            **t.get("forecast", {}))
        for name, (ev, like) in list(self.kinds.items()):
            if name == "cycle" and t.get("least", 1) > 1:
                ev = TriedCycle(ev.cycle, ev.depth, self.smooth_span, t["least"])
            if t.get("evidence") and name in t["evidence"].get("kinds", KINDS):
                opts = {k: v for k, v in t["evidence"].items() if k != "kinds"}
                if opts.get("span"):  # the statistic's own window: its smoothing, subsequence or change window
                    opts["span"] *= {"cycle": self.smooth_span, "neighbours": ev.length if name == "neighbours" else 1,
                                     "change": ev.short if name == "change" else 1}[name]
                like = TriedLikelihood(self.history, self.min_count, self.min_std, warm=like.warm, **opts)
            self.kinds[name] = (ev, like)
        if t.get("forecast", {}).get("span"):
            self.forecast.span = t["forecast"]["span"] * self.smooth_span
        if t.get("coarse"):  # neighbours at a coarser scale, beside the step-level ones or in their place
            if t.get("replace_neighbours"):
                self.kinds.pop("neighbours", None)
            self.kinds["coarse"] = (Coarse(**t["coarse"]), Likelihood(self.history, self.min_count, self.min_std))
        if t.get("cusum"):  # Page's CUSUM on the values, one more kind
            self.kinds["cusum"] = (Cusum(**t["cusum"]), Likelihood(self.history, self.min_count, self.min_std))
        self.cusum_f = self.cusum_like = None
        if t.get("cusum_forecast") is not None:  # Page's CUSUM on the forecast's score, one more kind
            self.cusum_f = Cusum(**t["cusum_forecast"])
            self.cusum_like = Likelihood(self.history, self.min_count, self.min_std)
        if t.get("bocpd"):
            if t.get("replace_change") and "change" in self.kinds:  # BOCPD takes the change test's place
                warm = self.kinds.pop("change")[1].warm
            else:
                warm = 0
            self.kinds["bocpd"] = (Bocpd(**t["bocpd"]), Likelihood(self.history, self.min_count, self.min_std, warm=warm))
        self.runs = dict.fromkeys(KINDS, 0)
        self.inrun = dict.fromkeys(KINDS, False)
        self.calm_run = 0
        self.last_forecast = deque(maxlen=max(1, int(t.get("persist", 1))))
        self.rings = {k: np.zeros(len(self.past)) for k in KINDS} if t.get("recur") and self.season else None
        self.naive = Likelihood(self.history, self.min_count, self.min_std) if "naive" in t else None
        self.phase_like = [Likelihood(self.history, self.min_count, self.min_std)
                           for _ in range(int(t.get("phased", 0)))]
        self.naive_smooth, self.naive_last = Ewma(self.smooth_span), None

    def _stats(self, values):
        key = (hashlib.md5(values.tobytes()).hexdigest(), values.shape,
               tuple((n, type(ev).__name__, sorted((k, v) for k, v in vars(ev).items() if isinstance(v, (int, float))))
                     for n, (ev, _) in self.kinds.items()).__repr__())
        if key not in _STATS:
            if len(_STATS) > 200:
                _STATS.clear()
            _STATS[key] = {name: ev.stats(values) for name, (ev, _) in self.kinds.items()}
        return _STATS[key]

    def update(self, scores, values=None) -> np.ndarray:
        t = self.tried
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if values is not None:
            values = np.ascontiguousarray(values, dtype=np.float64).reshape(len(s), -1)
        out = np.full(s.shape, np.nan)
        kinds = self.kinds if values is not None else {}
        stats = self._stats(values) if kinds else {}
        levels = {name: np.zeros(len(s)) for name in (*KINDS, *kinds)}
        fstats = self.cusum_f.stats(s) if self.cusum_f is not None else None  # CUSUM of the forecast's score
        for i, v in enumerate(s.tolist()):
            extreme = values is not None and self.extremes and self._new_extreme(values[i])
            for name, (_, like) in kinds.items():
                levels[name][i] = like.update(float(stats[name][i]))
            self.steps += 1
            if math.isnan(v):
                levels["forecast"][i] = math.nan
                continue
            if t.get("volatility") and values is not None:  # the score over the input's recent volatility
                x = float(values[i, 0])
                vol = math.sqrt(sum(self.vol) / len(self.vol)) if len(self.vol) >= 8 else None
                if math.isfinite(x) and self.last_x is not None and math.isfinite(self.last_x):
                    self.vol.append((x - self.last_x) ** 2)
                self.last_x = x
                v = v / max(vol, 0.05) if vol is not None else math.nan
                if math.isnan(v):
                    levels["forecast"][i] = math.nan
                    continue
            if t.get("relative"):  # the score over its own recent level
                self.level_ref = v if self.level_ref is None else self.level_ref
                ref = self.level_ref
                v, self.level_ref = v / max(ref, 1e-9), ref + 2.0 / (t["relative"] + 1.0) * (v - ref)
            if t.get("phased") and self.season:  # the forecast's surprise against the same phase's history
                b = (self.steps - 1) % self.season * t["phased"] // self.season
                pooled, own = self.forecast.update(v), self.phase_like[b]
                level = raw = own.update(v) if len(own.window) >= self.min_count else (own.update(v), pooled)[1]
            else:
                level = raw = self.forecast.update(v)
            if self._recurs(raw):
                level = min(level, self.rest)
            if self.naive is not None and values is not None:  # the persistence forecast must be surprised too
                x = values[i]
                d = float(np.nanmax(np.abs(x - self.naive_last))) if self.naive_last is not None else math.nan
                if np.isfinite(x).all():
                    self.naive_last = x
                e = float(self.naive_smooth.update(np.array([d]))[0]) if math.isfinite(d) else math.nan
                naive = self.naive.update(e)
                level = min(level, naive + t["naive"]) if math.isfinite(e) else level
            if extreme:
                level += self.alarm
            if t.get("persist"):
                self.last_forecast.append(level)
                level = min(self.last_forecast)
            levels["forecast"][i] = level
            names = ["forecast", *kinds]
            if fstats is not None:
                levels.setdefault("cusum_f", np.zeros(len(s)))[i] = self.cusum_like.update(float(fstats[i]))
                names.append("cusum_f")
            if self.rings is not None:  # every kind's recurring surprise rests, as the forecast's
                at, size = self.scored - 1, len(self.past)
                for name in kinds:
                    x, ring = levels[name][i], self.rings[name]
                    if at >= self.season + self.reach:
                        back = at - self.season + np.arange(-self.reach, self.reach + 1)
                        if x <= float(ring[back % size].max()):
                            levels[name][i] = min(x, self.rest)
                    ring[at % size] = x
            if t.get("discount"):  # each kind: less log10(1 + its earlier excursions above the level)
                for name in names:
                    x = levels[name][i]
                    high = x >= t["discount"]
                    self.runs[name] += high and not self.inrun[name]
                    self.inrun[name] = high
                    levels[name][i] = max(0.0, x - math.log10(1 + self.runs[name] - high))
            each = [levels[name][i] for name in names]
            level = max(each)
            if t.get("combine") == "bonferroni":
                level = max(0.0, level - math.log10(len(each)))
            elif t.get("combine") == "hmp":
                level = max(0.0, level + math.log10(sum(10.0 ** (x - level) for x in each) / len(each)))
            elif t.get("combine") == "fisher":  # Fisher's method: -2 sum ln p ~ chi^2 with 2k degrees
                level = float(-chi2.logsf(2.0 * math.log(10.0) * sum(each), 2 * len(each)) / math.log(10.0))
            if t.get("family"):
                level = max(0.0, level - math.log10(max(1.0, min(self.steps, self.history) / t["family"])))
            ended = t.get("calm") and self.calm_run >= t["calm"]
            self.calm_run = self.calm_run + 1 if level < self.rest else 0
            out[i] = self._gated(level, refractory=not ended)
        self.last_levels = levels
        return out


    def _gated(self, level: float, refractory: bool = True) -> float:
        if self.tried.get("hold") and refractory and self.since_alarm + 1 <= self.refractory and self.rest < level < self.alarm:
            level = self.rest  # (an alarm's level goes on to the library's rule, which also remembers it)
        margin = self.tried.get("breakout")
        if margin is not None and refractory and self.since_alarm + 1 <= self.refractory and not self.was_alarm \
                and level >= max(self.alarm, getattr(self, "began_quiet", math.inf) + margin):
            refractory = False  # a new excursion far more surprising than the alarm that began the quiet
        out = super()._gated(level, refractory)
        if self.since_alarm == 0:
            self.began_quiet = level
        return out


def resmoothed(scores: np.ndarray, span: float, old: float = 10.0) -> np.ndarray:
    """The forecast's score with another EWMA span: the errors recovered exactly from the EWMA of
    span ``old``, smoothed again."""
    a = 2.0 / (old + 1.0)
    err, prev = np.full_like(scores, np.nan), None
    for i, v in enumerate(scores.tolist()):
        if not math.isnan(v):
            err[i] = v if prev is None else (v - (1.0 - a) * prev) / a
            prev = v
    return Ewma(span).update(err)


#: name -> (tried options, results_scores options or a callable of (p, detector), EWMA span of the score)
VARIANTS = {
    "default (the library's results_scores)": ({}, {}, 0),
    # how the kinds are combined
    "Bonferroni over the kinds: the largest surprise less log10 k": (dict(combine="bonferroni"), {}, 0),
    "harmonic mean of the kinds' p-values (Bonferroni-corrected)": (dict(combine="hmp"), {}, 0),
    "Fisher's method over the kinds' p-values (agreement counts)": (dict(combine="fisher"), {}, 0),
    "Bayesian online change points as one more kind (hazard 1/250, a change in the last 8 steps)": (
        dict(bocpd=dict(hazard=250.0, recent=8)), {}, 0),
    "Bayesian online change points in place of the two-window change test": (
        dict(bocpd=dict(hazard=250.0, recent=8), replace_change=True), {}, 0),
    # Page's CUSUM (the "CUSUM"), of the values or of the forecast's score
    "CUSUM of the values as one more kind (reference: EWMA span 512, k 0.5)": (dict(cusum={}), {}, 0),
    "CUSUM of the values as one more kind (reference: EWMA span 64, k 0.5)": (dict(cusum=dict(span=64.0)), {}, 0),
    "CUSUM of the values as one more kind (reference: EWMA span 512, k 1)": (dict(cusum=dict(k=1.0)), {}, 0),
    "CUSUM of the forecast's score as one more kind (reference: EWMA span 512, k 0.5)": (
        dict(cusum_forecast={}), {}, 0),
    # neighbours at a coarser time scale (ARTime downsamples to about 8 blocks per 1/13 of the probation)
    "coarse neighbours: 8 blocks of 4 steps as one more kind": (dict(coarse=dict(block=4)), {}, 0),
    "coarse neighbours: 8 blocks of 8 steps as one more kind": (dict(coarse=dict(block=8)), {}, 0),
    "coarse neighbours: 8 blocks of 16 steps as one more kind": (dict(coarse=dict(block=16)), {}, 0),
    "coarse neighbours: 8 blocks of 8 steps, mean and extremes, as one more kind": (
        dict(coarse=dict(block=8, extremes=1)), {}, 0),
    "coarse neighbours: 8 blocks of 8 steps in place of the step-level neighbours": (
        dict(coarse=dict(block=8), replace_neighbours=True), {}, 0),
    "Bonferroni over the steps the history holds (less log10 of min(t, 8640) / 1000)": (dict(family=1000), {}, 0),
    "Bonferroni over kinds and steps": (dict(combine="bonferroni", family=1000), {}, 0),
    "a kind's surprise less log10(1 + its earlier excursions above 4)": (dict(discount=4.0), {}, 0),
    # each kind's likelihood
    "empirical tail (tail_p_values) for every kind": (
        dict(forecast=dict(model="tail"), evidence=dict(model="tail")), {}, 0),
    "empirical tail for the forecast only": (dict(forecast=dict(model="tail")), {}, 0),
    "generalised Pareto tail (peaks over threshold) for every kind": (
        dict(forecast=dict(model="gpd"), evidence=dict(model="gpd")), {}, 0),
    "generalised Pareto tail, shape >= 0, for every kind": (
        dict(forecast=dict(model="gpd+"), evidence=dict(model="gpd+")), {}, 0),
    "the smaller of the Gaussian and generalised Pareto surprises for every kind": (
        dict(forecast=dict(model="gpd-min"), evidence=dict(model="gpd-min")), {}, 0),
    "generalised Pareto tail for the forecast only": (dict(forecast=dict(model="gpd")), {}, 0),
    # errors differ by phase (a busy day, a quiet night): the forecast judged against its own phase's history
    "the forecast's surprise against the history of its phase of the season (24 phases)": (dict(phased=24), {}, 0),
    "the forecast's surprise against the history of its phase of the season (6 phases)": (dict(phased=6), {}, 0),
    # the same, on declustered excesses: one peak per event (the runs method)
    "declustered generalised Pareto tail for every kind": (
        dict(forecast=dict(model="gpd-dc"), evidence=dict(model="gpd-dc")), {}, 0),
    "declustered generalised Pareto tail for the forecast only": (dict(forecast=dict(model="gpd-dc")), {}, 0),
    "Student-t with n / window effective values": (dict(forecast=dict(span=1.0), evidence=dict(span=1.0)), {}, 0),
    "cube root of forecast, cycle and neighbours first": (
        dict(forecast=dict(power=1 / 3), evidence=dict(power=1 / 3, kinds=("cycle", "neighbours"))), {}, 0),
    "square root of forecast, cycle and neighbours first": (
        dict(forecast=dict(power=0.5), evidence=dict(power=0.5, kinds=("cycle", "neighbours"))), {}, 0),
    "the smaller surprise against the history and the last 1000 values": (
        dict(forecast=dict(recent=1000), evidence=dict(recent=1000)), {}, 0),
    "history of every kind 2016 steps": ({}, dict(history=2016), 0),
    "history of every kind 4032 steps": ({}, dict(history=4032), 0),
    "history of every kind 17280 steps": ({}, dict(history=17280), 0),
    "the forecast's own history 1000 steps": (dict(fhistory=1000), {}, 0),
    "the forecast's own history 2016 steps": (dict(fhistory=2016), {}, 0),
    "the forecast's own history 4032 steps": (dict(fhistory=4032), {}, 0),
    "forecast score over an EWMA of its past (span 1024)": (dict(relative=1024), {}, 0),
    "forecast score over the input's volatility (RMS step change of the last 64 steps)": (dict(volatility=64), {}, 0),
    "forecast score over the input's volatility (RMS step change of the last 288 steps)": (dict(volatility=288), {}, 0),
    "forecast score smoothed with span 5 instead of 10": ({}, {}, 5),
    "forecast score smoothed with span 20 instead of 10": ({}, {}, 20),
    # little history: the weekly cycle
    "the cycle compares once two earlier cycles are behind": (dict(least=2), {}, 0),
    "Bonferroni over the kinds + two earlier cycles": (dict(combine="bonferroni", least=2), {}, 0),
    # one event, one alarm
    "quiet for a quarter of the probationary period": ({}, lambda p, det, n: dict(quiet=p // 4), 0),
    "quiet for 7.5 % of the series (half the probationary period without NAB's cap of 750 steps)": (
        {}, lambda p, det, n: dict(quiet=round(0.075 * n)), 0),
    "the quiet after an alarm holds every surprise above rest, not only alarms": (dict(hold=True), {}, 0),
    # a second event inside the quiet (speed_7578's window at 945, seen during the quiet of the one at 909)
    "a new excursion 1 above the alarm that began the quiet ends it": (dict(breakout=1.0), {}, 0),
    "a new excursion 2 above the alarm that began the quiet ends it": (dict(breakout=2.0), {}, 0),
    "a new excursion 4 above the alarm that began the quiet ends it": (dict(breakout=4.0), {}, 0),
    "holds every surprise above rest, quiet for 7.5 % of the series": (
        dict(hold=True), lambda p, det, n: dict(quiet=round(0.075 * n)), 0),
    "an event ends after 64 steps below rest": (dict(calm=64), {}, 0),
    "the forecast's surprise: its smallest over 3 steps": (dict(persist=3), {}, 0),
    "every kind's surprise that recurs one season earlier rests": (dict(recur=True), {}, 0),
    # the forecast's error against a persistence forecast's
    "the forecast's surprise at most the persistence forecast's (EWMA of the step change)": (dict(naive=0.0), {}, 0),
    "the forecast's surprise at most the persistence forecast's + 2": (dict(naive=2.0), {}, 0),
}
DEFAULT = next(iter(VARIANTS))
#: chosen on the development half (better there on both routes), then judged on the held-out half
JUDGED = ("Bonferroni over the kinds: the largest surprise less log10 k",
          "the cycle compares once two earlier cycles are behind",
          "Bonferroni over the kinds + two earlier cycles")


def unit_scores(raw: dict, variant) -> dict:
    """NAB's [0, 1] scores of every series by ``results_scores`` with :class:`TriedScore` in place
    of ``SurpriseScore`` and the variant's changes."""
    tried, options, span = variant
    out = {}
    series_module.SurpriseScore = TriedScore  # what unit_scores builds
    try:
        for name, (det, scores, source) in raw.items():
            opts = options(nab.probation_steps(len(scores)), det, len(scores)) if callable(options) else options
            s = resmoothed(np.asarray(scores, dtype=np.float64), span) if span else scores
            out[name] = nab.results_scores(det, s, values=source.values, step_seconds=source.step_seconds,
                                           tried=tried, **opts)
    finally:
        series_module.SurpriseScore = SurpriseScore
    return out


def calibration(raw: dict, names: list[str]) -> dict:
    """kind -> the share of steps with a surprise of at least 1, ..., 6 (p <= 0.1, ..., 1e-6 if it
    were a p-value), the default, after the probationary period, outside the windows and the 50
    steps before each."""
    counts, total = {k: np.zeros(6) for k in KINDS}, 0
    for name in names:
        det, scores, source = raw[name]
        nab.results_scores(det, scores, values=source.values, step_seconds=source.step_seconds)
        keep = np.arange(len(scores)) >= nab.probation_steps(len(scores))
        for a, b in source.windows:
            keep[max(0, a - 50) : b + 1] = False
        total += int(keep.sum())
        for k in KINDS:
            level = np.nan_to_num(det.last_levels_[k][keep])
            counts[k] += [(level >= x).sum() for x in range(1, 7)]
    return {k: counts[k] / total for k in KINDS}


def fitted_pieces(cache: Path | None) -> dict:
    """rel -> (detector, raw scores, piece) for ``nab_two_weeks``' pieces (fitted by its route)."""
    out = {}
    for rel, piece in pieces():
        stem = None if cache is None else cache / rel.replace("/", "--")
        if stem is not None and Path(f"{stem}.npy").is_file():
            det, scores = al.load(f"{stem}.anomaly"), np.load(f"{stem}.npy")
        else:
            det = al.Continuation(device="cpu")
            scores, _ = nab.run_protocol(det, piece)
            if stem is not None:
                det.save(f"{stem}.anomaly")
                np.save(f"{stem}.npy", scores)
        piece.nab_name = rel
        out[rel] = (det, np.asarray(scores), piece)
    return out


class PieceCorpora(Corpora):
    """NAB's scorer on the pieces (all, or those of one half's series), with their own labels."""

    def __init__(self, tmp: Path, fitted: dict):
        super().__init__(tmp)
        self.fitted = fitted

    def score(self, unit: dict, subset) -> dict:
        if subset not in self.made:
            import json

            tool, folder, labels = self.tool, self.tmp / f"pieces-{subset}", {}
            for rel, (_, _, piece) in self.fitted.items():
                if subset is not None and not any(rel.startswith(m[:-4] + "_") for m in halves()[subset]):
                    continue
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_text("timestamp,value\n" + "".join(
                    f"{a},{v:.10g}\n" for a, v in zip(piece.stamps, piece.values[:, 0])))
                labels[rel] = [[piece.stamps[a] + ".000000", piece.stamps[b] + ".000000"] for a, b in piece.windows]
            (folder / "labels.json").write_text(json.dumps(labels))
            corpus = tool.Corpus(str(folder), str(folder / "labels.json"))
            base = {}
            for name, profile in tool.DEFAULT_PROFILES.items():
                weights = tool.sweep_weights(corpus, profile)
                base[name] = (tool.null_baseline(corpus, weights, profile["fnWeight"]),
                              profile["tpWeight"] * corpus.n_windows)
            self.made[subset] = (corpus, base)
        return super().score(unit, subset)


def dev_failures(raw: dict, corpora: Corpora) -> str:
    """``--failures``: nab_ablation.py's table of what each kind of evidence saw, for the default on
    the development half (example route), and its false-positive rows counted by the kind that fired."""
    unit, levels = {}, {}
    for name, (det, scores, source) in raw.items():
        unit[name], levels[name] = nab_ablation.variant_scores(det, scores, source,
                                                               nab_ablation.VARIANTS[nab_ablation.DEFAULT])
    result = corpora.score(unit, "dev")
    rows = evidence_rows(unit, levels, result, halves()["dev"])
    fired = [r.split("false positive (")[1].split(")")[0] for r in rows if "false positive (" in r]
    counts = ", ".join(f"{k} {fired.count(k)}" for k in KINDS)
    return ("\n\nWhat each kind of evidence saw in the development half (default, example route, standard "
            f"profile's threshold {result['standard']['threshold']:.4f}; as nab_ablation.py's held-out table). "
            f"False-positive rows by the kind that fired: {counts} ({len(fired)} in all).\n\n"
            "| series | where | outcome | forecast | cycle | neighbours | change |\n"
            "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))


def dev_only(args) -> None:
    """``--only``: a few rules (and the default) on the development half, example route."""
    t0, chosen = time.perf_counter(), [DEFAULT] + [v for v in VARIANTS if v != DEFAULT and any(s in v for s in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        corpora, raw = Corpora(Path(tmp)), raw_scores("example", 0, Path(args.cache) if args.cache else None)
        rows = []
        for vname in chosen:
            r = corpora.score(unit_scores(raw, VARIANTS[vname]), "dev")
            rows.append(f"| {vname} | " + " / ".join(f"{r[p]['normalized']:.2f}" for p in
                                                       ("standard", "reward_low_FP_rate", "reward_low_FN_rate"))
                        + f" ({r['standard']['fp']}) |")
            print(rows[-1], flush=True)
        failures = dev_failures(raw, corpora) if args.failures else ""
    body = ("Rules tried on the development half alone (one change each to `nab.results_scores`, on the raw scores "
            f"`nab_ablation.py` caches; {time.perf_counter() - t0:.0f} s). NAB's scorer, standard / reward low FP / "
            "reward low FN (false-positive rows, standard); a rule that does not help here is not judged on the "
            "held-out half.\n\n| rule (one change to the default) | dev half (17), example route |\n| --- | --- |\n"
            + "\n".join(rows) + failures)
    record.publish("Issue 19: more rules tried on NAB's dev half (nab_tried.py --only)", body, args.no_record)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=None, help="nab_ablation.py's cache of fitted detectors and raw scores (reused)")
    ap.add_argument("--pieces", default=None, help="keep the two-week pieces' detectors and raw scores here (reused)")
    ap.add_argument("--only", nargs="+", default=None, metavar="TEXT",
                    help="only the rules whose names hold one of these, beside the default, on the dev half (example route)")
    ap.add_argument("--failures", action="store_true",
                    help="with --only: also the table of what each kind saw in the dev half (the default)")
    ap.add_argument("--no-record", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.only:
        return dev_only(args)
    load_before, t0 = os.getloadavg(), time.perf_counter()
    caches = [Path(c) if c else None for c in (args.cache, args.pieces)]
    for c in caches:
        if c:
            c.mkdir(parents=True, exist_ok=True)
    fig: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpora = Corpora(Path(tmp))
        for route in ("example", "CLI"):
            raw = raw_scores(route, 0, caches[0])
            if route == "example":
                calib = {half: calibration(raw, names) for half, names in halves().items()}
            for vname, variant in VARIANTS.items():
                if route == "CLI" and vname != DEFAULT and vname not in JUDGED:
                    continue
                unit = unit_scores(raw, variant)
                if vname == DEFAULT:
                    for name, (det, scores, source) in raw.items():
                        same = nab.results_scores(det, scores, values=source.values, step_seconds=source.step_seconds)
                        assert np.array_equal(unit[name], same), f"{name}: the default is not results_scores'"
                halves_ = ("dev", "held-out", None) if vname == DEFAULT or vname in JUDGED else ("dev",)
                for half in halves_:
                    fig[route, vname, half] = corpora.score(unit, half)
                got = [fig[route, vname, h]["standard"]["normalized"] for h in halves_]
                print(f"{route} {vname}: " + " ".join(f"{g:.2f}" for g in got), flush=True)
        fitted = fitted_pieces(caches[1])
        piece_corpora = PieceCorpora(Path(tmp), fitted)
        for vname in (DEFAULT, *JUDGED):
            unit = unit_scores(fitted, VARIANTS[vname])
            for half in ("dev", "held-out", None):
                fig["pieces", vname, half] = piece_corpora.score(unit, half)

    def cell(key):
        r = fig[key]
        profiles = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
        return " / ".join(f"{r[p]['normalized']:.2f}" for p in profiles) + f" ({r['standard']['fp']})"

    lines = [
        "Rules tried after the first pass (one change each to `nab.results_scores`, written in the script as subclasses "
        "of the library's `Likelihood`, `Cycle` and `SurpriseScore`), on the raw scores `nab_ablation.py` caches "
        f"(Continuation with every default, seed 0; {time.perf_counter() - t0:.0f} s in all). NAB's scorer, standard / "
        "reward low FP / reward low FN, (false-positive rows, standard). Every rule on the development half (example "
        "route); the rules that improved it on both routes were judged once on the held-out half (second table). "
        "Load average (1/5/15 min) before: " + "/".join(f"{v:.1f}" for v in load_before) + ", after: "
        + "/".join(f"{v:.1f}" for v in os.getloadavg()) + ".",
        "", "| rule (one change to the default) | dev half (17), example route |", "| --- | --- |"]
    lines += [f"| {vname} | {cell(('example', vname, 'dev'))} |" for vname in VARIANTS]
    lines += ["", "Are the surprises p-values? The share of steps whose surprise (-log10 p under the Gaussian "
              "of the kind's history) reaches 1 ... 6, after the probationary period, outside the windows and "
              "the 50 steps before each (default, example route; under a calibrated p it would be 1e-1 ... 1e-6):",
              "", "| half | kind | >= 1 | >= 2 | >= 3 | >= 4 | >= 5 | >= 6 |", "| --- " * 8 + "|"]
    lines += [f"| {half} | {k} | " + " | ".join(f"{v:.1e}" for v in calib[half][k]) + " |" for half in calib for k in KINDS]
    lines += ["", "The rules chosen on the development half, judged on the held-out half, by both routes and on the "
              "two-week proxy (`nab_two_weeks.py`'s pieces, by the pieces of each half's series):", "",
              "| rule | route | dev half | held-out half | all |", "| --- | --- | --- | --- | --- |"]
    for vname in (DEFAULT, *JUDGED):
        for route in ("example", "CLI", "pieces"):
            cells = " | ".join(cell((route, vname, h)) for h in ("dev", "held-out", None))
            lines.append(f"| {vname} | {route} | {cells} |")
    record.append("Issue 19, second pass: rules tried on NAB's score and not kept (nab_tried.py)", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
