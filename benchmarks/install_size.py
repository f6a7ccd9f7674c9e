"""How large an install of anomalib_lite is: the installed size of its dependency closure, for the
base install and each extra, with the CUDA libraries (nvidia-*, triton) counted apart.

Reads the installed distributions' file lists (importlib.metadata), follows ``Requires-Dist``
(with extras, environment markers evaluated here), and sums file sizes; it downloads nothing.
What it measures is the environment it runs in: with torch's default wheel (CUDA libraries
included) or with its CPU wheel, whichever is installed.

Run:  python benchmarks/install_size.py [--no-record]
"""
from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

CUDA = re.compile(r"^(nvidia-|triton$|cuda-)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dists() -> dict[str, md.Distribution]:
    return {_norm(d.metadata["Name"]): d for d in md.distributions()}


def closure(root: str, extras: tuple[str, ...], dists: dict) -> set[str]:
    from packaging.requirements import Requirement

    seen, todo = set(), [(root, extras)]
    while todo:
        name, ex = todo.pop()
        key = _norm(name)
        if key in seen and not ex:
            continue
        seen.add(key)
        dist = dists.get(key)
        if dist is None:
            continue
        for raw in dist.requires or []:
            req = Requirement(raw)
            envs = [{"extra": e} for e in ex] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, tuple(req.extras)))
    return seen


def size(dist: md.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        try:
            total += Path(dist.locate_file(f)).stat().st_size
        except OSError:
            pass
    return total


def main() -> None:
    ap = record.parser()
    args = ap.parse_args()
    dists = _dists()
    torch = dists.get("torch")
    rows = ["| install | packages | total GB | CUDA libraries (nvidia-*, triton) GB | without them GB |",
            "|---|---|---|---|---|"]
    for label, extras in (("`pip install -e .`", ()), ('`pip install -e ".[export]"`', ("export",)),
                          ('`pip install -e ".[faiss]"`', ("faiss",)), ('`pip install -e ".[dev,export]"`', ("dev", "export"))):
        names = closure("anomalib_lite", extras, dists) - {"anomalib-lite"}
        sizes = {n: size(dists[n]) for n in names if n in dists}
        cuda = sum(s for n, s in sizes.items() if CUDA.match(n))
        total = sum(sizes.values())
        rows.append(f"| {label} | {len(sizes)} | {total / 1e9:.2f} | {cuda / 1e9:.2f} | {(total - cuda) / 1e9:.2f} |")
    big = sorted(((size(dists[n]), n) for n in closure("anomalib_lite", ("dev", "export"), dists) if n in dists),
                 reverse=True)[:8]
    body = (f"Installed sizes of the dependency closure in this environment (torch {torch.version if torch else '?'}; "
            "sizes of the installed files, not of the downloads).\n\n" + "\n".join(rows)
            + "\n\nLargest: " + ", ".join(f"{n} {s / 1e6:.0f} MB" for s, n in big) + ".")
    record.publish("Install size: anomalib_lite and its dependencies", body, args.no_record)


if __name__ == "__main__":
    main()
