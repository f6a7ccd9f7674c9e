"""Large photographs through ``anomaly fit --data`` with no detector named: time and peak memory
at full size and with ``?size=``, and whether the bundle flags a planted defect.

The set: scikit-image's astronaut photograph (512 px) enlarged to 1600 x 1200 px, 24 training
crops of 1200 x 900 px at random places, and 4 test crops from other places, two of them with an
80 x 80 px green square painted in (seed 0). Each route is one ``anomaly fit`` in a child
process (wall seconds, its peak resident memory), then ``anomaly score`` on the 4 test crops.

Run:  python benchmarks/large_images.py                 (about 8 minutes on 2 cores)
      python benchmarks/large_images.py --specs "tile=512&overlap=0.25"      (about 21 minutes)
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import record

REPO = Path(__file__).resolve().parents[1]
#: a child that runs one command and reports its peak resident memory (KiB on Linux)
MEASURE = ("import json, resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(json.dumps([r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")


def make_set(root: Path, seed: int = 0) -> None:
    from skimage import data

    big = np.asarray(Image.fromarray(data.astronaut()).resize((1600, 1200)))
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for i in range(24):
        y, x = rng.integers(0, 300), rng.integers(0, 400)
        Image.fromarray(big[y : y + 900, x : x + 1200]).save(root / "train" / f"{i}.jpg", quality=90)
    for i in range(4):
        y, x = rng.integers(0, 300), rng.integers(0, 400)
        crop = big[y : y + 900, x : x + 1200].copy()
        if i % 2:
            crop[400:480, 500:580] = [0, 255, 0]
        Image.fromarray(crop).save(root / "test" / f"{i}.jpg", quality=90)


def anomaly(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "cli.py"), *args]


def fit(root: Path, options: str | None) -> dict:
    """``options``: the spec's query (``size=256x192``, ``tile=512&overlap=0.25``), or None: full size."""
    spec = str(root / "train") + (f"?{options}" if options else "")
    bundle = root / f"m-{len(list(root.glob('m-*')))}.anomaly"
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", MEASURE, *anomaly("fit", "--data", spec, "-o", str(bundle), "-q")],
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    rc, kib = json.loads(out.stdout.strip().splitlines()[-1])
    if rc:
        raise SystemExit(f"anomaly fit failed ({rc}): {out.stderr[-2000:]}")
    warned = any("fitted at full size" in line for line in out.stderr.splitlines())
    scored = subprocess.run(anomaly("score", str(bundle), "--data", str(root / "test"), "-o", "-", "-q"),
                            capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(scored)))
    flagged = sorted(r["path"] for r in rows if r["is_anomaly"] == "1")
    return dict(size=f"?{options}" if options else "full size (1200x900)", wall=wall, gb=kib / 1024**2, warned=warned, flagged=flagged)


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", default="full,size=256x192",
                    help="comma-separated: full, or a spec query such as size=256x192 or tile=512&overlap=0.25")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_set(root)
        rows = []
        for options in args.specs.split(","):
            rows.append(fit(root, None if options == "full" else options))
            print(rows[-1], flush=True)
    lines = ["| images read | fit wall s | peak memory GB | size warning | test crops flagged (1 and 3 hold the defect) |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['size']} | {r['wall']:.0f} | {r['gb']:.1f} | {'yes' if r['warned'] else 'no'} | "
              f"{', '.join(r['flagged']) or 'none'} |" for r in rows]
    body = ("`anomaly fit --data DIR/train` with no detector named (the offline image route: resnet18 pretrained "
            "on the training images by the segment task, layer1+layer2 patch bank, 5-fold cross-fitted "
            "calibration), then `anomaly score` on 4 test crops. Set: the astronaut photograph enlarged to 1600 x "
            "1200 px, 24 training crops of 1200 x 900 px, 4 test crops, two with an 80 px green square (seed 0). "
            "Peak memory: the fit's child process (ru_maxrss).\n\n" + "\n".join(lines))
    record.publish("Large photographs: the offline image route at full size and resized", body, args.no_record)


if __name__ == "__main__":
    main()
