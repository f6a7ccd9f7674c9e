"""Aligned objects or a texture? The position share that LatentDistance's default image score
reads at ``fit`` (issue 18, item 4), on digits, corrupted digits and texture photographs.

``PositionShare`` is the share of the images' variance (on an 8 x 8 grid of cell means) that the
cell's position explains, adjusted for chance. Under ``TEXTURE_SHARE`` the default scores the
patch evidence alone (a texture); above, both kinds (aligned objects). This prints the share:

* for each MNIST digit's training images;
* for all ten digits mixed, clean and under corruptions of the kind MNIST-C applies (noise,
  impulse noise, rotation, shear, shifts, scale, elastic warps, contrast, brightness, inversion;
  the augment package's ops);
* for every category of the inspection set (180 training crops), a woven fabric, and two
  categories under a 20 % vignetting (a lens's darker corners: a real position effect);
* the largest texture share and the smallest digit share over random subsets of 10, 20 and 50
  training images (10 draws each; digits clean, with noise and shifted by up to 4 px).

Run:  python benchmarks/position_share.py --data DIR [--no-record]
      (DIR: a set `sample_data.make_image_set` wrote; MNIST from ANOMALY_DATA_DIR)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402


def _images(src, n: int) -> torch.Tensor:
    """(n, C, H, W) float in [0, 1] from a data source, as the detector's normaliser gives them."""
    import anomalib_lite as al

    return next(al.iter_batches(src, n)).x[:n].float()


#: MNIST-C-like corruptions in the augment package's vocabulary (ranges drawn per image; shifts
#: are fractions of the size: 4 px and 7 px of 28)
CORRUPTIONS = {
    "clean": [],
    "Gaussian noise sd 0.3": [{"op": "gaussian_noise", "sigma": 0.3}],
    "Gaussian noise sd 0.5": [{"op": "gaussian_noise", "sigma": 0.5}],
    "impulse noise 10 %": [{"op": "salt_pepper", "amount": 0.1}],
    "rotation up to 30 deg": [{"op": "affine", "rotate": 30}],
    "shear up to 27 deg": [{"op": "affine", "shear": 27}],
    "shift up to 4 px": [{"op": "affine", "translate": 4 / 28}],
    "shift up to 7 px": [{"op": "affine", "translate": 7 / 28}],
    "scale 0.6-1.4, rotation 20 deg, shift 3 px": [{"op": "affine", "scale": [0.6, 1.4], "rotate": 20,
                                                     "translate": 3 / 28}],
    "elastic (alpha 8 px, sigma 3 px)": [{"op": "elastic", "alpha": 8, "sigma": 3}],
    "contrast x 0.3": [{"op": "contrast", "factor": 0.3}],
    "brightness + 0.4": [{"op": "brightness", "delta": [0.4, 0.4]}],
}


def corruptions(x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """``x`` under each of :data:`CORRUPTIONS` (augment's torchvision backend) and inverted."""
    import augment

    out = {name: augment.Pipeline.from_config({"seed": seed, "steps": steps})(x, indices=np.arange(len(x)))
           if steps else x for name, steps in CORRUPTIONS.items()}
    out["inverted"] = 1 - x
    return out


def main() -> None:
    ap = record.parser(__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()
    import anomalib_lite as al
    from anomalib_lite.components.streaming import PositionShare
    from anomalib_lite.data.sample_data import CATEGORIES, weave
    from anomalib_lite.detectors.latent import TEXTURE_SHARE

    def share(x: torch.Tensor) -> float:
        ps = PositionShare()
        ps.update(x)
        return ps.value()

    digits = {d: _images(al.load_data(f"mnist:train?classes={d}"), 10_000) for d in range(10)}
    mixed = _images(al.load_data("mnist:train?limit=3000"), 3000)
    textures = {"woven fabric (sample_data.weave)": torch.as_tensor(weave(300, 64))}
    for cat in CATEGORIES:
        textures[cat] = _images(al.load_data(str(args.data / cat / "train")), 180)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 128), torch.linspace(-1, 1, 128), indexing="ij")
    vignette = 1 - 0.1 * (yy**2 + xx**2)  # 20 % darker in the corners
    for cat in ("brick", "gravel"):
        textures[f"{cat}, 20 % vignetting"] = textures[cat] * vignette
    lines = [f"Threshold (`TEXTURE_SHARE`): {TEXTURE_SHARE}.", "",
             "| images | position share | the default scores |", "| --- | --- | --- |"]
    verdict = lambda s: "patch (a texture)" if s is not None and s < TEXTURE_SHARE else "both kinds"  # noqa: E731
    for d, x in digits.items():
        lines.append(f"| MNIST digit {d}, {len(x):,} training images | {share(x):.3f} | {verdict(share(x))} |")
    for name, x in corruptions(mixed).items():
        lines.append(f"| MNIST, ten digits mixed (3,000), {name} | {share(x):.3f} | {verdict(share(x))} |")
    for name, x in textures.items():
        lines.append(f"| {name}, {len(x)} training crops | {share(x):.3f} | {verdict(share(x))} |")
    rng = np.random.default_rng(0)
    lines += ["", "Few training images: the largest texture share and the smallest digit share over 10 random "
              "subsets of each size (digits: each digit clean, with noise sd 0.5 and shifted by up to 4 px).", "",
              "| training images | largest texture share | smallest digit share |", "| --- | --- | --- |"]
    for n in (10, 20, 50):
        tex = max(share(x[rng.choice(len(x), n, replace=False)]) or 0.0 for x in textures.values() for _ in range(10))
        dig = min(min(share(c) for k, c in corruptions(x[rng.choice(len(x), n, replace=False)], seed=i).items()
                      if k in ("clean", "Gaussian noise sd 0.5", "shift up to 4 px"))
                  for x in digits.values() for i in range(10))
        lines.append(f"| {n} | {tex:.3f} | {dig:.3f} |")
    body = ("`PositionShare` (8 x 8 grid of cell means, outer cells left out; adjusted R^2 of the cell's position) "
            "on the images `LatentDistance(image_score=\"combined\")` is fitted on.\n\n" + "\n".join(lines))
    record.publish("Aligned objects or a texture: the position share the default image score reads (issue 18)",
                   body, args.no_record)


if __name__ == "__main__":
    main()
