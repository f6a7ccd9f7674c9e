"""The detector contract shared by all five detectors.

scikit-learn's shape: hyper-parameters in ``__init__`` (stored as given, nothing trained there),
learned state in attributes ending in ``_``. Subclasses implement a handful of hooks:

* ``_reset()`` drop fitted state;  ``_update(batch, fitting)`` learn from one :class:`Batch`;
* ``_finish_fit()`` after the last batch of ``fit`` (e.g. reduce a memory bank);
* ``_score_batch(x)`` one score per sample;  ``_score_map_batch(x)`` per-pixel maps (optional);
* ``_get_state()`` / ``_set_state()`` tensors + JSON for bundles.

Everything else (input normalisation, shape checks, calibration, p-values, predict, progress,
saving) lives here once.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import Batch, iter_batches
from .errors import AnomalyError
from .thresholds import fpr_threshold, p_values

__all__ = ["DETECTORS", "Detector", "register"]

DETECTORS: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Make a detector class loadable from bundles (the only classes a bundle may name)."""
    DETECTORS[cls.__name__] = cls
    return cls


def _shape_str(shape) -> str:
    return "x".join(str(s) for s in shape)




class Detector:
    """Base class: fit / partial_fit / score / score_map / calibrate / predict / save."""

    #: what a sample is: "image" (C,H,W), "vector" (D) or "any" of those; "series": one time
    #: step (D) of a series (see anomalib_lite.series.SeriesDetector)
    input_kind: ClassVar[str] = "any"

    # ------------------------------------------------------------------ sklearn plumbing
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> Detector:
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise AnomalyError(
                    f"{type(self).__name__}: unknown parameter '{name}'; parameters are: {', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = [
            f"{n}={getattr(self, n)!r}"
            for n, p in sig.parameters.items()
            if n != "self" and getattr(self, n) != p.default
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # ------------------------------------------------------------------ hooks
    def _check_params(self) -> None:
        """Validate hyper-parameters (called by fit); raise AnomalyError naming the parameter."""

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

    def _get_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        raise NotImplementedError

    def _set_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @property
    def _name(self) -> str:
        return type(self).__name__

    def _is_fitted(self) -> bool:
        return getattr(self, "input_shape_", None) is not None

    def _require_fitted(self) -> None:
        if not self._is_fitted():
            raise AnomalyError(f"{self._name} is not fitted: call fit(normal_data) first")

    def _batches(self, data, desc: str | None = None):
        """Normalised batches of ``data``, checked against the fitted input shape, with progress.

        Yields ``(batch, tiled)``: with tiling (a ``?tile=`` spec, or the tiling the detector was
        fitted with) the batch holds the tiles of its images, image by image, and ``tiled`` is
        ``(tiles per image, image height, image width)``; else ``tiled`` is None.
        """
        bs = int(getattr(self, "batch_size", 256))
        it = self._iter_data(data, bs)
        try:
            total = math.ceil(len(data) / bs)
        except TypeError:
            total = None
        verbose = getattr(self, "verbose", False)
        bar = tqdm(it, total=total, desc=desc, unit="batch", leave=False, disable=None if verbose else True)
        tiling = getattr(data, "tiling", None) or getattr(self, "tiling_", None)
        for batch in bar:
            tiled = None
            if tiling is not None and batch.x.ndim == 4:
                h, w = batch.x.shape[-2:]
                tiled = (tiling.count(h, w), h, w)
                batch = Batch(tiling.split(batch.x), None, batch.index.repeat_interleave(tiled[0]))
            self._check_input(batch)
            yield batch, tiled

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
        expected = getattr(self, "input_shape_", None)
        if expected is not None and shape != tuple(expected):
            raise AnomalyError(
                f"data: samples are {_shape_str(shape)} but {self._name} was fitted on "
                f"{_shape_str(expected)}"
            )

    def _start(self, data) -> None:
        self._check_params()
        self._reset()
        self.threshold_ = None
        self.fpr_ = None
        self.calibration_scores_ = None
        self.input_shape_ = None
        self.n_seen_ = 0
        self.data_info_ = data.describe() if hasattr(data, "describe") else None
        self.tiling_ = getattr(data, "tiling", None)  # scoring tiles images the same way

    def _learn(self, data, fitting: bool) -> None:
        for batch, _ in self._batches(data, desc="fit" if fitting else "partial_fit"):
            if self.input_shape_ is None:
                self.input_shape_ = tuple(batch.x.shape[1:])
            self._update(batch, fitting)
            self.n_seen_ += len(batch)

    # ------------------------------------------------------------------ the contract
    def fit(self, data) -> Detector:
        """Learn from normal data (anything :func:`anomalib_lite.data.iter_batches` accepts)."""
        self._start(data)
        self._learn(data, fitting=True)
        self._finish_fit()
        return self

    def partial_fit(self, batch) -> Detector:
        """Update with one minibatch (or a few); memory stays bounded."""
        if not self._is_fitted():
            self._start(batch)
        self._learn(batch, fitting=False)
        return self

    def score(self, data) -> np.ndarray:
        """One anomaly score per sample; higher is more anomalous (tiled images: the largest
        of their tiles' scores)."""
        self._require_fitted()
        out = []
        with torch.inference_mode():
            for b, tiled in self._batches(data, "score"):
                s = self._score_batch(b.x).double().cpu()
                out.append(s if tiled is None else s.reshape(-1, tiled[0]).amax(1))
        return torch.cat(out).numpy()

    def score_map(self, data) -> np.ndarray:
        """Per-pixel anomaly maps (N, H, W) at input resolution (tiled images: the tiles' maps
        stitched, averaged where they overlap)."""
        self._require_fitted()
        tiling = getattr(data, "tiling", None) or getattr(self, "tiling_", None)
        out = []
        with torch.inference_mode():
            for b, tiled in self._batches(data, "score_map"):
                m = self._score_map_batch(b.x).float().cpu()
                out.append(m if tiled is None else tiling.stitch(m, tiled[1], tiled[2]))
        return torch.cat(out).numpy()

    def _score_and_map_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and maps of a batch; detectors whose scores come from their maps override it
        to compute them in one pass."""
        return self._score_batch(x), self._score_map_batch(x)

    def _scores_and_maps(self, data):
        """``(scores, maps)`` per batch of ``data`` (numpy), for evaluations that need both."""
        self._require_fitted()
        tiling = getattr(data, "tiling", None) or getattr(self, "tiling_", None)
        with torch.inference_mode():
            for b, tiled in self._batches(data, "score"):
                s, m = self._score_and_map_batch(b.x)
                s, m = s.double().cpu(), m.float().cpu()
                if tiled is not None:
                    s, m = s.reshape(-1, tiled[0]).amax(1), tiling.stitch(m, tiled[1], tiled[2])
                yield s.numpy(), m.numpy()

    def calibrate(self, normal, fpr: float = 0.01) -> Detector:
        """Set ``threshold_`` so that about ``fpr`` of normal data is flagged (conformal)."""
        scores = self.score(normal)
        self.threshold_ = fpr_threshold(scores, fpr)
        self.fpr_ = float(fpr)
        self.calibration_scores_ = np.sort(scores)
        return self

    def _require_calibrated(self) -> None:
        if getattr(self, "threshold_", None) is None:
            raise AnomalyError(
                f"{self._name} is not calibrated: call calibrate(normal_data, fpr=0.01) first"
            )

    def predict(self, data) -> np.ndarray:
        """``score > threshold_`` as bool."""
        self._require_fitted()
        self._require_calibrated()
        return self.score(data) > self.threshold_

    def p_values(self, scores) -> np.ndarray:
        """Conformal p-values of given scores against the calibration scores."""
        self._require_calibrated()
        return p_values(scores, self.calibration_scores_)

    def summary(self) -> str:
        """One line on what was learned (e.g. a memory bank's size), for the CLI; may be empty."""
        return ""

    def save(self, path, sign=None) -> None:
        """Write a one-file ``.anomaly`` bundle (safetensors + JSON header), atomically;
        ``sign``: an Ed25519 private key file that signs the whole file (``anomaly keygen``)."""
        from .bundle import save

        save(self, path, sign=sign)
