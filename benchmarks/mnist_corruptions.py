"""Digits under corruptions of the kind MNIST-C applies: does the default detector flag a corrupted
digit, and does it still tell the other digits from the normal one when every image is corrupted?

``LatentDistance()`` with every default (``anomaly fit latent``'s; the combined image score) fits
MNIST's clean training 7s less a tenth, and the tenth calibrates it at 5 %. For each corruption
(augment's ops, and thinning / thickening of the strokes by a 2 x 2 min / max filter):

* **flagged**: the 1,028 clean test 7s against the same 7s corrupted: ROC-AUC, and the share of the
  corrupted 7s the 5 % threshold flags (a camera fault, a smudged scan: data unlike the training
  data should be flagged);
* **outliers**: a lot of the 1,028 test 7s and 114 other test digits, every image corrupted: the
  ROC-AUC of the other digits against the 7s, scored as it is and with ``set_context`` (60 reference
  images drawn from the lot: mutual scoring, for a batch that drifted as a whole).

The corruptions are split before any result was computed: alternate ones in the order below form
the development half and the others the held-out half (``HALVES``); the tables give both, and the
mean of each half.

Run:  python benchmarks/mnist_corruptions.py [--no-record]   (MNIST from ANOMALY_DATA_DIR; about 6
      minutes on 2 cores)
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from anomalib_lite.scoring.metrics import roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from context_digits import sevens_and_lot  # noqa: E402

#: MNIST-C-like corruptions: augment's steps, or the name of a stroke filter of this script
CORRUPTIONS = {
    "Gaussian noise sd 0.3": [{"op": "gaussian_noise", "sigma": 0.3}],
    "impulse noise 10 %": [{"op": "salt_pepper", "amount": 0.1}],
    "blur sigma 1 px": [{"op": "blur", "sigma": [1.0, 1.0]}],
    "shear up to 27 deg": [{"op": "affine", "shear": 27}],
    "scale 0.6-1.4": [{"op": "affine", "scale": [0.6, 1.4]}],
    "rotation up to 30 deg": [{"op": "affine", "rotate": 30}],
    "brightness + 0.4": [{"op": "brightness", "delta": [0.4, 0.4]}],
    "shift up to 4 px": [{"op": "affine", "translate": 4 / 28}],
    "contrast x 0.3": [{"op": "contrast", "factor": 0.3}],
    "elastic (alpha 8 px, sigma 3 px)": [{"op": "elastic", "alpha": 8, "sigma": 3}],
    "gamma 0.5-2": [{"op": "gamma", "gamma": [0.5, 2.0]}],
    "erasing (a black rectangle, 20-30 % of each side)": [{"op": "erasing", "size": [0.2, 0.3]}],
    "perspective (corners moved 10-15 %)": [{"op": "perspective", "distortion": [0.1, 0.15]}],
    "thinner strokes (2 x 2 min filter)": "thin",
    "thicker strokes (2 x 2 max filter)": "thick",
    "inverted": "invert",
}
HALVES = {"dev": list(CORRUPTIONS)[0::2], "held-out": list(CORRUPTIONS)[1::2]}


def corrupt(x: torch.Tensor, name: str, seed: int = 0) -> torch.Tensor:
    """``x`` (N, 1, 28, 28) in [0, 1] under the corruption ``name``."""
    steps = CORRUPTIONS[name]
    if steps == "invert":
        return 1 - x
    if steps in ("thin", "thick"):
        pad = torch.nn.functional.pad(x if steps == "thick" else -x, (0, 1, 0, 1), mode="replicate")
        out = torch.nn.functional.max_pool2d(pad, 2, stride=1)
        return out if steps == "thick" else -out
    import augment

    return augment.Pipeline.from_config({"seed": seed, "steps": steps})(x, indices=np.arange(len(x))).clamp(0, 1)


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0, load = time.perf_counter(), os.getloadavg()
    det, x, digits, lot = sevens_and_lot()
    sevens = np.flatnonzero(digits == 7)
    clean7 = det.decision_function(x[sevens])
    rows, figures = [], {}
    for name in CORRUPTIONS:
        bad7 = det.decision_function(corrupt(x[sevens], name))
        flagged = roc_auc(np.r_[np.zeros(len(clean7)), np.ones(len(bad7))], np.r_[clean7, bad7])
        share = float((bad7 > det.threshold_).mean())
        b, y = corrupt(x[lot], name, seed=1), (digits[lot] != 7).astype(int)
        det.set_context(b, images=0)
        plain = roc_auc(y, det.decision_function(b))
        det.set_context(b)
        mutual = roc_auc(y, det.decision_function(b))
        det.set_context(b, images=0)
        half = "dev" if name in HALVES["dev"] else "held-out"
        figures[name] = (flagged, share, plain, mutual)
        rows.append(f"| {name} | {half} | {100 * flagged:.2f} | {100 * share:.1f} % | {100 * plain:.2f} | {100 * mutual:.2f} |")
        print(rows[-1], flush=True)
    clean_share = float((clean7 > det.threshold_).mean())
    for half, names in HALVES.items():
        m = np.mean([figures[n] for n in names], axis=0)
        rows.append(f"| **mean, {half} half** | | **{100 * m[0]:.2f}** | **{100 * m[1]:.1f} %** | **{100 * m[2]:.2f}** "
                    f"| **{100 * m[3]:.2f}** |")
    body = (
        "`LatentDistance()` with every default (the combined image score), fitted on MNIST's clean training 7s less "
        "a tenth, calibrated on the tenth at 5 %. **Flagged**: ROC-AUC of the 1,028 test 7s corrupted against the "
        "same 7s clean, and the share of the corrupted 7s above the 5 % threshold (clean test 7s: "
        f"{100 * clean_share:.1f} %). **Outliers**: ROC-AUC of 114 other test digits against the 1,028 test 7s, "
        "every image corrupted, scored as it is and with `set_context` (60 references from the lot). Corruptions "
        "alternate between the halves in the order of the table, fixed before any result. "
        f"{time.perf_counter() - t0:.0f} s in all. Load average (1/5/15 min) before: "
        + "/".join(f"{v:.1f}" for v in load) + ", after: " + "/".join(f"{v:.1f}" for v in os.getloadavg()) + ".\n\n"
        "| corruption | half | flagged: ROC-AUC | flagged at the 5 % threshold | outliers: ROC-AUC | outliers, "
        "--context 60 |\n| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    record.publish("Digits under MNIST-C-like corruptions: flagged, and the outlier task under them", body,
                   args.no_record)


if __name__ == "__main__":
    main()
