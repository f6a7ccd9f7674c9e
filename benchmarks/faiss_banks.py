"""FAISS banks against exact search: recall, ROC-AUC change and speed at 10^5-10^7 rows (issue 14).

Real patch features: a texture set from ``../shared/tools/make_textures.py`` (one category, 128 px)
through a random-init ResNet-18, layers 2 + 3 (384 wide, 16 x 16 patches an image). Banks of
``n`` rows are synthesised from the training crops' patches by perturbing real rows (Gaussian
noise of 0.3 x the median nearest-neighbour distance among them), built chunk by chunk in float16
(a 10^7 bank, 7.7 GB, lives in a memory-mapped file under ``--workdir``), as LatentDistance keeps
its banks. For each bank and index (``KnnIndex(bank, "faiss", type)``, the code LatentDistance
runs: FAISS candidates re-ranked exactly against the bank):

* recall@1 of the nearest-neighbour distance on ``--queries`` test patches (share within 1e-4
  relative of exact search; ground truth by chunked exact search);
* image ROC-AUC on the test crops (image score = its largest patch distance, PatchCore's), and
  the change from exact search (exact ROC-AUC only up to ``--roc-exact-max`` rows: exact search
  of every test patch against 10^7 rows takes too long here);
* build seconds (train + add), queries per second, serialised index MB.

Run:  python benchmarks/faiss_banks.py --sizes 100000,1000000
      python benchmarks/faiss_banks.py --sizes 10000000 --workdir /tmp
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
from sklearn.metrics import roc_auc_score

import anomalib_lite as al
from anomalib_lite.data.batches import iter_batches
from anomalib_lite.components.features import Featurizer, make_extractor
from anomalib_lite.components.memory import KnnIndex, choose_faiss_index, faiss_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

TOOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "make_textures.py"
CHUNK = 1 << 18  # rows synthesised / searched exactly at once


def patch_features(data: Path, category: str, seed: int):
    """(train patch rows (R, 384) float32, test patches (images, 256, 384), test labels 0/1)."""
    ext = make_extractor("resnet18", "random", ["layer2", "layer3"], None, "cpu", seed)
    feat = Featurizer(extractor=ext, patch_size=7, device="cpu")

    def rows(spec):
        out, labels = [], []
        for b in iter_batches(al.load_data(spec), batch_size=16):
            p = feat.patches(b.x)
            out.append(p.permute(0, 2, 3, 1).reshape(p.shape[0], -1, p.shape[1]))
            labels.append(np.zeros(len(p)) if b.y is None else np.asarray(b.y))
        return torch.cat(out), np.concatenate(labels)

    train, _ = rows(str(data / category / "train"))
    test, labels = rows(str(data / category / "test"))
    return train.reshape(-1, train.shape[-1]), test, (labels != 0).astype(int)


def synth_bank(real: torch.Tensor, n: int, workdir: Path, seed: int) -> torch.Tensor:
    """``n`` float16 rows: real rows (cycled) plus small Gaussian noise, made chunk by chunk."""
    nn_d = KnnIndex(real[:20000]).search(real[:20000], 1, exclude_self=True)[:, 0]
    sigma = 0.3 * float(nn_d.median()) / real.shape[1] ** 0.5
    if n * real.shape[1] * 2 > (2 << 30):
        path = workdir / f"bank_{n}.f16"
        bank = torch.from_numpy(np.memmap(path, dtype=np.float16, mode="w+", shape=(n, real.shape[1])))
    else:
        bank = torch.empty(n, real.shape[1], dtype=torch.float16)
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, n, CHUNK):
        m = min(CHUNK, n - i)
        src = real[torch.randint(len(real), (m,), generator=gen)]
        bank[i : i + m] = (src + sigma * torch.randn(m, real.shape[1], generator=gen)).half()
    return bank


def exact_nn(bank: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Exact nearest-neighbour distance of each query, by chunks of the bank in float32."""
    best = torch.full((len(queries),), float("inf"))
    for i in range(0, len(bank), CHUNK):
        d = KnnIndex(bank[i : i + CHUNK].float()).search(queries, 1)[:, 0]
        torch.minimum(best, d, out=best)
    return best


def image_auc(dist: torch.Tensor, images: int, labels: np.ndarray) -> float:
    return 100 * roc_auc_score(labels, dist.reshape(images, -1).amax(1).numpy())


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--indexes", default=None, help="comma list (default: every type that fits the size)")
    ap.add_argument("--data", type=Path, default=None, help="an existing texture set (default: make one)")
    ap.add_argument("--category", default="brick")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--roc-exact-max", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    load0 = os.getloadavg()
    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.TemporaryDirectory()
        data = Path(tmp.name)
        subprocess.run([sys.executable, str(TOOL), str(data), "--categories", args.category, "--train", "60",
                        "--good", "20", "--per-defect", "5"], check=True, stdout=subprocess.DEVNULL)
    real, test, labels = patch_features(data, args.category, args.seed)
    images = len(test)
    roc_q = test.reshape(-1, test.shape[-1])
    gen = torch.Generator().manual_seed(args.seed + 1)
    rec_q = roc_q[torch.randperm(len(roc_q), generator=gen)[: args.queries]]
    print(f"{len(real):,} real training patches, {images} test crops ({labels.sum()} defective), "
          f"{len(roc_q):,} test patches", flush=True)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        t0 = time.perf_counter()
        bank = synth_bank(real, n, args.workdir, args.seed)
        t_syn = time.perf_counter() - t0
        t0 = time.perf_counter()
        gt = exact_nn(bank, rec_q)
        t_exact = time.perf_counter() - t0
        exact_auc = image_auc(exact_nn(bank, roc_q), images, labels) if n <= args.roc_exact_max else None
        print(f"n={n:,}: synthesised in {t_syn:.0f}s; exact search {len(rec_q) / t_exact:.0f} queries/s; "
              f"exact ROC-AUC {exact_auc}", flush=True)
        rows.append(dict(n=n, kind="exact (torch, chunked)", build=0.0, qps=len(rec_q) / t_exact, recall=1.0,
                         auc=exact_auc, delta=0.0 if exact_auc is not None else None, mb=0.0, plan=""))
        kinds = args.indexes.split(",") if args.indexes else (
            ["flat", "ivfflat", "ivfpq", "hnsw"] if n <= 100_000 else ["ivfflat", "ivfpq"] if n <= 2_000_000
            else ["ivfpq"])  # exact search is the first row; IVF-Flat past 2e6 would copy the bank in float32
        for kind in kinds:
            t0 = time.perf_counter()
            index = KnnIndex(bank, "faiss", kind, seed=args.seed)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            d = index.search(rec_q, 1)[:, 0]
            qps = len(rec_q) / (time.perf_counter() - t0)
            recall = float(((d - gt).abs() <= 1e-4 * gt + 1e-5).float().mean())
            auc = image_auc(index.search(roc_q, 1)[:, 0], images, labels)
            mb = len(index.to_bytes()) / 1e6 if index.trained else 0.0
            plan = faiss_plan(kind, n, bank.shape[1])
            desc = plan["factory"] + (f", nprobe {plan['nprobe']}" if plan["nprobe"] else "") + (
                f", ef {plan['ef']}" if plan["ef"] else "") + (
                f", {plan['candidates']} re-ranked" if plan["candidates"] > 1 else "")
            row = dict(n=n, kind=kind, build=build, qps=qps, recall=recall, auc=auc, mb=mb, plan=desc,
                       delta=None if exact_auc is None else auc - exact_auc)
            rows.append(row)
            print(f"  {kind:8s} {desc:40s} build {build:.1f}s {qps:.0f} q/s recall@1 {recall:.3f} "
                  f"ROC-AUC {auc:.2f} index {mb:.0f} MB", flush=True)
            del index
        del bank
        for f in args.workdir.glob(f"bank_{n}.f16"):
            f.unlink()
    load1 = os.getloadavg()
    lines = ["| bank rows | index (auto = **bold**) | settings | build s | queries/s | recall@1 of NN distance | "
             "image ROC-AUC | change vs exact | serialised index MB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        auto = r["kind"] == choose_faiss_index(r["n"])
        kind = f"**{r['kind']}**" if auto else r["kind"]
        auc = "" if r["auc"] is None else f"{r['auc']:.2f}"
        delta = "not computed" if r["delta"] is None else f"{r['delta']:+.2f}"
        lines.append(f"| {r['n']:,} | {kind} | {r['plan']} | {r['build']:.1f} | {r['qps']:,.0f} | {r['recall']:.3f} | "
                     f"{auc} | {delta} | {r['mb']:.0f} |")
    body = (f"Texture category {args.category} (`make_textures.py --train 60 --good 20 --per-defect 5`, 128 px), "
            f"random-init ResNet-18 layers 2+3 (384 wide): {len(real):,} real training patches; banks synthesised by "
            f"perturbing them (float16); {args.queries} test patches for recall (exact ground truth by chunked "
            f"search), {images} test crops ({labels.sum()} defective, {len(roc_q):,} patches) for ROC-AUC; "
            f"`KnnIndex(bank, 'faiss', type)` as LatentDistance runs it (candidates re-ranked exactly). "
            f"{args.threads} thread(s) for torch and FAISS. **Shared, busy machine**: load average "
            f"{load0[0]:.1f} at start, {load1[0]:.1f} at end, so seconds are pessimistic (the lead may rerun).\n\n"
            + "\n".join(lines))
    record.publish("FAISS banks vs exact search (recall, ROC-AUC, speed)", body, args.no_record)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
