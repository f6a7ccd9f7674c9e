"""How visible is each defect of the inspection set? The contrast a defect adds, against the
photograph's own texture there (issue 18: what bounds the held-out half's figures).

For each category and defect kind of both halves (``sample_data.HALVES``), the 20 defective crops
``make_image_set`` writes are redrawn (the same seeds: the crop before and after painting), and for
each: the mean absolute change within the mask (largest over the channels), over the crop's local
texture contrast (the mean absolute difference between the crop's grey level and its 5 x 5 mean).
A ratio under 1 is a change smaller than what the texture itself does from pixel to pixel: no
detector that compares a crop with normal ones can be expected to single it out. The table gives
the median ratio, the share of crops under 1, and the median change itself in grey levels (0-255).

Run:  python benchmarks/defect_visibility.py   (about 1 minute)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from anomalib_lite.data import sample_data as sd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402


def ratios(category: str, defect: str, n: int = 20, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(visibility ratio, mean absolute change in grey levels of 0-255) of each of the ``n`` crops
    with ``defect`` that ``make_image_set`` writes."""
    img, ci = sd.photograph(category), sd.CATEGORIES.index(category)
    usable = sd._usable(category, img)
    foreign = sd.photograph(sd.CATEGORIES[(ci + 3) % len(sd.CATEGORIES)])
    out, levels = [], []
    for i in range(n):  # make_image_set's draw, step by step
        r = np.random.default_rng(np.random.SeedSequence([seed, ci, 2 + sd.DEFECTS.index(defect), i]))
        for attempt in range(200):
            x = sd._crop(img, usable, "test", size, r)
            fr = r.integers(0, foreign.shape[0] - size + 1), r.integers(0, foreign.shape[1] - size + 1)
            y, m, region = sd.paint_defect(x, defect, r, foreign[fr[0]:fr[0] + size, fr[1]:fr[1] + size])
            if m.sum() >= max(8, (0.25 if attempt < 50 else 0.0) * region.sum()):
                break
        change = np.abs(y - x).max(2)[m].mean()
        g = x.mean(2)
        texture = np.abs(g - ndimage.uniform_filter(g, 5)).mean()
        out.append(change / max(texture, 1e-3))
        levels.append(255 * change)
    return np.asarray(out), np.asarray(levels)


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    args = ap.parse_args()
    t0 = time.perf_counter()
    tables = []
    for half, spec in sd.HALVES.items():
        kinds = spec["defects"]
        lines = [f"**{half} half**", "", "| category | " + " | ".join(kinds) + " |", "| --- " * (len(kinds) + 1) + "|"]
        for cat in spec["categories"]:
            cells = []
            for d in kinds:
                r, grey = ratios(cat, d)
                cells.append(f"{np.median(r):.1f} ({100 * np.mean(r < 1):.0f} %) · {np.median(grey):.0f}")
            lines.append(f"| {cat} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
        tables.append("\n".join(lines))
    body = ("Each defect's mean absolute change within its mask over the crop's local texture contrast (mean absolute "
            "difference between the grey level and its 5 x 5 mean), the 20 crops of each kind `make_image_set` "
            "writes (seed 0, 128 px): median ratio, and in brackets the share of crops under 1 (a change smaller "
            "than the texture's own from pixel to pixel); after the dot, the median of the change itself in grey "
            "levels (0-255): a ratio can be large on a dark, flat crop whose change is a few levels. "
            f"{time.perf_counter() - t0:.0f} s.\n\n" + "\n\n".join(tables))
    record.publish("Images: how visible each defect of the inspection set is (issue 18)", body, args.no_record)


if __name__ == "__main__":
    main()
