"""Patch distances in whitened coordinates: do changes along directions the texture seldom varies
in (blur removes fine detail, a fold bends a direction) count for more? (issue 18)

The raw-pixel route compares 7 x 7 patches by Euclidean distance, which weighs each direction of
patch space by how much the texture varies along it: the dominant structure counts most. Whitening
by the training patches' covariance, shrunk towards its mean eigenvalue (``lambda``: the share of
that mean added to every eigenvalue), makes a unit change count alike in every direction. Rules:
the route as it is; its bank and the test patches whitened (``whitened``); the bank chosen again by
the coreset in whitened coordinates from 200,000 training patches (``whitened, bank rebuilt``).
Image / pixel ROC-AUC per category of the inspection set, fitted on 180 training crops.

Run:  python benchmarks/whitened_patches.py --data DIR [--half dev] [--lambdas 0.01,0.1,1] [--no-record]
      (DIR: a set `sample_data.make_image_set` wrote)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from inspection import set_parser  # noqa: E402
from local_contrast import (fitted_route, image_study, map_figures, pair_header, pair_lines,  # noqa: E402
                            patch_features, test_truth)
from local_density import nearest  # noqa: E402


def whitener(rows: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, W): ``(x - mean) @ W`` whitens by the rows' covariance shrunk by ``lam``."""
    mu = rows.mean(0)
    x = (rows - mu).double()
    ev, v = torch.linalg.eigh(x.T @ x / len(x))
    ev = ev.clamp_min(0) + lam * ev.clamp_min(0).mean()
    return mu, (v / ev.sqrt()).float()


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--lambdas", default="0.01,0.1,1")
    args = ap.parse_args()
    import anomalib_lite as al
    from anomalib_lite.components.memory import greedy_coreset

    cats = image_study(args)
    lams = [float(v) for v in args.lambdas.split(",")]
    rules = ["as it is"] + [f"whitened, lambda {v:g}" for v in lams] + [f"whitened, lambda {v:g}, bank rebuilt" for v in lams]
    table = {r: [] for r in rules}
    t0 = time.perf_counter()
    for cat in cats:
        det, test = fitted_route("raw", args.data, cat)
        train = al.load_data(str(args.data / cat / "train")).read(list(range(180)))[0]
        ptr = patch_features(det, train)
        d, h, w = ptr.shape[1:]
        rows = ptr.permute(0, 2, 3, 1).reshape(-1, d)
        pte = patch_features(det, test)
        q = pte.permute(0, 2, 3, 1).reshape(-1, d)
        labels, masks = test_truth(test)
        bank = det.bank_.get("patch_memory").float()
        sample = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:200_000]]
        banks = {"as it is": (bank, q)}
        for lam in lams:
            mu, wm = whitener(rows, lam)
            banks[f"whitened, lambda {lam:g}"] = ((bank - mu) @ wm, (q - mu) @ wm)
            s = (sample - mu) @ wm
            banks[f"whitened, lambda {lam:g}, bank rebuilt"] = (s[greedy_coreset(s, len(bank))], (q - mu) @ wm)
        for rule, (b, qq) in banks.items():
            table[rule].append(map_figures(nearest(qq, b)[0].reshape(len(pte), h, w), labels, masks))
        print(cat, {k: f"{v[-1][0]:.1f}/{v[-1][1]:.1f}" for k, v in table.items()}, flush=True)
    lines = pair_header(["rule"], cats)
    lines += pair_lines(table, [])
    body = (f"Inspection set, **{args.half} half**, 128 px, raw-pixel route (7 x 7 patches) fitted on 180 training "
            "crops per category: image / pixel ROC-AUC (%) with patch distances as they are or in coordinates "
            "whitened by the training patches' covariance (shrunk by lambda times its mean eigenvalue), the bank "
            f"as fitted or rebuilt by the coreset in those coordinates. {time.perf_counter() - t0:.0f} s.\n\n"
            + "\n".join(lines))
    record.publish(f"Images: whitened patch distances, {args.half} half (issue 18)", body, args.no_record)


if __name__ == "__main__":
    main()
