"""Seeded mutation fuzzer over model bundles of every detector (issue 11).

Tiny detectors of all five kinds are fitted, calibrated and saved signed with a throw-away key
(LatentDistance three ways: patch bank, vector bank, per-position Gaussians; one with a random
resnet18 whose weights travel in the bundle). Each mutated bundle is a seeded variation of one of
them: a header field replaced (wrong type, out of range, missing, extra, nested, huge, NaN/inf,
relative changes such as another method), a tensor changed (shape, dtype, values, name, dropped,
added), the safetensors preamble edited (offsets, dtypes, shapes, the length field), the file
truncated or bytes flipped. Most mutations then recompute the checksum and re-sign the file with
the test key, so the mutation passes the signature check and reaches validation.

Every bundle is loaded with the public key and, when it loads, scored. The outcome is one of:

* ``refused``: one ``AnomalyError`` with a one-line message;
* ``sane``: loaded, and scoring gave finite scores (series: NaN only while the first window
  fills) or a one-line ``AnomalyError``;
* a failure: any other exception (a traceback), a multi-line message, non-finite scores, a hang
  (past ``--timeout`` seconds) or an allocation beyond the worker's address-space cap.

Each case runs in a worker process with an alarm and an address-space limit; a worker that does
not answer in time is killed (a hang) and replaced. ``--only NAME:INDEX`` reruns one case in
this process and prints its traceback.

    OMP_NUM_THREADS=1 python benchmarks/fuzz_bundles.py              # 5,000+ mutations, BENCHMARKS.md
    python benchmarks/fuzz_bundles.py --per-detector 20 --no-record   # a quick look
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from anomalib_lite.data import sample_data  # noqa: E402

KEY = "anomalib_lite"

# ---------------------------------------------------------------- the seed bundles


_images = sample_data.toy_images
_series = sample_data.toy_series
_labelled = sample_data.toy_labelled_series


#: LatentDistance's banks, each a seed of its own (its other parts are the registry's seeds)
VARIANTS = {
    "LatentDistance-patch": ({"patch_size": 3}, "images"),
    "LatentDistance-vector": ({}, "vectors"),
    "LatentDistance-gaussian": ({"method": "gaussian", "patch_size": 3, "map_dims": 8, "image_score": "patch"},
                                "images"),
    "LatentDistance-resnet": ({"backbone": "resnet18", "weights": "random", "layers": ["layer1"], "image_size": 32,
                               "memory_size": 64}, "images"),
}


def _kind(cls) -> str:
    """What a registered detector's seed is fitted on."""
    if cls.input_kind != "series":
        return "images"
    return "series" if cls.capabilities.calibrates else "labelled"


def _cases():
    """One seed per registered detector (its ``quick_params``) and per variant above."""
    import anomalib_lite as al

    cases = {}
    for name, cls in al.DETECTORS.items():
        variants = {v: spec for v, spec in VARIANTS.items() if v.split("-")[0] == name}
        for v, (params, kind) in (variants or {name: ({**cls.quick_params}, _kind(cls))}).items():
            cases[v] = (lambda cls=cls, params=params: cls(**{**params, "device": "cpu"}), kind)
    return cases


def _names() -> list[str]:
    return list(_cases())


NAMES = _names()


def score_data(kind: str):
    """What a loaded bundle is scored on."""
    if kind == "images":
        return _images(4, 1, spot=True)
    if kind == "vectors":
        return np.random.default_rng(1).random((6, 5)).astype(np.float32)
    return _series(40, 1)


def make_seeds(folder: Path, names=NAMES) -> dict[str, tuple[Path, str]]:
    """Fit, calibrate and save (signed with ``folder/test.key``) one tiny detector per case."""
    from anomalib_lite.bundles import signing

    folder = Path(folder)
    key = folder / "test.key"
    if not key.exists():
        signing.generate_keys(key)
    cases = _cases()
    out = {}
    for name in names:
        make, kind = cases[name]
        det = make()
        if kind == "images":
            x = _images(40, 0)
            det.fit(x[:32]).calibrate(x[32:], fpr=0.2)
        elif kind == "vectors":
            x = np.random.default_rng(0).random((60, 5)).astype(np.float32)
            det.fit(x[:50]).calibrate(x[50:], fpr=0.2)
        elif kind == "series":
            x = _series(300, 0)
            det.fit(x[:200]).calibrate(x[200:], fpr=0.1, context=x[:200])
        else:
            x, y = _labelled(400, 0)
            det.fit(x, y)
        path = folder / f"{name}.anomaly"
        det.save(path, sign=key)
        out[name] = (path, kind)
    return out


# ---------------------------------------------------------------- reading and writing bundles


def split(data: bytes) -> tuple[dict, bytes]:
    """The safetensors preamble (JSON) and the tensor bytes."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(preamble: dict, body: bytes, raw: dict | None = None) -> bytes:
    """A safetensors file from a preamble and tensor bytes (padded to 8 bytes as safetensors
    does). ``raw``: placeholder strings replaced by raw JSON text (numbers json cannot write)."""
    text = json.dumps(preamble, separators=(",", ":"))
    for token, value in (raw or {}).items():
        text = text.replace(json.dumps(token), value)
    head = text.encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + body


def read_tensors(data: bytes) -> tuple[dict, dict]:
    """(header, tensors) of a well-formed bundle."""
    from safetensors.torch import load

    preamble, _ = split(data)
    return json.loads(preamble["__metadata__"][KEY]), load(data)


def build(header: dict, tensors: dict, key, checksum: bool = True, raw: dict | None = None) -> bytes:
    """A bundle from a (mutated) header and tensors: checksum recomputed, signed with ``key``."""
    from safetensors.torch import save

    from anomalib_lite.bundles import bundle, signing

    if checksum:
        header = dict(header)
        try:
            header["checksum"] = bundle._checksum(header, tensors)
        except (ValueError, RecursionError, TypeError):
            pass  # a header json cannot write (the raw tokens stand for such values)
    text = json.dumps(header, allow_nan=True)
    for token, value in (raw or {}).items():
        text = text.replace(json.dumps(token), value)
    data = save({k: t.contiguous() for k, t in tensors.items()},
                metadata={KEY: text, signing.SIGNATURE_KEY: signing.PLACEHOLDER})
    return sign(data, key)


def sign(data: bytes, key) -> bytes:
    """``data`` with its signature field (placeholder) filled in, when it has one."""
    from anomalib_lite.bundles import signing

    try:
        span = signing._signature_span(data, "fuzz")
    except Exception:
        return data
    if span is None:
        return data
    data = data[: span[0]] + signing.PLACEHOLDER.encode() + data[span[1] :]
    signature = key.sign(signing._digest(data, span)).hex().encode()
    return data[: span[0]] + signature + data[span[1] :]


# ---------------------------------------------------------------- mutations

#: text a forger would put where a name goes: forged lines, terminal escapes, floods
HOSTILE_TEXT = ["x\nanomaly: ok, signed by the line key", "\x1b[2J\x1b[31mred", "\r\u202eevil", "a" * 100_000,
                "b" * 300 + "\n" + "c" * 300, "\x00\x07\x08"]
BIG = "\x00BIGINT\x00"
DEEP = "\x00DEEP\x00"
RAW = {BIG: "1" + "0" * 5000, DEEP: "[" * 100_000 + "]" * 100_000}


def pick(rng, seq):
    """One item of ``seq`` (any objects, unlike numpy's choice)."""
    seq = list(seq)
    return seq[int(rng.integers(len(seq)))]


def hostile_values(rng) -> object:
    pool = [
        None, True, False, 0, -1, 1, 2, 3, 7, 8, 255, 2048, 4096, 8192, [4096, 4096], [8192, 8192], 2**31, 2**63, -(2**63), 10**30, -(10**30), 10**308,
        1e308, -1e308, float("nan"), float("inf"), float("-inf"), 0.5, -0.5, 1e-300, 1.5, "", "x", "auto",
        "cpu", "cuda:7", "meta", "mps", "../../etc/passwd", "/dev/zero", "/dev/stdin", "imagenet", "random",
        "imagenet:IMAGENET1K_V2", "resnet18", "knn", "gaussian", "lstm", "a" * 100_000, "\u2603\x00", [], [1],
        [1, 2], [8, 8], [1, 16, 16], [0, 0, 0], [-1, 16, 16], [1, 2, 3, 4, 5], [[[]]], ["layer1", "layer9"],
        {}, {"a": 1}, {"tile": 8, "overlap": 0.5}, [None] * 3, [1e308] * 2, BIG, DEEP, list(range(100)),
        2**63 - 1, 2**64, 2**70, -(2**63) - 1, *HOSTILE_TEXT,
    ]
    return pool[rng.integers(len(pool))]


def relative(value, rng):
    """A change near the current value (what a careful forger would try)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return int(pick(rng, [value + 1, value - 1, -value, value * 2, value * 1000, value * 10**12, 0, 1]))
    if isinstance(value, float):
        return float(pick(rng, [value * 2, -value, value * 1e6, 0.0, 1.0, value + 1e-9]))
    if isinstance(value, str):
        swaps = {"knn": "gaussian", "gaussian": "knn", "patch": "pooled", "pooled": "patch", "lstm": "gru",
                 "gru": "tcn", "tcn": "lstm", "float16": "float32", "float32": "float16", "mse": "ssim",
                 "torch": "faiss", "channel": "global", "calibrated": "dynamic", "resnet18": "wide_resnet50_2",
                 "random": "imagenet", "layer1": "layer4"}
        return swaps.get(value, value + "x")
    if isinstance(value, list) and value:
        i = int(rng.integers(len(value)))
        choice = rng.integers(4)
        if choice == 0:
            return value[:i] + value[i + 1 :]
        if choice == 1:
            return value + [value[i]]
        if choice == 2:
            return value[:i] + [relative(value[i], rng)] + value[i + 1 :]
        return list(reversed(value))
    return hostile_values(rng)


def _paths(obj, prefix=()):
    """Every (path, value) inside a header (dicts and lists), the top level excluded."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return
    for k, v in items:
        yield (*prefix, k), v
        yield from _paths(v, (*prefix, k))


def _set(obj, path, value, delete=False):
    for k in path[:-1]:
        obj = obj[k]
    if delete:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


def mutate_header(header: dict, rng) -> tuple[dict, str]:
    import copy

    h = copy.deepcopy(header)
    paths = list(_paths(h))
    if not paths:
        return mutate_top(h, rng)
    path, value = paths[rng.integers(len(paths))]
    how = pick(rng, ["hostile", "hostile", "relative", "relative", "delete", "extra", "wrap"])
    if how == "delete":
        _set(h, path, None, delete=True)
    elif how == "extra":
        target = value if isinstance(value, dict) else h
        target[str(pick(rng, ["extra", "__class__", "backbone_", "k", "weights"]))] = hostile_values(rng)
    elif how == "wrap":
        _set(h, path, pick(rng, [[value], {"value": value}, [[value]]]) if value is not DEEP else [value])
    else:
        _set(h, path, hostile_values(rng) if how == "hostile" else relative(value, rng))
    return h, f"header {how} {'.'.join(map(str, path))}"


def mutate_top(header: dict, rng) -> tuple[dict, str]:
    import copy

    h = copy.deepcopy(header)
    field = str(pick(rng, list(h) + ["extra"]))
    how = pick(rng, ["delete", "hostile", "hostile"])
    if how == "delete" and field in h:
        del h[field]
    else:
        h[field] = hostile_values(rng)
    return h, f"top {how} {field}"


def mutate_tensor(tensors: dict, rng) -> tuple[dict, str]:
    import torch

    t = dict(tensors)
    if not t:
        t["extra"] = torch.zeros(3)
        return t, "tensor add extra"
    name = sorted(t)[rng.integers(len(t))]
    x = t[name]
    how = str(pick(rng, ["shape", "shape", "dtype", "dtype", "values", "values", "drop", "rename", "add",
                          "empty", "scalar"]))
    if how == "shape":
        shapes = [(x.numel(),), (1, *x.shape), (*x.shape, 1)]
        if x.ndim >= 1 and x.shape[0] > 1:
            shapes.append(None)  # drop rows
        if x.ndim >= 2:
            shapes.append(tuple(reversed(x.shape)))
        s = shapes[rng.integers(len(shapes))]
        if s is None:
            t[name] = x[: max(1, x.shape[0] // 2)].clone()
        elif x.ndim >= 1 and rng.random() < 0.3:
            t[name] = torch.cat([x, x[:1]]) if x.shape[0] else x
        else:
            t[name] = x.reshape(s) if math.prod(s) == x.numel() else x
    elif how == "dtype":
        dtypes = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32,
                  torch.uint8, torch.bool, torch.int8]
        t[name] = x.to(dtypes[rng.integers(len(dtypes))])
    elif how == "values":
        y = x.clone()
        flat = y.reshape(-1)
        if flat.numel():
            idx = torch.as_tensor(rng.integers(0, flat.numel(), size=max(1, flat.numel() // 10)))
            if y.is_floating_point():
                bad = [float("nan"), float("inf"), float("-inf"), 1e30 if y.dtype != torch.float16 else 6e4, -1e4,
                       0.0]
                flat[idx] = bad[rng.integers(len(bad))]
            elif y.dtype == torch.bool:
                flat[idx] = True
            else:
                flat[idx] = int(pick(rng, [-1, 10**6, 2**62, 0] if y.dtype == torch.int64 else [0, 1, 100]))
        t[name] = y
    elif how == "drop":
        del t[name]
    elif how == "rename":
        t[str(pick(rng, ["evil", name + "x", "../" + name, name.upper()]))] = t.pop(name)
    elif how == "add":
        t[str(pick(rng, ["extra", "bank.evil", "model.extra.weight", "calibration_scores"]))] = torch.zeros(3)
    elif how == "empty":
        t[name] = x.new_zeros((0, *x.shape[1:])) if x.ndim else x.new_zeros((0,))
    else:
        t[name] = x.reshape(-1)[:1].reshape(()) if x.numel() else x.new_zeros(())
    return t, f"tensor {how} {name}"


_DTYPE_NAMES = ["F16", "BF16", "F32", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "X",
                "", 5, None]


def mutate_preamble(data: bytes, rng, key) -> tuple[bytes, str]:
    """Edit the safetensors preamble itself (offsets, dtypes, shapes, the length field); with
    probability 0.7 repair the checksum over whatever safetensors then reads, and re-sign."""
    pre, body = split(data)
    names = [k for k in pre if k != "__metadata__"]
    name = names[rng.integers(len(names))]
    entry = pre[name]
    how = str(pick(rng, ["offsets", "offsets", "dtype", "dtype_same_bytes", "shape", "length", "junk", "meta"]))
    if how == "offsets":
        a, b = entry["data_offsets"]
        entry["data_offsets"] = [int(v) for v in pick(rng, 
            [[b, a], [a, b + 8], [a - 8 if a >= 8 else 0, b], [0, len(body)], [a, 2**63], [2**64 - 8, 2**64 - 1],
             [a, a], [-1, b]])]
    elif how == "dtype":
        entry["dtype"] = _DTYPE_NAMES[rng.integers(len(_DTYPE_NAMES))]
    elif how == "dtype_same_bytes":  # same byte count: safetensors reads it, the bundle must not
        size = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}
        old = size.get(entry["dtype"], 4)
        new = str(pick(rng, list(size)))
        nbytes = math.prod(entry["shape"]) * old
        if nbytes % size[new] == 0:
            entry["dtype"], entry["shape"] = new, [nbytes // size[new]]
    elif how == "shape":
        s = entry["shape"]
        entry["shape"] = pick(rng, [[], [-1], [2**40], [2**31, 2**31], list(reversed(s)), s + [1], ["1"], [0], None])
    elif how == "length":
        out = struct.pack("<Q", int(pick(rng, [0, 1, 7, 2**63, len(data), len(data) + 8, 2**32]))) + data[8:]
        return out, f"preamble length ({name})"
    elif how == "junk":
        pre[str(pick(rng, ["evil", "__proto__", "a" * 1000]))] = pick(rng, 
            [{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "x", 5, None, []])
    else:
        pre["__metadata__"][str(pick(rng, ["evil", KEY + "x"]))] = "x"
    out = join(pre, body)
    if rng.random() < 0.7:
        out = repair(out, key)
    return out, f"preamble {how} {name}"


def repair(data: bytes, key) -> bytes:
    """Recompute the checksum over what safetensors reads from ``data`` and re-sign it (the
    forger's move); ``data`` unchanged when safetensors refuses it."""
    from safetensors.torch import load

    from anomalib_lite.bundles import bundle

    try:
        tensors = load(data)
        pre, body = split(data)
        header = json.loads(pre["__metadata__"][KEY])
        header["checksum"] = bundle._checksum(header, tensors)
        pre["__metadata__"][KEY] = json.dumps(header)
        return sign(join(pre, body), key)
    except Exception:
        return data


# ------------------------------------------------ issue 20's classes: each must be refused (or load sanely)

#: objects of the header whose fields are all required and known (a missing or unknown field
#: must be refused); free-form values inside parameters (augmentation configs) are not among them
_STRICT = ((), ("params",), ("fitted",), ("tiling",), ("versions",), ("data",), ("fitted", "backbone_"),
           ("fitted", "history_"))
VERSIONS = [0, -1, 1, 3, True, False, "2", 2.0, None, 2**70, [2], {"v": 2}]
#: mutation classes whose every mutant must be refused at load
MUST_REFUSE = ("version", "missing", "unknown", "duplicate", "signature")


def _strict_objects(h: dict) -> list[tuple[tuple, dict]]:
    out = []
    for path in _STRICT:
        obj = h
        for k in path:
            obj = obj.get(k) if isinstance(obj, dict) else None
        if isinstance(obj, dict) and obj:
            out.append((path, obj))
    return out


def _data_info(rng) -> dict:
    """A training-data description (images fitted on a folder), one field possibly hostile."""
    d = {"spec": "parts/train", "n": 40, "classes": ["good"]}
    if rng.random() < 0.7:
        field = str(pick(rng, list(d)))
        d[field] = pick(rng, [hostile_values(rng), 5, "good", ["good", 3], [["good"]], {"a": 1}, ["x\ny"] * 3,
                              ["g" * 100_000], list(map(str, range(5000)))])
    return d


def mutate_issue20(header: dict, tensors: dict, seed: bytes, rng, key) -> tuple[bytes, str]:
    """One mutant of the classes issue 20 added: format_version, missing and unknown fields,
    duplicate JSON keys (header, metadata, tensor entries), hostile text, data descriptions,
    out-of-range seeds, and another spelling of the signature."""
    import copy

    h = copy.deepcopy(header)
    kind = str(pick(rng, ["version", "missing", "missing", "unknown", "unknown", "duplicate", "duplicate", "text",
                          "text", "data", "data", "seed", "signature"]))
    if kind == "version":
        h["format_version"] = pick(rng, VERSIONS)
        return build(h, tensors, key, True, RAW), f"version {h['format_version']!r}"[:80]
    if kind in ("missing", "unknown"):
        if kind == "unknown" or rng.random() < 0.2:  # a missing field can also come with a data description
            h.setdefault("data", None)
        if h.get("data") is None and rng.random() < 0.3:
            h["data"] = {"spec": "parts/train", "n": 40, "classes": ["good"]}
        path, obj = pick(rng, _strict_objects(h))
        if kind == "missing":
            field = str(pick(rng, sorted(obj)))
            del obj[field]
        else:
            field = str(pick(rng, ["extra", "__class__", "Detector", "checksum_", "seed ", "x\ny", "a" * 5000]))
            obj[field] = hostile_values(rng)
        checksum = (path, field) != ((), "checksum")  # build() would put a deleted checksum back
        return build(h, tensors, key, checksum, RAW), f"{kind} {'.'.join(map(str, path + (field,)))[:80]}"
    if kind == "duplicate":
        return _duplicate(h, tensors, seed, rng, key)
    if kind == "text":
        paths = [p for p, v in _paths(h) if isinstance(v, str)] + [("detector",)]
        path = pick(rng, paths)
        text = str(pick(rng, HOSTILE_TEXT))
        parent = h
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and rng.random() < 0.3:  # as a key, not a value
            parent[text] = parent.pop(path[-1])
            return build(h, tensors, key, True, RAW), f"text key at {'.'.join(map(str, path))[:60]}"
        _set(h, path, text if path != ("detector",) else "LatentDistance" + text)
        return build(h, tensors, key, True, RAW), f"text {'.'.join(map(str, path))[:60]}"
    if kind == "data":
        h["data"] = _data_info(rng)
        h["normal_classes"] = h["data"].get("classes") if rng.random() < 0.8 else hostile_values(rng)
        return build(h, tensors, key, True, RAW), "data " + json.dumps(h["data"], default=str)[:60]
    if kind == "seed":
        value = int(pick(rng, [2**63 - 1, 2**63, 2**64, 2**70, -1, -(2**63)]))
        if isinstance(h["fitted"].get("backbone_"), dict) and rng.random() < 0.7:
            h["fitted"]["backbone_"]["seed"] = value
            return build(h, tensors, key, True, RAW), f"seed fitted.backbone_.seed={value}"
        h["params"]["seed"] = value
        return build(h, tensors, key, True, RAW), f"seed params.seed={value}"
    from anomalib_lite.bundles import signing

    span = signing._signature_span(seed, "fuzz")
    text = seed[span[0] : span[1]].decode()
    how = str(pick(rng, ["upper", "mixed", "0x"]))
    if how == "upper":
        other = text.upper()
    elif how == "mixed":
        other = "".join(c.upper() if i % 2 else c for i, c in enumerate(text))
    else:
        other = "0x" + text[:-2]
    return seed[: span[0]] + other.encode() + seed[span[1] :], f"signature {how}"


def _duplicate(h: dict, tensors: dict, seed: bytes, rng, key) -> tuple[bytes, str]:
    """A JSON key given twice: in the bundle header, in the safetensors metadata, or a tensor
    entry of the preamble (two readers could take different values of it)."""
    where = str(pick(rng, ["header", "metadata", "tensor"]))
    if where == "header":
        field = str(pick(rng, ["detector", "params", "fitted", "threshold_", "format_version"]))
        if field == "threshold_":
            h["fitted"]["threshold_"] = "\x00DUP\x00"
            value = '1e6, "threshold_": -1.0'
        elif field == "detector":
            h[field] = "\x00DUP\x00"
            value = '"LatentDistance", "detector": "Reconstruction"'
        elif field == "format_version":
            h[field] = "\x00DUP\x00"
            value = '2, "format_version": 2'
        else:
            value = json.dumps(h[field]) + f', "{field}": ' + json.dumps({})
            h[field] = "\x00DUP\x00"
        return build(h, tensors, key, True, {**RAW, "\x00DUP\x00": value}), f"duplicate header key {field}"
    pre, body = split(seed)
    text = json.dumps(pre, separators=(",", ":"))
    if where == "metadata":
        extra = json.dumps(KEY) + ":" + json.dumps(pre["__metadata__"][KEY].replace('"Latent', '"Xatent'))
        text = text.replace('"__metadata__":{', '"__metadata__":{' + extra + ",", 1)
    else:
        names = [k for k in pre if k != "__metadata__"]
        name = str(pick(rng, names))
        other = pre[str(pick(rng, names))]
        text = text[:-1] + "," + json.dumps(name) + ":" + json.dumps(other) + "}"
    head = text.encode()
    head += b" " * (-len(head) % 8)
    data = struct.pack("<Q", len(head)) + head + body
    return sign(data, key), f"duplicate {where} key"


def mutate(seed: bytes, rng, key) -> tuple[bytes, str]:
    """One seeded mutation of a bundle's bytes."""
    header, tensors = read_tensors(seed)
    kind = pick(rng, ["header", "header", "header", "header", "top", "tensor", "tensor", "tensor", "preamble",
                       "preamble", "truncate", "flip", "several", "issue20", "issue20", "issue20", "issue20"])
    checksum = rng.random() < 0.95
    if kind == "issue20":
        return mutate_issue20(header, tensors, seed, rng, key)
    if kind in ("header", "top"):
        header, what = (mutate_header if kind == "header" else mutate_top)(header, rng)
        return build(header, tensors, key, checksum, RAW), what
    if kind == "tensor":
        tensors, what = mutate_tensor(tensors, rng)
        return build(header, tensors, key, checksum, RAW), what
    if kind == "several":
        whats = []
        for _ in range(int(rng.integers(2, 5))):
            if rng.random() < 0.5:
                header, w = mutate_header(header, rng)
            else:
                tensors, w = mutate_tensor(tensors, rng)
            whats.append(w)
        return build(header, tensors, key, checksum, RAW), " + ".join(whats)
    if kind == "preamble":
        return mutate_preamble(seed, rng, key)
    if kind == "truncate":
        cut = int(rng.integers(0, len(seed)))
        return sign(seed[:cut], key), f"truncate at {cut} of {len(seed)}"
    data = bytearray(seed)
    for _ in range(int(rng.integers(1, 9))):
        data[int(rng.integers(len(data)))] = int(rng.integers(256))
    out = bytes(data)
    return (sign(out, key) if rng.random() < 0.8 else out), "flip bytes"


# ---------------------------------------------------------------- one case


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def _sane_scores(det, kind, scores) -> str | None:
    """Why ``scores`` are not sane, or None."""
    n = len(score_data(kind))
    scores = np.asarray(scores)
    if scores.shape != (n,):
        return f"scores shaped {scores.shape}, expected ({n},)"
    if kind in ("series", "labelled"):
        if np.isinf(scores).any():
            return "infinite scores"
        finite = np.isfinite(scores)
        if finite.any() and np.isnan(scores[int(np.argmax(finite)) :]).any():
            return "NaN scores after the first finite one"
        return None
    if not np.isfinite(scores).all():
        return "non-finite scores"
    return None


#: the longest refusal a loader may print (issue 20: quoted text is cut to 200 characters)
MAX_MESSAGE = 700
#: the longest line ``anomaly info`` may print (a key and a value of at most 200 characters each)
MAX_INFO_LINE = 410


def _message_problem(text: str) -> str | None:
    """Why a refusal is not one bounded, printable line, or None."""
    if "\n" in text:
        return "multiline"
    if len(text) > MAX_MESSAGE or not text.isprintable():
        return "unbounded"
    return None


def labelled(kind: str):
    """A labelled source for the evaluate stage (its labels read the bundle's data.classes)."""
    from anomalib_lite.data.sources import ArraySource

    x = score_data(kind)
    targets = np.arange(len(x)) % 2
    return ArraySource("fuzz", x, targets, ["good", "bad"])


def _info(path: Path, public) -> tuple[str, str] | None:
    """``anomaly info`` on the bundle: a one-line refusal, or lines that are printable and bounded."""
    import anomalib_lite as al
    from anomalib_lite import AnomalyError
    from anomalib_lite.app.workflows import describe_header

    try:
        text = describe_header(al.read_header(path, verify=public))
    except AnomalyError as e:
        problem = _message_problem(str(e))
        return (problem, "info: " + str(e)[:300]) if problem else None
    bad = next((line for line in text.splitlines() if len(line) > MAX_INFO_LINE or not line.isprintable()), None)
    return ("unbounded", f"info prints {bad[:200]!r} ({len(bad)} characters)") if bad is not None else None


def run_case(data: bytes, kind: str, folder: Path, public, timeout: float = 20.0,
             must_refuse: bool = False) -> tuple[str, str]:
    """(outcome, detail) of ``info``, then loading, scoring and evaluating one bundle: 'refused',
    'sane', or a failure: 'traceback', 'multiline', 'unbounded' (a message or an info line with
    control characters or too long), 'insane', 'hang', 'allocation', 'accepted' (a bundle of a
    class that must be refused loaded)."""
    import anomalib_lite as al
    from anomalib_lite import AnomalyError
    from anomalib_lite.evaluation.assessment import assess

    path = folder / "case.anomaly"
    path.write_bytes(data)
    old = signal.signal(signal.SIGALRM, _alarm)
    outer, start = signal.getitimer(signal.ITIMER_REAL)[0], time.monotonic()  # e.g. pytest-timeout's
    signal.setitimer(signal.ITIMER_REAL, min(timeout, outer) if outer else timeout)
    stage = "info"
    try:
        bad_info = _info(path, public)
        if bad_info is not None:
            return bad_info
        stage = "load"
        try:
            det = al.load(path, verify=public)
        except AnomalyError as e:
            return ("refused", str(e)) if _message_problem(str(e)) is None else (_message_problem(str(e)), str(e)[:300])
        if must_refuse:
            return "accepted", "loaded, but this mutation must be refused"
        stage = "score"
        try:
            x = score_data(kind)
            scores = det.decision_function(x)
            why = _sane_scores(det, kind, scores)
            if why is None and kind == "images" and getattr(det, "_learns_patches", lambda: True)():
                maps = det.score_map(x)
                if maps.shape != (len(x), 16, 16) or not np.isfinite(maps).all():
                    why = f"maps shaped {maps.shape}, finite: {bool(np.isfinite(maps).all())}"
            if why is None and kind in ("images", "vectors"):
                stage = "evaluate"
                assess(det, labelled(kind))
        except AnomalyError as e:
            problem = _message_problem(str(e))
            return ("sane", "score refused: " + str(e)) if problem is None else (problem, str(e)[:300])
        return ("insane", why) if why else ("sane", "scored")
    except Hang:
        return "hang", f"{stage} took over {timeout:g} s"
    except MemoryError:
        return "allocation", f"{stage}: MemoryError"
    except RuntimeError as e:
        if "allocate" in str(e) or "memory" in str(e).lower():
            return "allocation", f"{stage}: {str(e).splitlines()[0][:200]}"
        return "traceback", f"{stage}: " + traceback.format_exc(limit=-3)
    except Exception:  # noqa: BLE001 - every other escape is what the fuzzer looks for
        return "traceback", f"{stage}: " + traceback.format_exc(limit=-3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:  # the caller's alarm goes on
            signal.setitimer(signal.ITIMER_REAL, max(1e-3, outer - (time.monotonic() - start)))


def must_refuse(what: str) -> bool:
    return what.split(" ", 1)[0] in MUST_REFUSE


# ---------------------------------------------------------------- hostile data files (issue 20)

INPUTS = "inputs"  # the pseudo seed name of the data-file cases


def _npy_bytes(a: np.ndarray) -> bytes:
    import io as _io

    buf = _io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _with_header(data: bytes, change) -> bytes:
    """A .npy whose header dict text is changed by ``change(text) -> text`` (length kept valid)."""
    major = data[6]
    size = 2 if major == 1 else 4
    n = int.from_bytes(data[8 : 8 + size], "little")
    text = change(data[8 + size : 8 + size + n].decode("latin1").rstrip("\n ")).encode("latin1")
    pad = -(8 + size + len(text) + 1) % 64
    text = text + b" " * pad + b"\n"
    if major == 1 and len(text) >= 65536:
        return data
    return data[:8] + len(text).to_bytes(size, "little") + text + data[8 + size + n :]


def mutate_input(rng, folder: Path) -> tuple[str, str]:
    """A hostile data file (a .npy, an .npz or a CSV series) in ``folder``; returns (spec, what)."""
    import zipfile

    kind = str(pick(rng, ["npy", "npy", "npz", "csv", "csv"]))
    base = rng.random((6, 1, 8, 8)).astype(np.float32) if rng.random() < 0.5 else rng.random((6, 5)).astype(np.float32)
    if kind == "npy":
        data = _npy_bytes(base)
        how = str(pick(rng, ["shape", "shape", "dtype", "fortran", "truncate", "extra", "version", "object", "junk"]))
        if how == "shape":
            shape = pick(rng, [(100_000_000, 8, 8), (2**62,), (6, 1, 8, 9), (5, 5), (0,), (-1, 5), (2**31, 2**31),
                               (1,) * 40, (6, 1, 8, 8, 1), ()])
            data = _with_header(data, lambda t: t[: t.index("'shape':")] + f"'shape': {shape!r}, }}")
        elif how == "dtype":
            descr = pick(rng, ["'|O'", "'<f8'", "'>i8'", "'|V8'", "'<U4'", "'|b1'", "'<c16'", "[('a', '<f4')]", "'x'",
                               "'<M8[s]'"])
            data = _with_header(data, lambda t: t.replace(t[t.index("'descr':") : t.index(",", t.index("'descr':"))],
                                                          f"'descr': {descr}"))
        elif how == "fortran":
            data = _with_header(data, lambda t: t.replace("False", "True"))
        elif how == "truncate":
            data = data[: int(rng.integers(0, len(data)))]
        elif how == "extra":
            data = data + bytes(int(rng.integers(1, 64)))
        elif how == "version":
            data = data[:6] + bytes([int(pick(rng, [0, 2, 3, 9, 255])), 0]) + data[8:]
        elif how == "object":
            data = _npy_bytes(np.array([{"a": 1}, None, "x"], dtype=object))
        else:
            data = bytes(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8))
        (folder / "case.npy").write_bytes(data)
        return str(folder / "case.npy"), f"npy {how}"
    if kind == "npz":
        how = str(pick(rng, ["object x", "object y", "forged x", "labels", "not zip", "empty", "other members"]))
        path = folder / "case.npz"
        members = {"x": _npy_bytes(base), "y": _npy_bytes(np.arange(len(base)) % 2)}
        if how == "object x":
            members["x"] = _npy_bytes(np.array([[1.0], None], dtype=object))
        elif how == "object y":
            members["y"] = _npy_bytes(np.array(["a", None] * 3, dtype=object))
        elif how == "forged x":
            members["x"] = _with_header(members["x"], lambda t: t[: t.index("'shape':")] + "'shape': (100000000, 8, 8), }")
        elif how == "labels":
            members["y"] = _npy_bytes(pick(rng, [np.zeros((3, 2)), np.arange(2), np.array(["a"] * 6), np.zeros(0)]))
        elif how == "not zip":
            path.write_bytes(b"PK\x03\x04" + bytes(rng.integers(0, 256, 100, dtype=np.uint8)))
            return str(path), f"npz {how}"
        elif how == "empty":
            members = {}
        else:
            members = {"readme.txt": b"x", "a": members["x"]}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name if "." in name else name + ".npy", data)
        return str(path), f"npz {how}"
    how = str(pick(rng, ["long line", "long line", "back", "repeat", "nul", "not utf8", "inf", "quoted", "columns",
                         "empty", "header only", "stamps"]))
    rows = [f"2024-01-01T{h:02d}:00:00,{np.sin(h / 3):.3f}" for h in range(24)]
    if how == "long line":
        i = int(rng.integers(len(rows)))
        rows[i] = rows[i].split(",")[0] + "," + "9" * int(pick(rng, [1 << 20, 3 << 20, 16 << 20]))
    elif how in ("back", "repeat"):
        i = int(rng.integers(1, len(rows)))
        rows[i] = rows[i - 1 if how == "repeat" else 0].split(",")[0] + "," + rows[i].split(",")[1]
    elif how == "nul":
        rows[3] = rows[3] + "\x00"
    elif how == "inf":
        rows[5] = rows[5].split(",")[0] + "," + str(pick(rng, ["1e999", "inf", "-inf", "nan", "0x10", "1_000"]))
    elif how == "quoted":
        rows[2] = rows[2].split(",")[0] + ',"' + "1\n" * 200_000 + '"'
    elif how == "columns":
        rows[4] = rows[4] + ",1" * int(pick(rng, [1, 1000, 100_000]))
    elif how == "empty":
        rows = []
    elif how == "stamps":
        rows[6] = str(pick(rng, ["9999-99-99", "nan", "inf", "1e400", "2024-13-01", "x" * 1000])) + ",0.5"
    text = ("timestamp,value\n" if how != "empty" else "") + "\n".join(rows) + "\n"
    data = text.encode()
    if how == "not utf8":
        data = data.replace(b"00:00", b"\xff\xfe:00", 1)
    if how == "header only":
        data = b"timestamp,value\n"
    (folder / "case.csv").write_bytes(data)
    return str(folder / "case.csv") + str(pick(rng, ["", "", "?order=sort", "?order=file"])), f"csv {how}"


def run_input_case(spec: str, timeout: float = 20.0) -> tuple[str, str]:
    """(outcome, detail) of reading one hostile data file to the end: 'refused' (one bounded
    line), 'sane' (read whole, finite), or a failure as for bundles."""
    import anomalib_lite as al
    from anomalib_lite import AnomalyError
    from anomalib_lite.data.batches import iter_batches

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        try:
            src = al.load_data(spec)
            if getattr(src, "kind", None) != "series":
                for _ in iter_batches(src, 4):
                    pass
        except AnomalyError as e:
            problem = _message_problem(str(e))
            return ("refused", str(e)) if problem is None else (problem, str(e)[:300])
        return "sane", f"read {len(src)} samples"
    except Hang:
        return "hang", f"reading took over {timeout:g} s"
    except MemoryError:
        return "allocation", "MemoryError"
    except Exception:  # noqa: BLE001
        return "traceback", traceback.format_exc(limit=-3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def fuzz_inputs_in_process(folder: Path, n: int, master: int = 0, timeout: float = 20.0) -> dict:
    """The data-file cases in this process (the CI test): {outcome: [(index, what, detail)]}."""
    work = Path(tempfile.mkdtemp(dir=folder))
    out: dict = {}
    for i in range(n):
        spec, what = mutate_input(case_rng(master, INPUTS, i), work)
        outcome, detail = run_input_case(spec, timeout)
        out.setdefault(outcome, []).append((i, what, detail))
    return out


def case_rng(master: int, name: str, index: int) -> np.random.Generator:
    return np.random.default_rng([master, NAMES.index(name) if name in NAMES else len(NAMES), index])


def fuzz_in_process(seeds: dict, counts: dict, master: int = 0, timeout: float = 20.0) -> dict:
    """Run the cases in this process (the CI test): {name: {outcome: [(index, what, detail)]}}."""
    from anomalib_lite.bundles import signing

    folder = next(iter(seeds.values()))[0].parent
    key = signing.load_private_key(folder / "test.key")
    public = signing.load_public_key(folder / "test.key.pub")
    work = Path(tempfile.mkdtemp(dir=folder))
    results: dict = {}
    for name, n in counts.items():
        path, kind = seeds[name]
        seed = path.read_bytes()
        res = results.setdefault(name, {})
        for i in range(n):
            data, what = mutate(seed, case_rng(master, name, i), key)
            outcome, detail = run_case(data, kind, work, public, timeout, must_refuse(what))
            res.setdefault(outcome, []).append((i, what, detail))
    return results


# ---------------------------------------------------------------- workers (the full count)


def _worker(conn, folder: str, limit_bytes: int, timeout: float):
    import resource

    import torch

    torch.set_num_threads(1)
    from anomalib_lite.bundles import signing

    if limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    folder = Path(folder)
    key = signing.load_private_key(folder / "test.key")
    public = signing.load_public_key(folder / "test.key.pub")
    work = Path(tempfile.mkdtemp(dir=folder))
    seeds = {}
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        name, kind, index, master = job
        if name == INPUTS:
            try:
                spec, what = mutate_input(case_rng(master, name, index), work)
            except Exception:  # noqa: BLE001 - a harness error: report it, never hide it
                conn.send(("harness", "mutation", traceback.format_exc(limit=-2)))
                continue
            conn.send((run_input_case(spec, timeout), what))
            continue
        if name not in seeds:
            seeds[name] = (folder / f"{name}.anomaly").read_bytes()
        try:
            data, what = mutate(seeds[name], case_rng(master, name, index), key)
        except Exception:  # noqa: BLE001 - a harness error: report it, never hide it
            conn.send(("harness", "mutation", traceback.format_exc(limit=-2)))
            continue
        conn.send((run_case(data, kind, work, public, timeout, must_refuse(what)), what))


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


class Pool:
    """One worker process per slot; a case that does not answer in time kills its worker."""

    def __init__(self, folder: Path, n: int, extra_gb: float, timeout: float):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.folder, self.timeout = str(folder), timeout
        self.limit = int(_vm_bytes() + extra_gb * 2**30) if extra_gb else 0
        self.slots = [self._start() for _ in range(n)]

    def _start(self):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker, args=(child, self.folder, self.limit, self.timeout), daemon=True)
        p.start()
        parent.recv()
        return [p, parent, None, 0.0]

    def run(self, jobs, on_result):
        jobs = list(jobs)
        while jobs or any(s[2] for s in self.slots):
            for s in self.slots:
                if s[2] is None and jobs:
                    s[2], s[3] = jobs.pop(0), time.time()
                    s[1].send(s[2])
            for i, s in enumerate(self.slots):
                if s[2] is None:
                    continue
                if s[1].poll(0.01):
                    try:
                        msg = s[1].recv()
                    except EOFError:
                        msg = None
                    job, s[2] = s[2], None
                    if msg is None:  # the worker died (a crash in native code)
                        on_result(job, ("crash", "the worker process died"), "?")
                        self._replace(i)
                    elif msg[0] == "harness":
                        on_result(job, ("harness", msg[2]), "mutation")
                    else:
                        (outcome, detail), what = msg
                        on_result(job, (outcome, detail), what)
                elif time.time() - s[3] > self.timeout + 30:
                    job, s[2] = s[2], None
                    on_result(job, ("hang", f"no answer in {self.timeout + 30:g} s (worker killed)"), "?")
                    self._replace(i)

    def _replace(self, i):
        p = self.slots[i][0]
        p.kill()
        p.join()
        self.slots[i] = self._start()

    def close(self):
        for p, conn, _, _ in self.slots:
            conn.send(None)
            p.join(5)
            if p.is_alive():
                p.kill()


FAILURES = ("traceback", "multiline", "unbounded", "accepted", "insane", "hang", "allocation", "crash", "harness")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-detector", type=int, default=700, help="mutations per seed bundle (8 seeds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per load + score (a hang beyond)")
    ap.add_argument("--memory-gb", type=float, default=3.0, help="address space a worker may add (0: no cap)")
    ap.add_argument("--only", help="NAME:INDEX: rerun one case here and print its outcome")
    ap.add_argument("--keep", help="folder for the seed bundles (default: a temporary one)")
    ap.add_argument("--no-record", action="store_true", help="do not append to BENCHMARKS.md")
    ap.add_argument("--inputs", type=int, default=800, help="hostile data files (.npy, .npz, CSV) read as well")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="fuzz-bundles-"))
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.only and args.only.startswith(INPUTS + ":"):
        index = int(args.only.rsplit(":", 1)[1])
        spec, what = mutate_input(case_rng(args.seed, INPUTS, index), folder)
        print(f"{args.only} {what}\n" + ": ".join(run_input_case(spec, args.timeout)))
        return
    if args.only:
        name, index = args.only.rsplit(":", 1)
        seeds = make_seeds(folder, [name])
        res = fuzz_in_process(seeds, {name: int(index) + 1}, args.seed, args.timeout)
        for outcome, cases in res[name].items():
            for i, what, detail in cases:
                if i == int(index):
                    print(f"{name}:{i} {what}\n{outcome}: {detail}")
        return
    seeds = make_seeds(folder)
    fit_s = time.time() - t0
    print(f"seed bundles fitted in {fit_s:.0f} s: {folder}", flush=True)
    table = {name: {} for name in [*NAMES, INPUTS]}
    classes: dict = {}  # issue 20's mutation classes and the data-file kinds: {class: {outcome: n}}
    examples: dict = {}
    done = [0]

    def on_result(job, result, what):
        name, _, index, _ = job
        outcome, detail = result
        table[name][outcome] = table[name].get(outcome, 0) + 1
        words = what.split(" ")
        cls = " ".join(words[:2]) if name == INPUTS else words[0]
        if name == INPUTS or cls in (*MUST_REFUSE, "text", "data", "seed"):
            tally = classes.setdefault(cls, {})
            tally[outcome] = tally.get(outcome, 0) + 1
        if outcome == "sane":
            how = "scored" if detail == "scored" else "score refused"
            table[name][how] = table[name].get(how, 0) + 1
        if outcome in FAILURES:
            first = detail.strip().splitlines()[-1] if detail.strip() else ""
            examples.setdefault((name, outcome, first[:120]), (index, what, detail))
            print(f"FAIL {name}:{index} {what}: {outcome}: {detail.strip()[-600:]}", flush=True)
        done[0] += 1
        if done[0] % 200 == 0:
            print(f"{done[0]} cases, {time.time() - t0:.0f} s", flush=True)

    pool = Pool(folder, args.workers, args.memory_gb, args.timeout)
    jobs = [(name, seeds[name][1], i, args.seed) for i in range(args.per_detector) for name in NAMES]
    jobs += [(INPUTS, "file", i, args.seed) for i in range(args.inputs)]
    t1 = time.time()
    try:
        pool.run(jobs, on_result)
    finally:
        pool.close()
    elapsed = time.time() - t1
    total = {k: sum(t.get(k, 0) for n, t in table.items() if n != INPUTS)
             for k in ("refused", "sane", "score refused", *FAILURES)}
    tried = sum(total[k] for k in ("refused", "sane", *FAILURES))
    rows = ["| seed bundle | tried | refused at load (one line) | loaded and scored sanely "
            "(of which scoring refused in one line) | failures |", "|---|---:|---:|---:|---:|"]
    for name in [*NAMES, "all"]:
        t = total if name == "all" else table[name]
        fails = sum(t.get(k, 0) for k in FAILURES)
        tried_here = t.get("refused", 0) + t.get("sane", 0) + fails
        rows.append(f"| {name} | {tried_here} | {t.get('refused', 0)} | {t.get('sane', 0)} "
                    f"({t.get('score refused', 0)}) | {fails} |")
    kinds = ", ".join(f"{k} {total[k]}" for k in FAILURES if total[k]) or "none"
    rows += ["", "Issue 20's mutation classes (among the bundles above; version, missing, unknown, duplicate and "
             "signature must all be refused) and the hostile data files:", "",
             "| class | tried | refused (one line) | loaded / read sanely | failures |", "|---|---:|---:|---:|---:|"]
    for cls in sorted(classes, key=lambda c: (c.split()[0] in ("npy", "npz", "csv"), c)):
        t = classes[cls]
        fails = sum(t.get(k, 0) for k in FAILURES)
        rows.append(f"| {cls} | {sum(t.values())} | {t.get('refused', 0)} | {t.get('sane', 0)} | {fails} |")
    inp = table[INPUTS]
    input_fails = sum(inp.get(k, 0) for k in FAILURES)
    input_tried = input_fails + inp.get("refused", 0) + inp.get("sane", 0)
    body = (
        f"Seeded mutation fuzzer over signed bundles of every detector (seed {args.seed}): each mutation is "
        f"re-checksummed and re-signed with a test key (most of them) so it reaches validation; each load + score "
        f"runs in a worker with a {args.timeout:g} s alarm and an address-space cap of +{args.memory_gb:g} GB. "
        f"{args.workers} worker(s); {tried} bundles in {elapsed:.0f} s ({elapsed / max(1, tried) * 1000:.0f} ms "
        f"each), load average at the end {os.getloadavg()[0]:.2f}.\n\n" + "\n".join(rows) +
        f"\n\nFailures by kind: {kinds}. 'Sane' includes loads whose scoring was refused with one line. Each case "
        f"also runs `anomaly info` (its lines printable, at most {MAX_INFO_LINE} characters) and, for images and "
        f"vectors, an evaluation on labelled data; every refusal must be one printable line of at most "
        f"{MAX_MESSAGE} characters. Data files: {input_tried} read, {input_fails} failures."
    )
    if examples:
        body += "\n\nFirst failure of each kind:\n\n" + "\n".join(
            f"- `{n}:{i}` {what}: {o}: {d.strip().splitlines()[-1][:200]}"
            for (n, o, _), (i, what, d) in examples.items())
    if args.no_record:
        print(body)
    else:
        from benchmarks import record

        record.append("Bundle fuzzing (issues 11, 20)", body)


if __name__ == "__main__":
    main()
