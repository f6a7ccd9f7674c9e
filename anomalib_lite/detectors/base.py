"""The detector contract shared by all five detectors: a scikit-learn estimator in earnest.

Hyper-parameters are ``__init__`` arguments stored as given (nothing is trained there), learned
state lives in attributes ending in ``_``; ``get_params``/``set_params``, ``clone`` and use inside
a ``Pipeline`` come from :class:`sklearn.base.BaseEstimator`. Scores follow the ecosystem:

* ``decision_function(X)``: one anomaly score per sample, higher = more anomalous (PyOD's sign);
* ``score_samples(X)``: its negative, higher = more normal (scikit-learn's outlier detectors);
* ``predict(X)``: 1 for an anomaly, 0 for normal (PyOD), ``decision_function > threshold_``;
* ``score(X, y=None)``: one number, higher = better, for model selection: the ROC-AUC of the
  anomaly scores against 0/1 labels ``y``, or without labels the mean of ``score_samples``.

Subclasses implement a handful of hooks: ``_reset()`` (drop fitted state), ``_update(batch,
fitting)`` (learn from one :class:`Batch`), ``_finish_fit()``, ``_score_batch(x)``,
``_score_map_batch(x)`` (per-pixel maps, optional). What they learn is declared, not hand-saved:
``_learned`` names the attributes that hold tensors (modules, tensors, arrays) and
``_fitted_checks`` the plain values, with their checks; ``_build_learned(device)`` makes the
learned modules' skeletons from the parameters and plain values (the same code ``fit`` uses),
so :mod:`anomalib_lite.bundles.bundle` saves and loads every detector by one generic path and checks each
tensor's name, shape and dtype before using it.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .. import distributed, progress
from .. import validate as v
from ..data.batches import Batch, frame_columns, iter_batches
from ..data.datasource import DataSource
from ..errors import AnomalyError, NotFittedError
from ..registry import COMMON_FITTED, DETECTORS, external as _external, register  # noqa: F401  (base's names)
from ..scoring.thresholds import check_fpr, fpr_threshold, p_values

__all__ = ["COMMON_FITTED", "DETECTORS", "RUN_CHECKS", "Capabilities", "Detector", "register"]

def _shape_str(shape) -> str:
    return "x".join(str(s) for s in shape)


#: checks of the run parameters most detectors share
RUN_CHECKS: dict[str, v.Check] = {
    "contamination": v.none_or(v.number(0, 0.5, lo_open=True)),
    "batch_size": v.integer(1, 1 << 16),
    "device": v.text(32),
    "seed": v.seed(),
    "verbose": v.boolean(),
}



@dataclass(frozen=True)
class Capabilities:
    """What a detector can do, declared once on its class (as scikit-learn's tags): code outside a
    detector asks these, never the detector's class."""

    #: the threshold comes from normal data held out (calibrate, cross_calibrate); False: the
    #: detector sets it itself (SupervisedRNN: the balanced loss's 0.5)
    calibrates: bool = True
    #: scoring a stream can keep learning from it (test-then-train: ``score --learn``)
    learns_online: bool = False
    #: ONNX export (``anomalib_lite.runtime.export``) through the detector's ``_onnx_graph``
    exports_onnx: bool = False
    #: per-pixel maps (``score_map``); a fitted detector may still lack them (``has_maps``)
    has_maps: bool = False
    #: a step's score says an anomaly starts within ``horizon`` steps (evaluated by lead times)
    early_warning: bool = False


#: above this, float images are read as 0 to 255 by mistake (ImageNet-normalised ones reach about 2.7)
_FLOAT_IMAGE_MAX = 10.0


class Detector(BaseEstimator):
    """Base class: fit / partial_fit / decision_function / score_map / calibrate / predict / save.

    Parameters
    ----------
    contamination : float or None, default None
        Share of the training data taken as anomalous to set ``threshold_`` at ``fit``, in-sample
        (PyOD's way); None: ``calibrate`` on held-out normal data sets it (the better way).
    device : str, default "auto"
        Where torch runs: "auto" (CUDA, then MPS, then the CPU), or a device name ("cpu", "cuda:1").
    seed : int, default 0
        Seeds every random draw of ``fit`` (the caller's random state is left as it was).
    verbose : bool, default False
        Progress bars and what was chosen, on stderr.
    """

    #: what a detector's docstring says of the run parameters it documents here
    RUN_PARAMS_DOC = "The run parameters every detector has"

    #: what this detector can do (see :class:`Capabilities`)
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: its ``anomaly fit`` sub-command (None: not on the command line) and the examples its
    #: ``--help`` shows (the arguments after ``anomaly fit COMMAND``)
    command: ClassVar[str | None] = None
    cli_examples: ClassVar[tuple[str, ...]] = ()
    #: parameters that make a fit on a few dozen small samples take about a second: the test
    #: suites (contract, scikit-learn checks, doctests) and the bundle fuzzer build every
    #: registered detector with these, so a new detector is covered by declaring them
    quick_params: ClassVar[dict] = {}

    #: what a sample is: "image" (C,H,W), "vector" (D) or "any" of those; "series": one time
    #: step (D) of a series (see anomalib_lite.detectors.series.SeriesDetector)
    input_kind: ClassVar[str] = "any"
    #: checks of every ``__init__`` parameter (types and ranges); run by ``fit`` and by ``load``
    _param_checks: ClassVar[dict[str, v.Check]] = {}
    #: parameters added after bundles of the detector were written: name -> the value that gives
    #: such a bundle's behaviour (it lacks the field)
    _params_added: ClassVar[dict[str, Any]] = {}
    #: detector-specific plain fitted values kept in bundles, with their checks
    _fitted_checks: ClassVar[dict[str, v.Check]] = {}
    #: those of them a bundle written before they existed may lack (they load as None)
    _fitted_optional: ClassVar[tuple[str, ...]] = ()
    #: attributes holding learned tensors: ``nn.Module`` (saved as its state dict), tensors, arrays
    _learned: ClassVar[tuple[str, ...]] = ()
    #: under torchrun, whether ``fit`` and scoring split the samples among the processes (rank
    #: ``r`` reads samples ``r::world``; scores are gathered back in input order). Series are one
    #: stream: every process reads all of it (their training still splits the windows, DDP)
    shards_data: ClassVar[bool] = True

    #: learned arrays that must be > 0 (scales that divide); loading refuses others
    _positive_learned: ClassVar[tuple[str, ...]] = ()
    #: what the progress bar of ``fit``'s pass over the data says
    _fit_stage: ClassVar[str] = "fit"

    # ------------------------------------------------------------------ scikit-learn
    def set_params(self, **params) -> Detector:
        valid = self._get_param_names()
        for name in params:
            if name.split("__")[0] not in valid:
                raise AnomalyError(
                    f"{type(self).__name__}: unknown parameter '{name}'; parameters are: {', '.join(valid)}"
                )
        return super().set_params(**params)

    def __sklearn_is_fitted__(self) -> bool:
        return self._is_fitted()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "outlier_detector"
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        tags.requires_fit = True
        return tags

    # ------------------------------------------------------------------ hooks
    def _check_params(self) -> None:
        """Validate every parameter (``_param_checks``, then ``_check_more``); AnomalyError."""
        v.check_all(self.get_params(deep=False), self._param_checks)
        self._check_more()

    def _check_more(self) -> None:
        """Checks that involve several parameters."""

    def _reset(self) -> None:
        raise NotImplementedError

    def _update(self, batch: Batch, fitting: bool) -> None:
        raise NotImplementedError

    def _finish_fit(self) -> None:
        pass

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _score_map_batch(self, x: torch.Tensor) -> torch.Tensor:
        raise AnomalyError(f"{type(self).__name__} has no score_map")

    def _build_learned(self, device) -> dict[str, torch.nn.Module]:
        """The learned modules' skeletons (on ``device``, e.g. "meta"), from the parameters and
        the plain fitted values: what a bundle's tensors must fit."""
        return {}

    def _learned_arrays(self) -> dict[str, tuple[tuple[int, ...], torch.dtype, str]]:
        """Expected ``(shape, dtype, "tensor" | "numpy")`` of each learned attribute that is a
        tensor or an array (not a module), from the parameters and the plain fitted values."""
        return {}

    def _after_load(self) -> None:
        """Rebuild what derives from the learned state (caches, streams) after loading."""

    # ------------------------------------------------------------------ helpers
    @property
    def _name(self) -> str:
        return type(self).__name__

    def _resolve_device(self) -> torch.device:
        """``device`` ("auto", "cpu", "cuda:1", ...) as a torch.device, or one AnomalyError."""
        import backbones

        try:
            return backbones.resolve_device(self.device)
        except backbones.BackboneError as e:
            raise AnomalyError(str(e)) from None

    def _is_fitted(self) -> bool:
        return getattr(self, "input_shape_", None) is not None

    def _require_fitted(self) -> None:
        if not self._is_fitted():
            raise NotFittedError(f"{self._name} is not fitted: call fit(normal_data) first")

    @property
    def n_features_in_(self) -> int:
        """Values per sample seen by ``fit`` (scikit-learn's name; images: C * H * W)."""
        if not self._is_fitted():
            raise AttributeError("n_features_in_: not fitted")
        return int(math.prod(self.input_shape_))

    def _after_fit(self, X) -> None:
        """PyOD's fitted attributes: ``decision_scores_``, the training data's own scores (leave-one-out
        for a memory bank; a series scored as a stream of its own), None when ``X`` could be read
        only once; with ``contamination``, ``threshold_`` from them (in-sample, PyOD's way),
        flagging that share of the training data; without, ``calibrate`` on held-out normal data
        sets it. ``labels_`` follows from both."""
        self.decision_scores_ = None
        wanted = getattr(self, "_training_scores", True) or getattr(self, "contamination", None) is not None
        if wanted and not isinstance(X, Iterator):
            self._stage = "training scores"
            try:
                self.decision_scores_ = self._in_sample_scores(X)
            finally:
                self._stage = None
        if getattr(self, "contamination", None) is not None:
            if self.decision_scores_ is None:
                raise AnomalyError("contamination= needs the training data twice; give an array, a Dataset, a "
                                   "DataLoader or a data spec rather than a one-shot iterator")
            self._set_threshold(self.decision_scores_, self.contamination)

    @property
    def labels_(self) -> np.ndarray | None:
        """PyOD's labels of the training data: 1 where ``decision_scores_ > threshold_``, else 0;
        None until there is a threshold (``contamination=`` at fit, or ``calibrate``)."""
        scores, threshold = getattr(self, "decision_scores_", None), getattr(self, "threshold_", None)
        if scores is None or threshold is None:
            return None
        return (np.asarray(scores) > threshold).astype(np.int64)

    def _in_sample_scores(self, X) -> np.ndarray:
        """Scores of the training data itself (a memory bank skips each sample's own entry)."""
        return self.decision_function(X)

    def _shard(self) -> tuple[int, int] | None:
        """``(rank, world)`` when this process reads only its share of the samples (torchrun)."""
        return (distributed.rank(), distributed.world()) if self.shards_data and distributed.active() else None

    def _batches(self, data, desc: str | None = None, shard: tuple[int, int] | None = None):
        """Normalised batches of ``data``, checked against the fitted input shape, with progress.

        Yields ``(batch, tiled)``: with tiling (a ``?tile=`` spec, or the tiling the detector was
        fitted with) the batch holds the tiles of its images, image by image, and ``tiled`` is
        ``(tiles per image, image height, image width)``; else ``tiled`` is None. ``shard``:
        only this process's samples (:meth:`_shard`).
        """
        bs = int(getattr(self, "batch_size", 256))
        it = self._iter_data(data, bs) if shard is None else iter_batches(data, bs, shard=shard)
        try:
            total = math.ceil(len(data) / (1 if shard is None else shard[1]))
        except TypeError:
            total = None
        tiling = getattr(data, "tiling", None) or getattr(self, "tiling_", None)
        unit = "step" if self.input_kind == "series" else "sample"
        with progress.bar(total, getattr(self, "_stage", None) or desc, getattr(self, "verbose", False), unit) as bar:
            for batch in it:
                n, tiled = len(batch), None
                if tiling is not None and batch.x.ndim == 4:
                    h, w = batch.x.shape[-2:]
                    tiled = (tiling.count(h, w), h, w)
                    batch = Batch(tiling.split(batch.x), None, batch.index.repeat_interleave(tiled[0]))
                self._check_input(batch)
                yield batch, tiled
                bar.update(n)  # once the caller is done with the batch

    def _iter_data(self, data, batch_size: int):
        """The normaliser for this detector's inputs (series detectors use ``iter_series``)."""
        return iter_batches(data, batch_size)

    def _check_input(self, batch: Batch) -> None:
        shape = tuple(batch.x.shape[1:])
        kind = "image" if len(shape) == 3 else "vector"
        if self.input_kind not in ("any", kind):
            raise AnomalyError(
                f"data: {self._name} takes {self.input_kind}s, got samples shaped {_shape_str(shape)}"
            )
        if kind == "image" and len(batch) and float(batch.x.amax()) > _FLOAT_IMAGE_MAX:
            warnings.warn(  # (one text: Python shows it once, however many batches)
                "data: float images with values above 10 (0 to 255, as cv2 / PIL arrays cast to float?); image "
                "detectors and backbones read float images in [0, 1] and uint8 in [0, 255]: divide by 255, or "
                "pass uint8", UserWarning, stacklevel=2)
        expected = getattr(self, "input_shape_", None)
        if expected is not None and shape != tuple(expected):
            if len(shape) == 1 and len(expected) == 1:  # scikit-learn's words for vectors
                raise AnomalyError(
                    f"data: X has {shape[0]} features, but {self._name} is expecting {expected[0]} features as input"
                )
            hint = ""
            if len(shape) == 3 and len(expected) == 3 and shape[0] == expected[0]:  # images of another size
                h, w = expected[1:]
                hint = f"; for image files, resize them with ?size={h if h == w else f'{h}x{w}'} on the data spec"
            elif len(shape) == 3 and len(expected) == 3 and {shape[0], expected[0]} == {1, 3}:  # grey / RGB
                hint = f"; for image files, read them with ?channels={expected[0]} on the data spec"
            raise AnomalyError(
                f"data: samples are {_shape_str(shape)} but {self._name} was fitted on "
                f"{_shape_str(expected)}{hint}"
            )

    def _start(self, data) -> None:
        self._check_params()
        self._reset()
        self.threshold_ = None
        self.fpr_ = None
        self.calibration_scores_ = None
        self.input_shape_ = None
        self.decision_scores_ = None
        self.n_seen_ = 0
        own = isinstance(data, DataSource)  # (a pandas object has a describe() of its own)
        found = data.labelled_anomalous() if own and self.input_kind != "series" else None
        if found is not None:  # (the command refuses them; here, as scikit-learn's fit(X), a warning)
            warnings.warn(f"fit: {found[0]} of {len(data)} samples of {data.spec} are labelled anomalous (classes "
                          f"{', '.join(found[1][:6])}) and are learned as normal; fit on the normal ones: "
                          f"?classes={','.join(map(str, data.normal_names))}", UserWarning, stacklevel=4)
        x = data[0] if isinstance(data, tuple) and len(data) == 2 else data  # ((X, y): X)
        frame = self.input_kind == "series" or (self.input_kind == "any" and hasattr(x, "columns"))  # (vectors' table)
        columns = frame_columns(x) if not own and frame else None
        self.data_info_ = data.describe() if own else None if not columns else {  # a DataFrame's columns, by name
            "spec": "a pandas DataFrame", "n": len(x), "columns": columns, "time_column": None,
            "header": None, "classes": None}
        self.tiling_ = data.tiling if own else None  # scoring tiles images the same way
        self.world_size_ = distributed.world()  # processes that fitted it (the bundle records it)

    def _learn(self, data, fitting: bool) -> None:
        """Learn from the batches of ``data``; ``fit`` under torchrun reads this process's share
        (``partial_fit`` learns its minibatch as given, in every process alike)."""
        shard = self._shard() if fitting else None
        for batch, _ in self._batches(data, desc=self._fit_stage if fitting else "partial_fit", shard=shard):
            if self.input_shape_ is None:
                self.input_shape_ = tuple(batch.x.shape[1:])
            self._update(batch, fitting)
            self.n_seen_ += len(batch)
        if shard is not None:
            counts = distributed.all_sum([self.n_seen_ if r == shard[0] else 0 for r in range(shard[1])],
                                         "counting the samples")
            if min(counts) == 0:
                raise AnomalyError(f"data: {int(sum(counts))} sample(s) for {shard[1]} processes; "
                                   "every process needs at least one to fit")
            self.n_seen_ = int(sum(counts))

    # ------------------------------------------------------------------ the contract
    def fit(self, X, y=None) -> Detector:
        """Learn from normal data ``X``: an array or tensor, ``(x, y)`` pairs, a data source, a
        torch Dataset or DataLoader, or an iterable of batches. ``y`` is ignored (unsupervised),
        except by the supervised detector."""
        self._start(X)
        self._learn(X, fitting=True)
        self._finish_fit()
        self._after_fit(X)
        return self

    def partial_fit(self, X, y=None) -> Detector:
        """Update with one minibatch (or a few); memory stays bounded."""
        if not self._is_fitted():
            self._start(X)
        self._learn(X, fitting=False)
        return self

    def decision_function(self, X) -> np.ndarray:
        """One anomaly score per sample, higher = more anomalous (tiled images: the largest of
        their tiles' scores)."""
        self._require_fitted()
        shard = self._shard()
        out, index = [], []
        with torch.inference_mode():
            for b, tiled in self._batches(X, "score", shard):
                s = self._score_batch(b.x).double().cpu()
                out.append(s if tiled is None else s.reshape(-1, tiled[0]).amax(1))
                index.append(b.index if tiled is None else b.index[:: tiled[0]])
        return _finite(self._gathered(out, index, shard, torch.float64).numpy(), "scores")

    @staticmethod
    def _gathered(parts: list, index: list, shard, dtype) -> torch.Tensor:
        """This process's rows of a scoring pass, or with ``shard`` every process's rows, in
        input order (what one process would have returned)."""
        if shard is None:
            return torch.cat(parts)
        values = torch.cat(parts) if parts else torch.empty(0, dtype=dtype)
        idx = torch.cat(index) if index else torch.empty(0, dtype=torch.int64)
        return distributed.gather_rows(values, idx)

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's convention: higher = more normal (``-decision_function``)."""
        return -self.decision_function(X)

    def score(self, X, y=None) -> float:
        """One number, higher = better, for scikit-learn's model selection: with 0/1 anomaly
        labels ``y`` the ROC-AUC of ``decision_function``, else the mean of ``score_samples``
        (how normal ``X`` looks)."""
        if y is None:
            s = self.score_samples(X)
            return float(np.nanmean(s))
        from ..scoring.metrics import roc_auc

        return roc_auc(np.asarray(y), self.decision_function(X))

    def score_map(self, X) -> np.ndarray:
        """Per-pixel anomaly maps (N, H, W) at input resolution (tiled images: the tiles' maps
        stitched, averaged where they overlap)."""
        self._require_fitted()
        tiling = getattr(X, "tiling", None) or getattr(self, "tiling_", None)
        shard = self._shard()
        out, index = [], []
        with torch.inference_mode():
            for b, tiled in self._batches(X, "score_map", shard):
                m = self._score_map_batch(b.x).float().cpu()
                out.append(m if tiled is None else tiling.stitch(m, tiled[1], tiled[2]))
                index.append(b.index if tiled is None else b.index[:: tiled[0]])
        if shard is not None and not out:  # an empty share (more processes than samples)
            out = [torch.empty((0, 0, 0))]
        return _finite(self._gathered(out, index, shard, torch.float32).numpy(), "maps")

    def _score_and_map_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and maps of a batch; detectors whose scores come from their maps override it
        to compute them in one pass."""
        return self._score_batch(x), self._score_map_batch(x)

    def _scores_and_maps(self, data):
        """``(scores, maps)`` per batch of ``data`` (numpy), for evaluations that need both."""
        self._require_fitted()
        tiling = getattr(data, "tiling", None) or getattr(self, "tiling_", None)
        shard = self._shard()
        scores, maps, index = [], [], []
        with torch.inference_mode():
            for b, tiled in self._batches(data, "score", shard):
                s, m = self._score_and_map_batch(b.x)
                s, m = s.double().cpu(), m.float().cpu()
                if tiled is not None:
                    s, m = s.reshape(-1, tiled[0]).amax(1), tiling.stitch(m, tiled[1], tiled[2])
                if shard is None:
                    yield _finite(s.numpy(), "scores"), _finite(m.numpy(), "maps")
                else:  # gathered at the end, in input order
                    scores.append(s)
                    maps.append(m)
                    index.append(b.index if tiled is None else b.index[:: tiled[0]])
        if shard is not None:
            if not maps:  # an empty share (more processes than samples)
                maps = [torch.empty((0, 0, 0))]
            yield (_finite(self._gathered(scores, index, shard, torch.float64).numpy(), "scores"),
                   _finite(self._gathered(maps, index, shard, torch.float32).numpy(), "maps"))

    def calibrate(self, normal, fpr: float = 0.01, _in_sample: bool = False) -> Detector:
        """Set ``threshold_`` so that about ``fpr`` of normal data is flagged (conformal)."""
        check_fpr(fpr)  # (before the scoring, which may take minutes)
        self._stage = "calibrate"  # what the progress bar says
        try:
            scores = self._in_sample_scores(normal) if _in_sample else self.decision_function(normal)
        finally:
            self._stage = None
        return self._set_threshold(scores, fpr, hint="; cross_calibrate(training data, fpr) scores every "
                                   "training sample by a model fitted without it, so all of them count")

    def _set_threshold(self, scores: np.ndarray, fpr: float, hint: str = "") -> Detector:
        """``threshold_`` (and ``fpr_``, the sorted calibration scores) from normal ``scores``."""
        self.threshold_ = fpr_threshold(scores, fpr, hint)
        self.fpr_ = float(fpr)
        self.calibration_scores_ = np.sort(scores)
        return self

    def cross_calibrate(self, X, fpr: float = 0.01, folds: int = 5, seed: int = 0) -> Detector:
        """Calibrate on the training data itself by cross-fitting, so every normal sample counts.

        ``X`` is what this detector was fitted on. It is cut into ``folds`` random parts; each
        part is scored by a clone fitted on the other parts, and those out-of-fold scores (one per
        sample, none from a model that saw it) set ``threshold_`` as a held-out share's would
        (cross-conformal: Vovk 2015; CV+, Barber et al. 2021). With n samples the threshold can
        certify rates down to 1/(n+1) instead of the hold-out's 1/(n/10+1). Costs ``folds`` fits.
        The folds' fits give no warnings: what their data would warn of, the fit on all of it said.
        """
        self._require_fitted()
        check_fpr(fpr)
        if self.input_kind == "series":
            raise AnomalyError(f"{self._name}: a series is calibrated on its held-out end (calibrate), "
                               "not by cross-fitting")
        n = _n_samples(X)
        folds = int(folds)
        if folds < 2 or n < 2 * folds:
            raise AnomalyError(f"cross-fitting: {n} samples cannot make {folds} folds of at least 2 (folds >= 2)")
        order = np.random.default_rng(seed).permutation(n)
        scores = np.empty(n)
        for k in range(folds):
            held = np.sort(order[k::folds])
            rest = np.sort(np.setdiff1d(order, held))
            part = self._fold_clone()
            with warnings.catch_warnings():  # (what a fold's data would warn of, the whole data's fit said once)
                warnings.simplefilter("ignore", UserWarning)
                scores[held] = part.fit(_take(X, rest)).decision_function(_take(X, held))
        return self._set_threshold(scores, fpr)

    def _fold_clone(self) -> Detector:
        """A fresh, quiet copy of this detector with its parameters, for one cross-fitting fold."""
        from sklearn.base import clone

        part = clone(self)
        part._training_scores = False  # a fold's own decision_scores_ would be a wasted pass
        return part.set_params(verbose=False) if "verbose" in part.get_params() else part

    def _maps_available(self) -> bool:
        """Whether this fitted detector gives maps (its class may, a fitted one may have opted out)."""
        return self.capabilities.has_maps

    def _onnx_graph(self):
        """The torch module an ONNX graph is exported from (detectors with ``exports_onnx``)."""
        raise AnomalyError(f"{type(self).__name__}: no ONNX export (capabilities.exports_onnx is False)")

    def _require_calibrated(self) -> None:
        if getattr(self, "threshold_", None) is None:
            raise AnomalyError(
                f"{self._name} is not calibrated: call calibrate(normal_data, fpr=0.01) first"
            )

    def predict(self, X) -> np.ndarray:
        """1 where ``decision_function(X) > threshold_`` (an anomaly), else 0 (PyOD's labels)."""
        self._require_fitted()
        self._require_calibrated()
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def fit_predict(self, X, y=None, fpr: float = 0.01) -> np.ndarray:
        """Fit on ``X``, calibrate on ``X`` itself at ``fpr``, and return ``predict(X)``: the
        ``fpr`` share of ``X`` that looks least normal. In-sample: for a threshold that holds on
        new data, calibrate on held-out normal data instead."""
        self.fit(X, y)
        self.calibrate(X, fpr=fpr)
        return self.predict(X)

    def p_values(self, scores) -> np.ndarray:
        """Conformal p-values of given scores against the calibration scores."""
        self._require_calibrated()
        return p_values(scores, self.calibration_scores_)

    def summary(self) -> str:
        """One line on what was learned, for the CLI and the bundle's header; may be empty. A
        trained detector's: how its network was trained (``history_``: epochs run of those asked,
        why it stopped, and which epoch's weights it kept, judged on how many held-out samples)."""
        h = getattr(self, "history_", None)
        if h is None or not h.train_loss:
            return ""
        from ..training.loop import describe

        unit = "crop" if self.input_kind == "series" else "sample"  # (a series trains on crops of it)
        return "trained " + describe(h, int(self.epochs), self.patience, unit)

    def save(self, path, sign=None) -> None:
        """Write a one-file ``.anomaly`` bundle (safetensors + JSON header), atomically;
        ``sign``: an Ed25519 private key file that signs the whole file (``anomaly keygen``)."""
        from ..bundles.bundle import save

        save(self, path, sign=sign)

    # ------------------------------------------------------------------ generic state
    def _bundle_params(self) -> dict[str, Any]:
        """The parameters a bundle records: as given, but an augmentation given as a file is
        recorded as its config, so a bundle never needs another file."""
        params = self.get_params(deep=False)
        pipeline = getattr(self, "_pipeline", None)
        if params.get("augment") is not None and pipeline is not None:
            params["augment"] = pipeline.to_config()
        return params

    def _fitted_values(self) -> dict[str, Any]:
        """The plain fitted values a bundle keeps (common ones and ``_fitted_checks``)."""
        names = [*COMMON_FITTED, *self._fitted_checks]
        return {n: getattr(self, n, None) for n in names}

    def _learned_state(self) -> dict[str, torch.Tensor]:
        """Every learned tensor, flat: ``attr.key`` for modules, ``attr`` for tensors/arrays."""
        out: dict[str, torch.Tensor] = {}
        for name in self._learned:
            value = getattr(self, name, None)
            if value is None:
                continue
            key = name.rstrip("_")
            if _external(value):
                continue  # ImageNet weights: referenced by name and hash, restored from the cache
            if isinstance(value, torch.nn.Module):
                out.update({f"{key}.{k}": t for k, t in value.state_dict().items()})
            else:
                out[key] = torch.as_tensor(value)
        return out


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    """``values``, unless some are NaN or infinite: inputs are checked finite, so that only
    happens when the learned values are out of range (a damaged or forged bundle)."""
    ok = np.isfinite(values)
    if not ok.all():
        raise AnomalyError(f"{what}: {int((~ok).sum())} of {ok.size} are NaN or infinite: the model's learned "
                           "values are out of range (a damaged or forged bundle?)")
    return values


def _n_samples(X) -> int:
    """How many samples cross-fitting can cut ``X`` into: data with random access only."""
    if isinstance(X, tuple) and len(X) == 2:
        return _n_samples(X[0])
    if hasattr(X, "subset") or isinstance(X, (np.ndarray, torch.Tensor)):
        return len(X)
    raise AnomalyError("cross-fitting needs data with random access (an array, a tensor or a data spec's "
                       f"source), got {type(X).__name__}")


def _take(X, idx: np.ndarray):
    """The samples ``idx`` of ``X`` (a data source, an array, a tensor or an ``(x, y)`` pair)."""
    if isinstance(X, tuple):
        return tuple(_take(part, idx) for part in X)
    if hasattr(X, "subset"):
        return X.subset(idx)
    return X[torch.as_tensor(idx)] if isinstance(X, torch.Tensor) else X[idx]
