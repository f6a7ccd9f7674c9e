"""Score a folder of images with an exported model (anomaly export) and onnxruntime alone.

No torch and no anomalib_lite here: onnxruntime, numpy and Pillow. Images are read the way the
toolkit reads a folder: every image file under it (sorted), EXIF orientation applied, converted
to grey or RGB to match the model, resized to the model's size (bilinear), scaled to [0, 1].
Prints (or writes with -o) one CSV row per image: path (relative to the folder), score and,
when the model carries a threshold, is_anomaly (score > threshold).

Run:  python examples/serve_onnx.py digit7.onnx digits/ [-o scores.csv] [--threads 1]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"}


def read_image(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """(channels, height, width) float32 in [0, 1]; 16-bit grey is scaled by 1/65535."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if channels == 1 and im.mode in ("I", "I;16", "I;16B", "I;16L"):
            a = np.asarray(im, dtype=np.float32) / 65535.0
            if a.shape != (height, width):
                a = np.asarray(Image.fromarray(a, mode="F").resize((width, height), Image.BILINEAR))
            return np.clip(a, 0.0, 1.0)[None]
        if im.mode in ("P", "CMYK") or (im.mode not in ("L", "RGB") and channels == 1):
            im = im.convert("RGBA" if im.mode == "P" else "RGB")
        im = im.convert("L" if channels == 1 else "RGB")
        if (im.height, im.width) != (height, width):
            im = im.resize((width, height), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="ONNX model written by `anomaly export`")
    ap.add_argument("folder", help="folder of images (searched recursively)")
    ap.add_argument("-o", "--output", default="-", help="CSV to write (default: print)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    args = ap.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    _, channels, height, width = json.loads(meta["input_shape"])  # ["N", C, H, W]
    threshold = float(meta["threshold"]) if meta.get("threshold") else None

    root = Path(args.folder)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        print(f"serve_onnx: {root}: no image files", file=sys.stderr)
        return 2
    out = sys.stdout if args.output == "-" else open(args.output, "w", newline="")
    writer = csv.writer(out)
    writer.writerow(["path", "score"] + (["is_anomaly"] if threshold is not None else []))
    for i in range(0, len(files), args.batch_size):
        part = files[i : i + args.batch_size]
        images = np.stack([read_image(p, channels, height, width) for p in part])
        scores = session.run(["score"], {"images": images})[0]
        for path, s in zip(part, scores):
            row = [path.relative_to(root).as_posix(), f"{s:.7g}"]
            writer.writerow(row + ([int(s > threshold)] if threshold is not None else []))
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
