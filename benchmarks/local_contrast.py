"""The patch score as the worst patch against the image's own patches: does it remove the drift
between parts of a photograph? (issue 18; a rule tried on the dev half, not kept)

Good test crops come from another part of each photograph than the training crops, so every patch
of a good crop can sit a little farther from the bank. Scoring the map's maximum relative to the
same map's typical value (its median, its 90th percentile, its MAD) would cancel such a shift and
keep a local defect. The map's mean over its largest 0.5, 2 or 5 % of pixels (top-k pooling) counts
a faint defect's whole area instead of its worst pixel. Image ROC-AUC per category of the
inspection set, for the raw-pixel route and the dense (offline `fit`) route, fitted on 180
training crops.

Run:  python benchmarks/local_contrast.py --data DIR [--half dev] [--routes raw,dense] [--no-record]
      (DIR: a set `sample_data.make_image_set` wrote)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from inspection import set_parser  # noqa: E402

RULES = {
    "max (the patch score)": lambda mx, flat: mx,
    "max - median": lambda mx, flat: mx - np.median(flat, 1),
    "max / median": lambda mx, flat: mx / (np.median(flat, 1) + 1e-9),
    "(max - median) / MAD": lambda mx, flat: (mx - np.median(flat, 1))
    / (np.median(np.abs(flat - np.median(flat, 1)[:, None]), 1) + 1e-9),
    "max - 90th percentile": lambda mx, flat: mx - np.quantile(flat, 0.9, 1),
    "mean of the top 0.5 %": lambda mx, flat: _top_mean(flat, 0.005),
    "mean of the top 2 %": lambda mx, flat: _top_mean(flat, 0.02),
    "mean of the top 5 %": lambda mx, flat: _top_mean(flat, 0.05),
}


def _top_mean(flat: np.ndarray, share: float) -> np.ndarray:
    """Each map's mean over its largest ``share`` of pixels (top-k pooling: a defect's whole area
    counts, not only its single worst pixel)."""
    k = max(1, round(share * flat.shape[1]))
    return np.sort(flat, 1)[:, -k:].mean(1)


def image_study(args) -> list[str]:
    """What every study of the inspection set does first: 2 torch threads, ImageNet weights made
    absent (the offline route is measured), and the half's categories."""
    import backbones
    from anomalib_lite.data.sample_data import HALVES

    torch.set_num_threads(2)
    backbones.weights.imagenet_cached = lambda name: False
    return list(HALVES[args.half]["categories"])


def fitted_route(route: str, data: Path, cat: str, n: int = 180):
    """(detector fitted on the first ``n`` training crops of ``cat``, test source): route "dense" is
    the offline route `anomaly fit --data` fits (run with ImageNet weights made absent), "raw" is
    LatentDistance on raw pixels by its patch score."""
    import anomalib_lite as al
    from anomalib_lite.app.workflows import choose_detector

    train, test = al.load_data(str(data / cat / "train")), al.load_data(str(data / cat / "test"))
    det = choose_detector(train, device="cpu")[0] if route == "dense" else \
        al.LatentDistance(image_score="patch", device="cpu")
    return det.fit(train.read(list(range(n)))[0]), test


def patch_features(det, images) -> torch.Tensor:
    """(n, d, h, w) patch features of ``images`` (a source or an array) as the fitted detector
    extracts them."""
    out = []
    with torch.inference_mode():
        for b, _ in det._batches(images):
            for part in det._chunks(b.x):
                out.append(det.featurizer_.patches(part).float())
    return torch.cat(out)


def test_truth(test) -> tuple[np.ndarray, np.ndarray]:
    """(image labels, bool pixel masks (n, H, W)) of a test source."""
    return np.asarray(test.anomaly_labels()), np.asarray(test.read_masks(range(len(test)))) > 0


def map_figures(dist: torch.Tensor, labels: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """(image ROC-AUC by the map's maximum, pixel ROC-AUC) in % of patch distances (n, h, w),
    upsampled to the masks' size."""
    from anomalib_lite.numeric import patch_maps
    from anomalib_lite.scoring.metrics import roc_auc

    maps = patch_maps(dist, tuple(masks.shape[-2:])).numpy()
    return (100 * roc_auc(labels, maps.reshape(len(maps), -1).max(1)),
            100 * roc_auc(masks.reshape(-1), maps.reshape(-1)))


def pair_header(first: list[str], cats: list[str]) -> list[str]:
    """The header and rule of a :func:`pair_lines` table."""
    cols = first + cats + ["mean image", "mean pixel"]
    return [f"| {' | '.join(cols)} |", "|" + "---|" * len(cols)]


def pair_lines(table: dict, first: list[str]) -> list[str]:
    """Markdown rows of ``{rule: [(image, pixel) per category]}``: the ``first`` cells, each
    category's pair, then the means of each."""
    return [f"| {' | '.join(first + [rule])} | " + " | ".join(f"{i:.1f} / {p:.1f}" for i, p in row)
            + f" | **{np.mean([i for i, _ in row]):.1f}** | **{np.mean([p for _, p in row]):.1f}** |"
            for rule, row in table.items()]


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--routes", default="raw,dense")
    args = ap.parse_args()
    from anomalib_lite.scoring.metrics import roc_auc

    cats = image_study(args)
    lines = [f"| route | rule | {' | '.join(cats)} | mean |", "|" + "---|" * (len(cats) + 3)]
    for route in args.routes.split(","):
        table = {rule: [] for rule in RULES}
        for cat in cats:
            t = time.perf_counter()
            det, test = fitted_route(route, args.data, cat)
            flat = det.score_map(test).reshape(len(test), -1)
            labels = np.asarray(test.anomaly_labels())
            for rule, f in RULES.items():
                table[rule].append(100 * roc_auc(labels, f(flat.max(1), flat)))
            print(cat, route, f"{time.perf_counter() - t:.0f} s", flush=True)
        for rule, row in table.items():
            lines.append(f"| {route} | {rule} | " + " | ".join(f"{v:.1f}" for v in row) + f" | **{np.mean(row):.1f}** |")
            print(lines[-1], flush=True)
    body = (f"Inspection set, **{args.half} half**, 128 px, 180 training crops per category: image ROC-AUC (%) of "
            "the patch map scored by its maximum and by the maximum relative to the same map's typical value.\n\n"
            + "\n".join(lines))
    record.publish(f"Images: the worst patch against the image's own patches, {args.half} half (issue 18)", body,
                   args.no_record)


if __name__ == "__main__":
    main()
