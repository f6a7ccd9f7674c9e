"""Read, validate and write pipeline configs.

A config is a dict (or a YAML / JSON file holding one)::

    seed: 0
    steps:
      - {op: hflip, p: 0.5}
      - {op: rotate, degrees: [-10, 10]}
      - one_of: [{op: blur, sigma: [0.5, 1]}, {op: gaussian_noise, sigma: [0, 0.05]}]
        p: 0.5
      - some_of: [{op: brightness}, {op: contrast}, {op: gamma}]
        k: [1, 2]
    ood:                      # synthesis of subtle anomalies, see augment.synth
      severity: 0.3
      ops: [cutpaste, {op: perlin, weight: 2}]

A bare list is read as ``steps``; a bare op name is read as ``{op: name}``. Errors name the step
(1-based, ``3.2`` is the second child of step 3) and the key, and list what is valid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import AugmentError
from .schema import (
    OPS,
    PROBABILITY,
    SYNTH_COMMON,
    SYNTH_OPS,
    Param,
    check_params,
    check_value,
    to_plain,
)

_GROUPS = ("one_of", "some_of")
_TOP_KEYS = ("ood", "seed", "steps")
_SEED = Param("int", 0, 0, 2**63 - 1)
_WEIGHT = Param("number", 1.0, 0.0, 1e9)


@dataclass(frozen=True)
class Step:
    path: str
    op: str
    p: float
    params: dict


@dataclass(frozen=True)
class Group:
    path: str
    kind: str  # "one_of" or "some_of"
    p: float
    k: tuple[int, int]  # how many children apply, drawn uniformly per sample
    children: tuple


@dataclass(frozen=True)
class SynthOp:
    op: str
    weight: float
    params: dict


@dataclass(frozen=True)
class Ood:
    severity: float
    min_pixels: int
    max_tries: int
    ops: tuple[SynthOp, ...]


@dataclass(frozen=True)
class Config:
    seed: int
    steps: tuple
    ood: Ood | None

    def to_dict(self) -> dict:
        out = {"seed": self.seed, "steps": [_node_to_dict(n) for n in self.steps]}
        if self.ood is not None:
            o = self.ood
            ops = [
                {"op": s.op, "weight": s.weight, **{k: to_plain(v) for k, v in s.params.items()}}
                for s in o.ops
            ]
            out["ood"] = {
                "severity": o.severity,
                "min_pixels": o.min_pixels,
                "max_tries": o.max_tries,
                "ops": ops,
            }
        return out


def _node_to_dict(node) -> dict:
    if isinstance(node, Step):
        return {"op": node.op, "p": node.p, **{k: to_plain(v) for k, v in node.params.items()}}
    out = {node.kind: [_node_to_dict(c) for c in node.children], "p": node.p}
    if node.kind == "some_of":
        out["k"] = list(node.k)
    return out


def load(cfg) -> Config:
    """dict, list of steps, or path to a .yaml/.yml/.json file -> validated Config."""
    if isinstance(cfg, (str, os.PathLike)):
        path = Path(cfg)
        try:
            return parse(_read_file(path))
        except AugmentError as e:
            if str(e).startswith(f"{path}:"):
                raise
            raise AugmentError(f"{path}: {e}") from None
    return parse(cfg)


def _read_file(path: Path):
    import yaml

    try:
        text = path.read_text()
    except OSError as e:
        raise AugmentError(f"{path}: cannot read config ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise AugmentError(f"{path}: not a text file") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:  # json.JSONDecodeError is a ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AugmentError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {first}"
        ) from None


def parse(cfg) -> Config:
    if isinstance(cfg, (list, tuple)):
        cfg = {"steps": list(cfg)}
    if not isinstance(cfg, dict):
        raise AugmentError(
            f"config: expected a mapping or a list of steps, got {type(cfg).__name__}"
        )
    unknown = [k for k in cfg if k not in _TOP_KEYS]
    if unknown:
        raise AugmentError(
            f"config: unknown key {unknown[0]!r}; valid keys are: {', '.join(_TOP_KEYS)}"
        )
    seed = check_value(cfg.get("seed", 0), _SEED, "config: key 'seed'")
    steps = cfg.get("steps", [])
    if not isinstance(steps, (list, tuple)):
        raise AugmentError(f"config: key 'steps': expected a list of steps, got {steps!r}")
    nodes = tuple(_parse_node(s, str(i + 1)) for i, s in enumerate(steps))
    ood = _parse_ood(cfg["ood"]) if cfg.get("ood") is not None else None
    return Config(seed, nodes, ood)


def _parse_node(raw, path: str):
    if isinstance(raw, str):
        raw = {"op": raw}
    if not isinstance(raw, dict):
        raise AugmentError(
            f"step {path}: expected a mapping with 'op', 'one_of' or 'some_of', got {raw!r}"
        )
    kinds = [k for k in ("op", *_GROUPS) if k in raw]
    if not kinds and len(raw) == 1 and next(iter(raw)) in OPS:  # `- rotate: {degrees: 10}` (other tools' style)
        name, args = next(iter(raw.items()))
        inner = ", ".join(f"{k}: {v}" for k, v in args.items()) if isinstance(args, dict) else "" if args is None else "..."
        raise AugmentError(f"step {path}: write an op as {{op: {name}{', ' + inner if inner else ''}}}, "
                           f"not as a key ({name}: ...)")
    if len(kinds) != 1:
        raise AugmentError(
            f"step {path}: expected exactly one of 'op', 'one_of', 'some_of'; got keys "
            f"{', '.join(map(str, raw)) or 'none'}"
        )
    if kinds[0] == "op":
        return _parse_step(raw, path)
    kind = kinds[0]
    where = f"step {path} ({kind})"
    children = raw[kind]
    if not isinstance(children, (list, tuple)) or not children:
        raise AugmentError(
            f"{where}: key {kind!r}: expected a non-empty list of steps, got {children!r}"
        )
    k_spec = Param("int_range", (1, len(children)), 0, len(children))
    specs = {"p": PROBABILITY, **({"k": k_spec} if kind == "some_of" else {})}
    params = check_params(
        {k: v for k, v in raw.items() if k != kind}, specs, where, reserved=(kind,)
    )
    nodes = tuple(_parse_node(c, f"{path}.{i + 1}") for i, c in enumerate(children))
    return Group(path, kind, params["p"], params.get("k", (1, 1)), nodes)


def _parse_step(raw: dict, path: str) -> Step:
    op = raw["op"]
    if op not in OPS:
        raise AugmentError(
            f"step {path}: unknown op {op!r}; valid ops are: {', '.join(sorted(OPS))}"
        )
    where = f"step {path} ({op})"
    given = {k: v for k, v in raw.items() if k != "op"}
    params = check_params(given, {"p": PROBABILITY, **OPS[op].params}, where, reserved=("op",))
    p = params.pop("p")
    return Step(path, op, p, params)


def _parse_ood(raw) -> Ood:
    if not isinstance(raw, dict):
        raise AugmentError(f"ood: expected a mapping, got {raw!r}")
    common = check_params(
        {k: v for k, v in raw.items() if k != "ops"}, SYNTH_COMMON, "ood", reserved=("ops",)
    )
    ops_raw = raw.get("ops", list(SYNTH_OPS))
    if not isinstance(ops_raw, (list, tuple)) or not ops_raw:
        raise AugmentError(
            f"ood: key 'ops': expected a non-empty list of synthesis ops, got {ops_raw!r}"
        )
    ops = tuple(parse_synth_op(o, f"ood op {i + 1}") for i, o in enumerate(ops_raw))
    if sum(o.weight for o in ops) <= 0:
        raise AugmentError("ood: key 'ops': the weights sum to 0")
    return Ood(common["severity"], common["min_pixels"], common["max_tries"], ops)


def parse_synth_op(raw, where: str) -> SynthOp:
    if isinstance(raw, str):
        raw = {"op": raw}
    if not isinstance(raw, dict) or "op" not in raw:
        raise AugmentError(f"{where}: expected an op name or a mapping with 'op', got {raw!r}")
    op = raw["op"]
    if op not in SYNTH_OPS:
        raise AugmentError(
            f"{where}: unknown op {op!r}; valid ops are: {', '.join(sorted(SYNTH_OPS))}"
        )
    where = f"{where} ({op})"
    given = {k: v for k, v in raw.items() if k != "op"}
    params = check_params(given, {"weight": _WEIGHT, **SYNTH_OPS[op]}, where, reserved=("op",))
    return SynthOp(op, params.pop("weight"), params)
