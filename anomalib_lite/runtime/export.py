"""ONNX export: a fitted detector as one ONNX graph that onnxruntime runs without Python's torch.

What the graph takes: ``images``, float32 (N, C, H, W) in [0, 1] at the fitted C, H and W (N is
free): what the detector's data normaliser makes of its input (8-bit pixels divided by 255,
grey images with one channel). Everything after that is in the graph: the backbone's own
preprocessing (channel adapt, resize, mean/std), the features, the scoring. What it gives:
``score`` (N,), higher = more anomalous, the detector's ``decision_function``; and
``score_map`` (N, H, W), its ``score_map``, where the detector has maps. The threshold and the
bundle's key facts are in the model's ``metadata_props`` (:func:`read_metadata` reads them;
``is_anomaly = score > threshold``).

Exported: ``LatentDistance``, the extractor and the distance in one graph. ``method="knn"``:
the bank is a constant, stored as the bundle stores it (float16 by default) and searched in
float32: candidates by ``|b|^2 - 2 q.b`` (one matrix product), then the exact distances to them,
as :class:`anomalib_lite.components.memory.KnnIndex` does; the same ``k``, ``image_score`` and
``reweight`` (PatchCore's re-weighting reads each bank row's neighbours from a table computed at
export). ``method="gaussian"``: the Mahalanobis distance with the precision matrices as
constants, in float64 as torch computes it. ``Reconstruction``: the autoencoder and its error
(``mc_samples=1``). Anything else is refused in one line. onnxruntime's scores equal torch's
within :data:`TOLERANCE`, maps within :data:`MAP_TOLERANCE`. The graph holds one batch's
patches times the bank's rows at once (about 31 MB per 224 px image for a 10,000-row bank); the
torch path works in bounded chunks.

Needs the ``export`` extra: ``pip install -e ".[export]"`` (onnx, onnxruntime, onnxscript, which
``torch.onnx.export`` needs).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..detectors.base import DETECTORS, Detector
from ..bundles.bundle import FORMAT_VERSION, _jsonable
from ..errors import AnomalyError
from ..io import atomic_output, check_outputs, check_writable

__all__ = ["MAP_TOLERANCE", "METADATA_KEY", "OPSET", "TOLERANCE", "export_onnx", "onnx_graph", "read_metadata"]

#: scores: |onnxruntime - torch| <= TOLERANCE * max(1, |torch|) (absolute below 1, relative above)
TOLERANCE = 1e-4
#: maps, the same way. Looser: where two bank rows are almost equally near a patch, the float32
#: candidate search (torch's and the graph's alike) may pick either, and their exact distances
#: differ by up to about 1e-7 (|q|^2 + |b|^2) / d: 2e-4 to 6e-4 for small distances (d ~ 0.6)
#: between resnet18 features (|q| ~ 43) at 224 px. An image score, the largest patch distance,
#: sits far from the bank, where this vanishes.
MAP_TOLERANCE = 1e-3
#: the ONNX opset the graphs are written in (Resize with antialias needs 18)
OPSET = 18
#: metadata_props key of the JSON description (detector, parameters, threshold, input, ...)
METADATA_KEY = "anomalib_lite"
_MAX_BYTES = 2_000_000_000  # one ONNX protobuf file holds < 2 GB


def _require_onnx():
    """One AnomalyError when the exporter cannot run here: torch before 2.6 (no dynamo exporter
    with dynamic shapes; tested with 2.14) or the export extra missing."""
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 6):
        raise AnomalyError(f"ONNX export needs torch >= 2.6 (its dynamo exporter); this is torch {torch.__version__}")
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise AnomalyError(f"ONNX export needs the export extra: pip install 'anomalib_lite[export]' "
                           f"({e.name} is missing)") from None


def _refuse_unsupported(det: Detector) -> None:
    """One AnomalyError naming what cannot be exported exactly."""
    name = type(det).__name__
    if not det.capabilities.exports_onnx:
        exporters = sorted(n for n, c in DETECTORS.items() if c.capabilities.exports_onnx)
        raise AnomalyError(f"{name}: ONNX export covers {' and '.join(exporters)}")
    if getattr(det, "tiling_", None) is not None:
        raise AnomalyError(f"{name}: fitted on tiles (?tile=); ONNX export takes whole images, fit without tiling")


def onnx_graph(det: Detector) -> nn.Module:
    """The module that the ONNX graph is exported from (on the CPU, in eval mode); it scores as
    the detector does: ``graph(images)`` -> (score,) or (score, score_map)."""
    _refuse_unsupported(det)
    det._require_fitted()
    graph = det._onnx_graph()
    return copy.deepcopy(graph).to("cpu").eval()  # a copy: the detector stays on its device


def metadata(det: Detector, bundle=None) -> dict:
    """What the ONNX file records of the detector (JSON under :data:`METADATA_KEY`)."""
    from ..bundles.bundle import _versions

    shape = list(det.input_shape_)
    graph_maps = len(shape) == 3 and det._maps_available()
    return _jsonable({
        "format": "anomalib_lite.onnx",
        "bundle_format_version": FORMAT_VERSION,
        "bundle": None if bundle is None else Path(bundle).name,
        "detector": type(det).__name__,
        "params": {k: v for k, v in det._bundle_params().items() if k not in ("device", "verbose")},
        "backbone": getattr(det, "backbone_", None),
        "input": {"name": "images", "shape": ["N", *shape], "dtype": "float32",
                  "range": "[0, 1] (8-bit pixels / 255)", "layout": "NCHW" if len(shape) == 3 else "ND"},
        "outputs": ["score", "score_map"] if graph_maps else ["score"],
        "threshold": det.threshold_,
        "fpr": det.fpr_,
        "normal_classes": (det.data_info_ or {}).get("classes"),
        "summary": det.summary(),
        "tolerance": {"score": TOLERANCE, "score_map": MAP_TOLERANCE,
                      "rule": "|onnx - torch| <= tolerance * max(1, |torch|)"},
        "versions": _versions(),
    })


def export_onnx(det: Detector, out, bundle=None, opset: int = OPSET) -> Path:
    """Write ``det`` as an ONNX model to ``out`` (atomically; never over the ``bundle`` it came
    from), with the threshold and the bundle's key facts in ``metadata_props``. Returns the path."""
    _require_onnx()
    import onnx

    out = check_writable(out, "ONNX model")
    check_outputs({"ONNX model": out}, [bundle] if bundle is not None else [])
    graph = onnx_graph(det)
    size = sum(t.numel() * t.element_size() for t in [*graph.parameters(), *graph.buffers()])
    if size > _MAX_BYTES:
        raise AnomalyError(f"{type(det).__name__}: {size / 1e9:.1f} GB of weights and bank; one ONNX file holds "
                           "under 2 GB (lower memory_size)")
    example = torch.rand(2, *det.input_shape_)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        names = ["score", "score_map"] if len(graph(example)) == 2 else ["score"]
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            program = torch.onnx.export(graph, (example,), input_names=["images"], output_names=names,
                                        dynamic_shapes={"images": {0: batch}}, opset_version=opset,
                                        dynamo=True, external_data=False, verbose=False)
    model = program.model_proto
    model.doc_string = "anomalib_lite: images (N,C,H,W) float32 in [0,1] -> score (N,) [, score_map (N,H,W)]"
    meta = metadata(det, bundle)
    props = {METADATA_KEY: json.dumps(meta), "threshold": "" if det.threshold_ is None else repr(float(det.threshold_)),
             "detector": meta["detector"], "input_shape": json.dumps(meta["input"]["shape"])}
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_output(out, "ONNX model") as tmp:
        onnx.save_model(model, str(tmp))
    return out


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON description an exported ONNX file carries (threshold, detector, input, ...)."""
    _require_onnx()
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise AnomalyError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise AnomalyError(f"{path}: an ONNX model, but not one exported by anomalib_lite")
    return json.loads(props[METADATA_KEY])
