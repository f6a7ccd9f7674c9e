"""Registry of backbones, timm-like: each file under `models/` registers one `BackboneSpec` per
name; `create` and `list_backbones` only ever read this table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .errors import BackboneError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Stages = list[tuple[str, nn.Module]]


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one architecture and cut it into named stages.

    `builder(imagenet)` returns the full torchvision-layout model (random init; `imagenet` says
    that ImageNet weights will be loaded, for the few nets whose layout depends on it).
    `stages(model)` returns the ordered (name, module) pieces whose composition is the feature
    trunk; the modules are the model's own, so the model's state-dict keys name their tensors.
    `channels` and `strides` give each stage's output channels and total stride versus the
    preprocessed input (a test checks them against real outputs).
    """

    name: str
    builder: Callable[[bool], nn.Module]
    stages: Callable[[nn.Module], Stages]
    layers: tuple[str, ...]
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    default_layers: tuple[str, ...]
    in_channels: int = 3
    default_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    imagenet: str | None = None  # torchvision weights-enum member used for weights="imagenet"
    fix_keys: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None

    def make(self, seed: int = 0, imagenet: bool = False) -> nn.Module:
        """Build the full model with a deterministic init from `seed`, leaving the global RNG as
        it was (the same seed always gives the same weights)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.builder(imagenet)


@dataclass(frozen=True)
class BackboneInfo:
    """What `list_backbones` reports about one backbone (for the CLI and for callers choosing
    layers): all stage names in network order, the default ones, and each stage's channels and
    stride versus the preprocessed input."""

    name: str
    layers: tuple[str, ...]
    default_layers: tuple[str, ...]
    in_channels: int
    default_size: int
    has_imagenet: bool
    layer_channels: Mapping[str, int]
    layer_strides: Mapping[str, int]


_REGISTRY: dict[str, BackboneSpec] = {}


def _table() -> dict[str, BackboneSpec]:
    """The registry, once every model file has registered (imported on first use: the model files
    import torchvision's builders, which a raw-pixel detector never needs)."""
    import backbones.models  # noqa: F401  (registers every backbone, in its order)

    return _REGISTRY


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add `spec` to the table (model files call this at import)."""
    if spec.name in _REGISTRY:
        raise RuntimeError(f"backbone {spec.name!r} registered twice")
    if not (len(spec.layers) == len(spec.channels) == len(spec.strides)):
        raise RuntimeError(f"backbone {spec.name!r}: layers, channels and strides differ in length")
    if not set(spec.default_layers) <= set(spec.layers):
        raise RuntimeError(f"backbone {spec.name!r}: default_layers not among its layers")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> BackboneSpec:
    """The spec registered under `name`; BackboneError listing the valid names otherwise."""
    try:
        return _table()[name]
    except (KeyError, TypeError):
        raise BackboneError(
            f"backbone {name!r}: unknown; valid names are: {', '.join(_table())}"
        ) from None


def list_backbones() -> list[BackboneInfo]:
    """Every registered backbone, in registration order (grouped by family)."""
    return [
        BackboneInfo(
            name=s.name,
            layers=s.layers,
            default_layers=s.default_layers,
            in_channels=s.in_channels,
            default_size=s.default_size,
            has_imagenet=s.imagenet is not None,
            layer_channels=dict(zip(s.layers, s.channels)),
            layer_strides=dict(zip(s.layers, s.strides)),
        )
        for s in _table().values()
    ]
