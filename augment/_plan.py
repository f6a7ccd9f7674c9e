"""Turn a config tree into a flat list of (step, who applies it, its uniform draws).

Used by the torchvision backend. Every node (step or group) has a stable code derived from its
path and op, and every sample's draws for that node are hashes of (seed, epoch, index, code,
counter): whether a step applies, which children of a group apply, and the step's parameters.
Groups are resolved here, so the executor only sees steps with a per-sample "active" mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._random import op_code, sample_keys, uniforms
from .config import Step

N_DRAWS = 20  # uniforms per step and sample (u[:, 0] decides whether the step applies)


@dataclass
class PlannedStep:
    step: Step
    active: np.ndarray  # (N,) bool
    u: np.ndarray  # (N, N_DRAWS - 1) uniforms for the step's parameters
    keys: np.ndarray  # (N,) int64 per-sample keys, for per-pixel fields


def plan(nodes, seed: int, epoch: int, indices: np.ndarray) -> list[PlannedStep]:
    active = np.ones(len(indices), dtype=bool)
    out: list[PlannedStep] = []
    _plan_nodes(nodes, seed, epoch, indices, active, out)
    return out


def _plan_nodes(nodes, seed, epoch, indices, active, out) -> None:
    for node in nodes:
        name = node.op if isinstance(node, Step) else node.kind
        keys = sample_keys(seed, epoch, indices, op_code(f"{node.path}:{name}"))
        u = uniforms(keys, N_DRAWS if isinstance(node, Step) else 2 + len(node.children))
        on = active & (u[:, 0] < node.p)
        if isinstance(node, Step):
            out.append(PlannedStep(node, on, u[:, 1:], keys))
            continue
        n = len(node.children)
        if node.kind == "one_of":
            pick = np.minimum((u[:, 1] * n).astype(np.int64), n - 1)
            chosen = pick[:, None] == np.arange(n)[None, :]
        else:
            lo, hi = node.k
            count = np.minimum(lo + (u[:, 1] * (hi - lo + 1)).astype(np.int64), hi)
            ranks = np.argsort(np.argsort(u[:, 2 : 2 + n], axis=1, kind="stable"), axis=1)
            chosen = ranks < count[:, None]
        for j, child in enumerate(node.children):
            _plan_nodes([child], seed, epoch, indices, on & chosen[:, j], out)
