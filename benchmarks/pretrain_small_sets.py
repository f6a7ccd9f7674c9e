"""Pretraining on a small set: early stopping on a handful of held-out images, or every epoch.

``anomaly pretrain`` holds out 10 % of the images and stops when their pretext loss has not
improved for ``--patience`` epochs, keeping the best epoch's weights. On 30 images that is 3
held-out images. This measures what that costs a user who asks for 200 epochs within 60 s: for
each of three photographs shipped with scikit-image, 30 training crops (of mixed sizes, as a
folder of a user's photographs is, read at ``?size=128``) and 20 good + 20 defective test crops (a
coloured patch pasted on another crop), it runs the commands a user
would (``anomaly pretrain --task transforms --epochs 200 --max-time 60`` with the default patience
and with ``--patience none``, then ``anomaly fit latent --backbone resnet18 --weights W`` and
``anomaly evaluate``), beside random weights. Figures: epochs run, the epoch whose weights were
kept, the held-out pretext loss against chance, and the detector's image ROC-AUC.

Run:  python benchmarks/pretrain_small_sets.py [--no-record]
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

PHOTOS = ("coffee", "chelsea", "astronaut")
CLI = [sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py")]


def make_set(name: str, root: Path, seed: int = 0) -> None:
    """30 training crops (every third resized to 200 x 150, every third RGBA) and 20 good and 20
    defective test crops, each at a random place of the photograph (scaled to 1200 x 800)."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    big = np.array(Image.fromarray(getattr(data, name)()).convert("RGB").resize((1200, 800)))
    for sub in ("train/good", "test/good", "test/bad"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(30):
        y, x = rng.integers(0, 800 - 300), rng.integers(0, 1200 - 400)
        crop = Image.fromarray(big[y : y + 300, x : x + 400])
        if i % 3 == 0:
            crop.resize((200, 150)).save(root / f"train/good/{i:02d}.jpg")
        else:
            (crop.convert("RGBA") if i % 3 == 1 else crop).save(root / f"train/good/{i:02d}.png")
    for i in range(20):
        y, x = rng.integers(0, 800 - 300), rng.integers(0, 1200 - 400)
        crop = big[y : y + 300, x : x + 400].copy()
        Image.fromarray(crop).save(root / f"test/good/{i}.png")
        h, w = rng.integers(25, 50), rng.integers(40, 100)
        top, left = rng.integers(0, 300 - h), rng.integers(0, 400 - w)
        crop[top : top + h, left : left + w] = rng.integers(0, 256, 3)
        Image.fromarray(crop).save(root / f"test/bad/{i}.png")


def run(*args: str) -> str:
    r = subprocess.run(CLI + list(args), capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"failed: anomaly {' '.join(args)}\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def detector_auc(root: Path, weights: str) -> float:
    out = root / f"{Path(weights).stem}.anomaly"
    run("fit", "latent", "--data", f"{root / 'train'}?size=128", "--backbone", "resnet18", "--weights", weights,
        "-o", str(out), "--quiet", "--device", "cpu")
    run("evaluate", str(out), "--data", str(root / "test"), "--json", str(root / "f.json"), "--device", "cpu")
    return json.load(open(root / "f.json"))["roc_auc"]


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    args = ap.parse_args()
    t_all = time.perf_counter()
    lines = ["30 training crops per photograph (3 held out by pretraining), `?size=128`; `anomaly pretrain "
             "--backbone resnet18 --task transforms --epochs 200 --max-time 60`, then `anomaly fit latent --backbone "
             "resnet18 --weights W` (patch score) and `anomaly evaluate` on 20 good + 20 defective crops.", "",
             "| photograph | weights | epochs run | kept epoch | held-out loss (chance 4.277) | image ROC-AUC |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in PHOTOS:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_set(name, root)
            lines.append(f"| {name} | random | - | - | - | {100 * detector_auc(root, 'random'):.1f} |")
            for label, extra in (("pretrained, default patience (5)", []), ("pretrained, `--patience none`",
                                                                            ["--patience", "none"])):
                w = root / f"w{len(extra)}.safetensors"
                said = run("pretrain", "--backbone", "resnet18", "--data", f"{root / 'train'}?size=128", "--epochs",
                           "200", "--max-time", "60", "-o", str(w), "--device", "cpu", *extra)
                ran = re.search(r": (\d+)(?: of 200)? epochs", said).group(1)
                kept = re.search(r"kept epoch (\d+)'s weights, held-out loss ([\d.]+)", said)
                lines.append(f"| {name} | {label} | {ran} | {kept.group(1)} | {kept.group(2)} | "
                             f"{100 * detector_auc(root, str(w)):.1f} |")
                print(lines[-1], flush=True)
    lines += ["", f"{time.perf_counter() - t_all:.0f} s in all."]
    record.publish("Pretraining on a small set: early stopping on 3 held-out images, or every epoch "
                   "(pretrain_small_sets.py)", "\n".join(lines), args.no_record)


if __name__ == "__main__":
    main()
