"""Classic texture features instead of a CNN: a fixed filter bank on the inspection set (issue 18).

Texture inspection was done for decades without learned features: the local energy of Gaussian
derivative filters at a few scales and orientations (Leung-Malik, Schmid, Laws' texture energy)
says how much structure of each kind a neighbourhood holds, so blur (energy lost), folds and
warps (orientation changed) should show where a 7-pixel raw patch does not, and a texture's
other parts share its statistics even where they share no patch. The bank here: per colour
channel, Gx, Gy, Gxx, Gyy, Gxy and the Laplacian of Gaussian at sigma 1 and 2 px, their log
energy averaged over a window twice the scale, the local mean colour and log contrast, every
4 px (``s1``); the same on the ``s1`` grid's mean colour (sigma 4 and 8 px) with ``s1`` averaged,
every 8 px (``s2``). No weights are learned. Fitted as any backbone: ``LatentDistance`` on
``s1`` + ``s2``, patch score, optionally each channel standardised on the training crops
(``std``), and with mutual scoring of 60 test crops (``context``).

Run:  python benchmarks/filter_bank.py --data DIR [--half dev] [--rules bank,std,std+context]
      (DIR: a set `sample_data.make_image_set` wrote)
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from inspection import _figures, _images, _say, category, set_parser, table  # noqa: E402


def _gauss1d(sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-t**2 / (2 * sigma**2))
    g = g / g.sum()
    return g, -t / sigma**2 * g, (t**2 / sigma**4 - 1 / sigma**2) * g


def derivative_kernels(sigma: float) -> torch.Tensor:
    """(6, 1, k, k): Gx, Gy, Gxx, Gyy, Gxy and the LoG at ``sigma``, scale-normalised."""
    g, g1, g2 = _gauss1d(sigma)
    o = torch.outer
    ks = [o(g, g1) * sigma, o(g1, g) * sigma, o(g, g2) * sigma**2, o(g2, g) * sigma**2,
          o(g1, g1) * sigma**2, (o(g, g2) + o(g2, g)) * sigma**2]
    return torch.stack(ks)[:, None].float()


class Bank(nn.Module):
    """Mean colour, log local contrast and log energies of every colour channel's Gaussian
    derivatives at ``sigmas``, averaged over a Gaussian window of sigma ``stride / 2`` and sampled
    every ``stride`` px; the input's channels after the first three are averaged and carried."""

    def __init__(self, sigmas: tuple[float, ...], stride: int, eps: float = 1e-4):
        super().__init__()
        self.sigmas, self.stride, self.eps = sigmas, stride, eps
        for i, s in enumerate(sigmas):
            self.register_buffer(f"k{i}", derivative_kernels(s), persistent=False)
        g = _gauss1d(stride / 2)[0]
        self.register_buffer("window", torch.outer(g, g)[None, None].float(), persistent=False)
        self.register_buffer("scale", torch.ones(1), persistent=False)  # per channel once standardised

    def _conv(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        c, r = x.shape[1], k.shape[-1] // 2
        return F.conv2d(F.pad(x, (r, r, r, r), mode="reflect"), k.repeat(c, 1, 1, 1), groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        colour = x[:, :3]
        grey = colour.mean(1, keepdim=True)
        mean = self._conv(grey, self.window)
        var = (self._conv(grey * grey, self.window) - mean * mean).clamp_min(0)
        feats = [colour, 0.5 * torch.log(var + self.eps)]
        for i in range(len(self.sigmas)):
            resp = self._conv(colour, getattr(self, f"k{i}"))
            feats.append(0.5 * torch.log(resp * resp + self.eps))
        out = self._conv(torch.cat(feats + [x[:, 3:]], 1), self.window)
        s = self.stride
        return out[..., s // 2::s, s // 2::s] * self.scale.view(1, -1, 1, 1)


class FilterBank(nn.Module):
    def __init__(self):
        super().__init__()
        self.s1 = Bank((1.0, 2.0), stride=4)  # 3 + 1 + 36 = 40 channels, every 4 px
        self.s2 = Bank((1.0, 2.0), stride=2)  # 40 + 37 carried = 77 channels, every 8 px


def register() -> None:
    import backbones
    from backbones.registry import BackboneSpec, register as add

    backbones.list_backbones()  # the table is filled on first use
    add(BackboneSpec(name="filterbank", builder=lambda imagenet: FilterBank(),
                     stages=lambda m: [("s1", m.s1), ("s2", m.s2)], layers=("s1", "s2"),
                     channels=(40, 77), strides=(4, 8), default_layers=("s1", "s2"),
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))


def extractor(fit_part, standardise: bool):
    """The filter bank as a frozen extractor; ``standardise``: each stage's channels divided by
    their spread over the training crops' positions (so each statistic weighs alike in the kNN)."""
    import backbones

    ext = backbones.create("filterbank", weights="random", layers=["s1", "s2"], device="cpu")
    if standardise:
        x = _images(fit_part)
        for name in ("s1", "s2"):
            f = ext.extract(x)[name]
            ext.stages[name].scale = 1 / f.transpose(0, 1).reshape(f.shape[1], -1).std(1).clamp_min(1e-6)
    return ext


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--rules", default="bank,std,std+context")
    args = ap.parse_args()
    import anomalib_lite as al
    from anomalib_lite.data.sample_data import HALVES

    torch.set_num_threads(2)
    register()
    rules = args.rules.split(",")
    rows, t_all = [], time.perf_counter()
    for cat in HALVES[args.half]["categories"]:
        fit_part, _, test, labels, names, masks = category(args.data, cat, 0)
        for rule in rules:
            t0 = time.perf_counter()
            det = al.LatentDistance(backbone=extractor(fit_part, rule.startswith("std")), image_score="patch",
                                    device="cpu", seed=0).fit(fit_part)
            if rule.endswith("+context"):
                det.set_context(test, images=60)
            t1 = time.perf_counter()
            scores, maps = (np.concatenate(v) for v in zip(*det._scores_and_maps(test)))
            row = _figures(rule, labels, names, scores, maps, masks)
            row.update(cat=cat, fit=t1 - t0, score=time.perf_counter() - t1, cal=0.0, mb=float("nan"))
            rows.append(row)
            _say(row)
    body = (f"Inspection set, **{args.half} half**, 128 px, 180 training crops per category: LatentDistance on "
            "the fixed filter bank of the script's docstring (no learned weights), patch score. Each cell: image / "
            "pixel ROC-AUC / PRO. No threshold is calibrated here (the FPR and p columns are empty). "
            f"{time.perf_counter() - t_all:.0f} s in all.\n\n" + table(rows, rules, args.half))
    record.publish(f"Images: a fixed filter bank instead of a CNN ({args.half} half, issue 18)", body, args.no_record)


if __name__ == "__main__":
    main()
