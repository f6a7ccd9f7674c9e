"""DRAEM as DRAEM does it, on a CPU budget (issue 18, item 2: "the seed's fourth detector made
dense ... as DRAEM does"): a reconstructive network learns to return the normal image from one
with a synthesised change, and a discriminative U-Net, given the image and that reconstruction
side by side, learns where the change is. The reconstruction is what the offline route's
segmentation head lacked (it saw features only): a defect is where image and reconstruction
disagree, which holds for defect kinds the synthesis never made.

Both networks train together from scratch on each category's training crops (the synthesis of
the offline route: ``augment.synth``'s ``region``, a local change of any kind at full strength,
on half of each batch, as DRAEM), for a fixed time budget; the map is the discriminative
network's anomaly probability, mean-filtered (DRAEM: 21 px at 256 px; here the same share of the
side), and the image score its maximum. Inspection set (``sample_data.make_image_set``), image /
pixel ROC-AUC / PRO per category, by defect kind, against the offline route's figures recorded
in BENCHMARKS.md.

Run:  python benchmarks/draem.py --data DIR [--half dev|held-out] [--seconds 180]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from inspection import _figures, _images, _names, set_parser  # noqa: E402

import anomalib_lite as al  # noqa: E402
from anomalib_lite.data import sample_data  # noqa: E402
from anomalib_lite.training.pretrain import SEGMENT_SYNTH_OPS, focal_loss, synth_batch  # noqa: E402


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Reconstructive(nn.Module):
    """An encoder-decoder without skip connections (DRAEM's: skips would let the change through)."""

    def __init__(self, c: int, w: int = 32):
        super().__init__()
        chans = [w, 2 * w, 4 * w, 4 * w]
        self.enc = nn.ModuleList([_block(a, b) for a, b in zip([c, *chans[:-1]], chans)])
        self.dec = nn.ModuleList([_block(a, b) for a, b in zip(chans[::-1], [*chans[::-1][1:], w])])
        self.out = nn.Conv2d(w, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, b in enumerate(self.enc):
            x = b(x if i == 0 else F.max_pool2d(x, 2))
        for i, b in enumerate(self.dec):
            x = b(x if i == 0 else F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.out(x))


class Discriminative(nn.Module):
    """A U-Net on the image and its reconstruction side by side; one logit per pixel."""

    def __init__(self, c: int, w: int = 32):
        super().__init__()
        chans = [w, 2 * w, 4 * w, 4 * w]
        self.enc = nn.ModuleList([_block(a, b) for a, b in zip([2 * c, *chans[:-1]], chans)])
        self.dec = nn.ModuleList([_block(chans[i + 1] + chans[i], chans[i]) for i in range(len(chans) - 1)])
        self.out = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        skips, h = [], torch.cat([x, rec], 1)
        for i, b in enumerate(self.enc):
            h = b(h if i == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for i in reversed(range(len(self.dec))):
            up = F.interpolate(h, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            h = self.dec[i](torch.cat([up, skips[i]], 1))
        return self.out(h)[:, 0]


def ssim_loss(a: torch.Tensor, b: torch.Tensor, k: int = 11) -> torch.Tensor:
    """1 - mean SSIM over k x k windows (box filter)."""
    mu_a, mu_b = F.avg_pool2d(a, k, 1, k // 2), F.avg_pool2d(b, k, 1, k // 2)
    va = F.avg_pool2d(a * a, k, 1, k // 2) - mu_a ** 2
    vb = F.avg_pool2d(b * b, k, 1, k // 2) - mu_b ** 2
    cov = F.avg_pool2d(a * b, k, 1, k // 2) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return 1 - s.mean()


def train(x: torch.Tensor, seconds: float, seed: int, width: int, batch: int = 8, lr: float = 5e-4):
    """Both networks, jointly, until ``seconds`` have passed; returns them and the steps taken."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rec, dis = Reconstructive(x.shape[1], width), Discriminative(x.shape[1], width)
    opt = torch.optim.Adam([*rec.parameters(), *dis.parameters()], lr=lr)
    t0, step = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        idx = torch.randperm(len(x), generator=g)[:batch]
        clean = x[idx]
        fake, masks = synth_batch(clean, idx, step, seed, SEGMENT_SYNTH_OPS, 1.0)
        keep = torch.rand(len(idx), generator=g) < 0.5  # half the batch stays normal (DRAEM)
        inp = torch.where(keep[:, None, None, None], clean, fake)
        m = torch.where(keep[:, None, None], torch.zeros_like(masks, dtype=torch.float32), masks.float())
        r = rec(inp)
        logits = dis(inp, r)
        loss = F.mse_loss(r, clean) + ssim_loss(r, clean) + focal_loss(logits, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    return rec.eval(), dis.eval(), step


def maps_of(rec: nn.Module, dis: nn.Module, x: torch.Tensor, side: int) -> np.ndarray:
    """Maps at ``side`` px (the masks'), from the networks' size (``x``'s)."""
    k = max(3, round(21 * x.shape[-1] / 256) | 1)  # DRAEM's 21 px mean filter at 256 px, to scale
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), 32):
            b = x[i:i + 32]
            p = F.avg_pool2d(torch.sigmoid(dis(b, rec(b)))[:, None], k, 1, k // 2)
            out.append(F.interpolate(p, size=(side, side), mode="bilinear", align_corners=False)[:, 0])
    return torch.cat(out).numpy()


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="area")


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--seconds", type=float, default=180.0, help="training budget per category")
    ap.add_argument("--categories", default=None, help="comma-separated (default: the half's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=64, help="side the networks work at (maps upsampled to the masks')")
    ap.add_argument("--width", type=int, default=16, help="channels of the networks' first level")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cats = args.categories.split(",") if args.categories else sample_data.HALVES[args.half]["categories"]
    rows = []
    for cat in cats:
        train_src = al.load_data(str(args.data / cat / "train"))
        fit_part, _ = train_src.split(0.1, seed=args.seed)  # the 180 crops the other routes fit
        test = al.load_data(str(args.data / cat / "test"))
        x_fit, x_test = resized(_images(fit_part), args.size), _images(test)
        side = x_test.shape[-1]
        x_test = resized(x_test, args.size)
        t0 = time.perf_counter()
        rec, dis, steps = train(x_fit, args.seconds, args.seed, args.width)
        t1 = time.perf_counter()
        maps = maps_of(rec, dis, x_test, side)
        t2 = time.perf_counter()
        labels = np.asarray(test.anomaly_labels())
        masks = np.asarray(test.read_masks(range(len(test))))
        row = _figures("draem", labels, _names(test), maps.reshape(len(maps), -1).max(1), maps, masks)
        row.update(cat=cat, fit=t1 - t0, score=t2 - t1, steps=steps)
        rows.append(row)
        print(f"{cat}: image {row['image']:.1f} pixel {row['pixel_roc_auc']:.1f} PRO {row['pro']:.1f} "
              f"({steps} steps, {t1 - t0:.0f} s + {t2 - t1:.0f} s) | "
              + " ".join(f"{k} {v:.0f}" for k, v in row["per"].items()), flush=True)
    kinds = sample_data.HALVES[args.half]["defects"]
    mean = [np.mean([r[k] for r in rows]) for k in ("image", "pixel_roc_auc", "pro")]
    body = (
        f"Inspection set, **{args.half} half**, 128 px, fitted on 180 training crops per category: DRAEM "
        f"(reconstructive + discriminative networks of width {args.width} at {args.size} px, trained "
        f"together from scratch for {args.seconds:.0f} s per category on 2 threads, the offline route's synthesis; "
        "maps upsampled to 128 px). Image / pixel ROC-AUC / PRO.\n\n"
        f"| route | {' | '.join(cats)} | mean | {' | '.join(kinds)} | steps | fit + score s |\n"
        f"| --- |{' --- |' * (len(cats) + len(kinds) + 3)}\n"
        f"| DRAEM, {args.size} px, width {args.width}, {args.seconds:.0f} s | "
        + " | ".join(f"{r['image']:.1f} / {r['pixel_roc_auc']:.1f} / {r['pro']:.1f}" for r in rows)
        + f" | **{mean[0]:.1f} / {mean[1]:.1f} / {mean[2]:.1f}** | "
        + " | ".join(f"{np.mean([r['per'][k] for r in rows if k in r['per']]):.1f}" for k in kinds)
        + f" | {np.mean([r['steps'] for r in rows]):.0f} | {np.mean([r['fit'] + r['score'] for r in rows]):.0f} |\n"
    )
    record.publish(f"Images: DRAEM on a CPU budget ({args.half} half, issue 18)", body, args.no_record)


if __name__ == "__main__":
    main()
