"""Real-size images: LatentDistance routes on an MVTec-style texture set (issue 10).

Writes the set with ``../shared/tools/make_textures.py`` (real photographs bundled with
scikit-image, defects with exact masks) into a temporary folder, or reads ``--data DIR``; for
every category and route: fit on ``CAT/train`` (the CLI's way: 10 % held out to calibrate), then
evaluate on ``CAT/test`` with its ground-truth masks. Figures: image ROC-AUC, pixel ROC-AUC, PRO
(to FPR 0.3), per-defect image ROC-AUC, fit + score seconds, bundle MB. Appends a section to
BENCHMARKS.md unless ``--no-record``.

Routes: raw-pooled, raw-patch, r18-random, r18-pretrained[:TASK][/cropN] (pretrained on the
training crops by TASK, default synthetic, on whole images or on random N-pixel crops of them).

Run:  python benchmarks/textures.py                          (every route, both categories)
      python benchmarks/textures.py --routes r18-random --categories brick
      python benchmarks/textures.py --size 192 --routes r18-pretrained:segment,r18-pretrained:segment/crop96
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import anomalib_lite as al
from anomalib_lite.evaluation.assessment import assess
from anomalib_lite.training.pretrain import pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

TOOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "make_textures.py"


def route(name: str, train, args) -> al.LatentDistance:
    """The detector of a route, fitted on ``train`` (pretraining counts as fitting time)."""
    common = dict(device="cpu", seed=args.seed, coreset_ratio=args.ratio)
    size = dict(image_size=args.image_size) if args.image_size else {}
    if name == "raw-pooled":
        return al.LatentDistance(image_score="pooled", **common).fit(train)
    if name == "raw-patch":
        return al.LatentDistance(**common).fit(train)
    if name == "r18-random":
        return al.LatentDistance(backbone="resnet18", weights="random", layers=args.layers, **size, **common).fit(train)
    if name.startswith("r18-pretrained"):
        name, _, crop = name.partition("/crop")  # "/cropN": pretrain on N-pixel crops; otherwise whole images
        task = name.split(":")[1] if ":" in name else "synthetic"
        res = pretrain("resnet18", train, task=task, layers=args.layers, epochs=100, max_time=args.pretrain_time,
                       batch_size=32, device="cpu", seed=args.seed, crop=int(crop) if crop else None)
        return al.LatentDistance(backbone=res.extractor, **common).fit(train)
    raise SystemExit(f"unknown route {name}")


def run(data: Path, cat: str, name: str, args) -> dict:
    train = al.load_data(str(data / cat / "train"))
    fit_part, held = train.split(0.1, seed=args.seed)
    test = al.load_data(str(data / cat / "test"))
    t0 = time.perf_counter()
    det = route(name, fit_part, args)
    det.calibrate(held, fpr=0.01)
    t_fit = time.perf_counter() - t0
    if args.context:
        det.set_context(test, images=args.context)  # mutual scoring against the test batch
    ev = assess(det, test)
    t_all = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        det.save(Path(tmp) / "m.anomaly")
        mb = (Path(tmp) / "m.anomaly").stat().st_size / 1e6
    f = ev.figures
    per = {k: 100 * v["roc_auc"] for k, v in f.get("per_class", {}).items()}
    name = f"{name} --context {args.context}" if args.context else name
    fpr = f["fpr_check"]["fpr"] if "fpr_check" in f else float("nan")
    out = dict(cat=cat, route=name, fpr=100 * fpr, image=100 * f["roc_auc"], pixel=100 * f["pixel_roc_auc"], pro=100 * f["pro"],
               fit=t_fit, total=t_all, mb=mb, per=per, bank=0 if det.patch_memory_ is None else len(det.patch_memory_),
               seen=det.patches_seen_)
    print(f"{cat:6s} {name:22s} image {out['image']:.1f} pixel {out['pixel']:.1f} PRO {out['pro']:.1f} "
          f"fit {t_fit:.1f}s total {t_all:.1f}s bundle {mb:.1f} MB bank {out['bank']}/{out['seen']} "
          + " ".join(f"{k} {v:.1f}" for k, v in per.items()), flush=True)
    return out


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="an existing set (default: make one)")
    ap.add_argument("--categories", default="brick,grass")
    ap.add_argument("--size", type=int, default=128, help="crop size of the set made (make_textures.py --size; at most about 200: its photographs are 512 px)")
    ap.add_argument("--image-size", type=int, default=None, help="resize before the backbone (default: as read)")
    ap.add_argument("--routes", default="raw-pooled,raw-patch,r18-random,r18-pretrained")
    ap.add_argument("--layers", default="layer1,layer2")
    ap.add_argument("--ratio", type=float, default=0.1, help="coreset_ratio")
    ap.add_argument("--pretrain-time", type=float, default=30.0, help="seconds of self-supervised pretraining")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--context", type=int, default=0, help="score with mutual scoring against N test images")
    args = ap.parse_args()
    args.layers = args.layers.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.TemporaryDirectory()
        data = Path(tmp.name)
        subprocess.run([sys.executable, str(TOOL), str(data), "--categories", args.categories, "--size", str(args.size)],
                       check=True, stdout=subprocess.DEVNULL)
    load = os.getloadavg()
    rows = [run(data, c, r, args) for r in args.routes.split(",") for c in args.categories.split(",")]
    lines = ["| route | category | image ROC-AUC | pixel ROC-AUC | PRO | per defect (image ROC-AUC) | achieved FPR "
             "(target 1 %) | fit s | fit + score s | bundle MB | patch bank |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        per = ", ".join(f"{k} {v:.1f}" for k, v in r["per"].items())
        lines.append(f"| {r['route']} | {r['cat']} | {r['image']:.1f} | {r['pixel']:.1f} | {r['pro']:.1f} | {per} | "
                     f"{r['fpr']:.1f} % | {r['fit']:.1f} | {r['total']:.1f} | {r['mb']:.1f} | {r['bank']:,} of {r['seen']:,} |")
    for name in dict.fromkeys(r["route"] for r in rows):
        rs = [r for r in rows if r["route"] == name]
        lines.append(f"| **{name}** | mean | **{np.mean([r['image'] for r in rs]):.1f}** | **{np.mean([r['pixel'] for r in rs]):.1f}** | "
                     f"**{np.mean([r['pro'] for r in rs]):.1f}** | | {np.mean([r['fpr'] for r in rs]):.1f} % | "
                     f"{np.mean([r['fit'] for r in rs]):.1f} | "
                     f"{np.mean([r['total'] for r in rs]):.1f} | {np.mean([r['mb'] for r in rs]):.1f} | |")
    size_text = f"{args.size} px" if args.data is None else "at --data's size"
    body = (f"Texture set from `make_textures.py` (categories {args.categories}; 180 training crops fit, 20 "
            f"calibrate; 60 normal + 60 defective test crops, {size_text}, grey). LatentDistance, "
            f"layers {','.join(args.layers)}, coreset_ratio {args.ratio}, pretraining budget {args.pretrain_time:g} s. "
            f"Load average at start: {load[0]:.1f}.\n\n" + "\n".join(lines))
    record.publish("Real-size images: textures (MVTec-style)", body, args.no_record)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
