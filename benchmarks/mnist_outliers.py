"""MNIST outliers for every image detector, with settings chosen on synthetic validation only.

Protocol (../shared/REFERENCES.md): for each digit, train on that digit's training images and
score all 10,000 test digits; ROC-AUC per digit and mean. Settings are chosen without the test set
and without other digits: each digit's training images are split 90/10; detectors train on the
90 %, and each configuration's *validation* ROC-AUC is computed on the held-out 10 % against
synthetic anomalies made from them (augment.synth ops that no detector trains on). The best
configuration is the one with the highest mean validation ROC-AUC; its test figures are reported.
Localisation: pixel ROC-AUC of score_map on normal test digits with synthetic strokes.

Run:  python benchmarks/mnist_outliers.py [--digits 0,8] [--budget 150] [--train-budget 90] [--no-record]
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import record
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

import anomalib_lite as al
import augment
from anomalib_lite.training.pretrain import pretrain

VAL_OPS = ["stroke_blob", "patch_blend"]  # held-out ops: no detector trains on these
OOD_TRAIN_OPS = ["cutpaste", "scar", "local_elastic", "perlin"]


def synthetic(x: torch.Tensor, pool: torch.Tensor, ops, seed: int):
    """Clearly visible synthetic defects (severity 1): at lower severity they sink into the
    natural variation of handwriting and every detector scores near chance on them."""
    imgs, masks, _ = augment.synth.synthesize(
        x, ops=ops, severity=1.0, seed=seed, pool=pool, min_pixels=4
    )
    return torch.as_tensor(np.asarray(imgs)), torch.as_tensor(np.asarray(masks))


def auroc(y, s) -> float:
    return float(roc_auc_score(y, s))


def pixel_auroc(det, images, masks) -> float | None:
    try:
        maps = det.score_map(images)
    except al.AnomalyError:
        return None
    return auroc(masks.numpy().reshape(-1).astype(int), maps.reshape(-1))


def main() -> None:
    ap = record.parser()
    ap.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--budget", type=float, default=150, help="seconds of pretraining per digit")
    ap.add_argument("--train-budget", type=float, default=90,
                    help="seconds of training per digit for Reconstruction and SyntheticOOD")
    ap.add_argument("--epochs", type=int, default=5, help="pretraining epochs (stops early at --budget)")
    ap.add_argument("--only", default="reconstruction,synthetic,pretrained",
                    help="detector groups besides the baselines (which always run)")
    ap.add_argument("--latents", default="16,32", help="Reconstruction bottleneck sizes to run")
    ap.add_argument("--json", default=None, help="also write all figures to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train, test = al.load_data("mnist:train"), al.load_data("mnist:test")
    xte = torch.from_numpy(test.x).float().div(255)[:, None]
    digits = [int(d) for d in args.digits.split(",")]
    groups = set(args.only.split(","))
    results: dict[str, dict] = {}

    def put(name, d, test_auc, val_auc, seconds, pix=None):
        r = results.setdefault(name, {"test": {}, "val": {}, "train_s": {}, "pixel": {}})
        r["test"][d], r["val"][d], r["train_s"][d], r["pixel"][d] = test_auc, val_auc, seconds, pix
        print(f"digit {d} {name}: test {100 * test_auc:.2f} val {100 * val_auc:.2f} "
              f"train {seconds:.0f}s" + (f" pixel {100 * pix:.1f}" if pix is not None else ""), flush=True)

    for d in digits:
        xs = torch.from_numpy(train.x[train.targets == d]).float().div(255)[:, None]
        perm = torch.randperm(len(xs), generator=torch.Generator().manual_seed(d))
        n_val = len(xs) // 10
        fit_x, val_x = xs[perm[n_val:]], xs[perm[:n_val]]
        fake, _ = synthetic(val_x, fit_x[:500], VAL_OPS, seed=100 + d)
        val_set = torch.cat([val_x, fake])
        val_y = np.r_[np.zeros(len(val_x)), np.ones(len(fake))]
        test_y = (test.targets != d).astype(int)
        loc_normals = xte[torch.from_numpy(test.targets == d)][:200]
        loc_x, loc_m = synthetic(loc_normals, fit_x[:500], ["stroke_blob"], seed=200 + d)

        def evaluate(name, det, seconds, maps=False, d=d, test_y=test_y, val_y=val_y, val_set=val_set,
                     loc_x=loc_x, loc_m=loc_m):
            pix = pixel_auroc(det, loc_x, loc_m) if maps else None
            put(name, d, auroc(test_y, det.decision_function(xte)), auroc(val_y, det.decision_function(val_set)), seconds, pix)

        # baselines
        t = time.perf_counter()
        det = al.LatentDistance(k=5, image_score="pooled", device="cpu").fit(fit_x)
        evaluate("raw-pixel kNN (k=5)", det, time.perf_counter() - t, maps=True)
        t = time.perf_counter()
        iso = IsolationForest(random_state=0, n_jobs=-1).fit(fit_x.flatten(1).numpy())
        sec = time.perf_counter() - t
        put("IsolationForest", d, auroc(test_y, -iso.score_samples(xte.flatten(1).numpy())),
            auroc(val_y, -iso.score_samples(val_set.flatten(1).numpy())), sec)

        # Reconstruction (pixels)
        for latent in [int(v) for v in args.latents.split(",")] if "reconstruction" in groups else ():
            t = time.perf_counter()
            det = al.Reconstruction(latent_dim=latent, epochs=20, device="cpu", max_time=args.train_budget).fit(fit_x)
            evaluate(f"Reconstruction (latent {latent})", det, time.perf_counter() - t, maps=True)

        # SyntheticOOD (resnet18 at 32 px, random init)
        if "synthetic" in groups:
            t = time.perf_counter()
            det = al.SyntheticOOD(image_size=32, epochs=3, synth_ops=OOD_TRAIN_OPS, device="cpu",
                                  max_time=args.train_budget).fit(fit_x)
            evaluate("SyntheticOOD (resnet18, gaussian)", det, time.perf_counter() - t, maps=True)

        # LatentDistance on a self-pretrained backbone (transformation prediction, 72 transforms)
        if "pretrained" not in groups:
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
            continue
        t = time.perf_counter()
        pre = pretrain("resnet18", fit_x, task="transforms", transforms="geom", epochs=args.epochs,
                       image_size=32, max_time=args.budget, device="cpu", seed=0)
        pre_s = time.perf_counter() - t
        for method in ("knn", "gaussian"):
            for norm in (False, True):
                t = time.perf_counter()
                det = al.LatentDistance(backbone=pre.extractor, image_score="pooled", method=method, normalize=norm, device="cpu")
                det.fit(fit_x)
                name = (f"LatentDistance on self-pretrained resnet18 ({method}{', L2 per layer' if norm else ''}, "
                        f"{args.epochs} epochs)")
                evaluate(name, det, pre_s + time.perf_counter() - t, maps=True)
        if args.json:  # after every digit, so a long run that stops keeps what it measured
            Path(args.json).write_text(json.dumps(results, indent=1))

    # selection on validation only
    best = max(results, key=lambda k: np.mean(list(results[k]["val"].values())))
    lines = ["| detector | " + " | ".join(str(d) for d in digits) + " | mean test | min test | mean val (synthetic) | train s/digit | pixel ROC-AUC |",
             "|" + "---|" * (len(digits) + 6)]
    for name, r in results.items():
        test_v = [100 * r["test"][d] for d in digits]
        pix = [v for v in r["pixel"].values() if v is not None]
        mark = " **(selected)**" if name == best else ""
        lines.append(
            f"| {name}{mark} | " + " | ".join(f"{v:.1f}" for v in test_v)
            + f" | **{np.mean(test_v):.2f}** | {np.min(test_v):.1f} | {100 * np.mean(list(r['val'].values())):.2f} | "
            f"{np.mean(list(r['train_s'].values())):.0f} | "
            + (f"{100 * np.mean(pix):.1f} |" if pix else " - |")
        )
    body = (
        "ROC-AUC (%) per normal digit, all 10,000 test digits. 'mean val' is the selection criterion: "
        f"held-out 10 % of the digit's training images vs synthetic anomalies ({', '.join(VAL_OPS)}). "
        "Pixel ROC-AUC: score_map on 200 normal test digits with a synthetic stroke (stroke_blob), "
        "mask = changed pixels. Training time includes pretraining for the self-pretrained rows.\n\n"
        + "\n".join(lines)
    )
    record.publish("MNIST outliers: every image detector, settings chosen on synthetic validation", body, args.no_record)


if __name__ == "__main__":
    main()
