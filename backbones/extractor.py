"""FeatureExtractor: a frozen, truncated backbone that maps images to named feature maps, with
its preprocessing (channel adapt, resize, normalise) inside, so a saved config reproduces it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .device import resolve_device
from .errors import BackboneError
from .registry import BackboneSpec, get_spec
from .weights import load_into, resolve_weights, stage_key_map


#: torch's words when a convolution or pooling window no longer fits the shrunken image
_TOO_SMALL = ("Kernel size can't be greater than actual input size", "Output size is too small")


class FeatureExtractor(nn.Module):
    """Backbone `name` cut after the last of `layers`, frozen (no grads, BatchNorm in eval
    whatever `.train()` says), returning {layer: (N, C, h, w)} for float (N, C, H, W) input in
    [0, 1] (uint8 accepted by `extract`). Build it with `backbones.create` or `from_config`.

    `state_dict` (keys as in the full torchvision-style model) replaces the seeded random init
    of the stages used; `weights_source`/`weights_sha256` only record where it came from.
    """

    def __init__(
        self,
        name: str,
        layers: Sequence[str] | str | None = None,
        *,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        weights_source: str = "random",
        weights_sha256: str | None = None,
        image_size: int | Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int = 0,
        device: str | torch.device = "auto",
        frozen: bool = True,
    ) -> None:
        super().__init__()
        self.frozen = bool(frozen)
        spec = get_spec(name)
        device = resolve_device(device)
        self.name = spec.name
        self.layers = _check_layers(spec, layers)
        self.in_channels = spec.in_channels
        self.image_size = _check_size(image_size)
        self.mean = _check_stats(spec, "mean", spec.mean if mean is None else mean)
        self.std = _check_stats(spec, "std", spec.std if std is None else std)
        if min(self.std) <= 0:
            raise BackboneError(f"{spec.name}: std {self.std} must be positive")
        self.seed = int(seed)
        self.weights_source = weights_source
        self.weights_sha256 = weights_sha256
        self.layer_channels = {k: spec.channels[spec.layers.index(k)] for k in self.layers}
        self.layer_strides = {k: spec.strides[spec.layers.index(k)] for k in self.layers}

        model = spec.make(self.seed, imagenet=weights_source.startswith("imagenet"))
        last = spec.layers.index(self.layers[-1])
        self.stages = nn.ModuleDict(spec.stages(model)[: last + 1])  # the rest is dropped
        if state_dict is not None:
            load_into(spec, model, list(self.stages.values()), state_dict, weights_source)
        self._full_keys = stage_key_map(model, self.stages)

        mean_t, std_t = torch.tensor(self.mean), torch.tensor(self.std)
        self.register_buffer("_scale", (1 / std_t).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_shift", (-mean_t / std_t).view(1, -1, 1, 1), persistent=False)
        self.requires_grad_(not self.frozen)
        self.stages.to(memory_format=torch.channels_last)  # faster on CPU too (REFERENCES.md)
        self.to(device)
        self.train(False)

    # ------------------------------------------------------------------ running

    @property
    def device(self) -> torch.device:
        return self._scale.device

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Frozen: stay in eval mode whatever `mode` says (BatchNorm statistics never change).
        Trainable (``frozen=False``, for fine-tuning and pretraining): as any module."""
        return super().train(False if self.frozen else mode)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Channel adapt (grey->3 by repeat, RGB->1 by mean), resize to `image_size` (bilinear,
        antialiased) and normalise; returns float32 (N, in_channels, H', W')."""
        if x.ndim != 4:
            one = " (one image? add a batch axis: x[None])" if x.ndim == 3 else ""
            raise BackboneError(
                f"{self.name}: input must be (N, C, H, W), got shape {tuple(x.shape)}{one}"
            )
        if x.shape[1] not in (1, 3):
            last = x.shape[-1] in (1, 3)  # (N, H, W, C), as images are read
            hint = "; it looks channels-last (N, H, W, C): x.permute(0, 3, 1, 2) (numpy: x.transpose(0, 3, 1, 2))" if last else ""
            raise BackboneError(
                f"{self.name}: input has {x.shape[1]} channels; expected 1 or 3{hint}"
            )
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        if x.shape[1] == 3 and self.in_channels == 1:
            x = x.mean(dim=1, keepdim=True)
        if self.image_size is not None and tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(
                x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True
            )
        if x.shape[1] == 1 and self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)  # resize first: three times less work
        return torch.addcmul(self._shift, x, self._scale)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{layer: feature map} for the requested layers; stops after the last one."""
        if self.frozen:
            self.stages.eval()  # even if a caller flipped a submodule to train mode
        x = self.preprocess(x).contiguous(memory_format=torch.channels_last)
        wanted, out, size = set(self.layers), {}, tuple(x.shape[-2:])
        for name, stage in self.stages.items():
            try:
                x = stage(x)
            except RuntimeError as e:  # a kernel or pooling window larger than what is left of the image
                if not any(m in str(e) for m in _TOO_SMALL):
                    raise
                raise BackboneError(
                    f"{self.name}: images of {size[0]}x{size[1]} px are too small for its stage '{name}' (it gets "
                    f"{x.shape[-2]}x{x.shape[-1]}); resize them (?size= on a data spec, image_size= in Python) "
                    "or take an earlier layer"
                ) from None
            if name in wanted:
                out[name] = x
        return out

    def extract(self, x) -> dict[str, torch.Tensor]:
        """Fast inference path: moves `x` (float in [0, 1] or uint8; tensor or array) to the
        device, runs under inference_mode in channels_last (autocast bf16/fp16 on CUDA), and
        returns float32, contiguous, grad-free ordinary tensors on the device."""
        try:
            x = torch.as_tensor(x)
        except (TypeError, RuntimeError, ValueError):  # (a PIL image, a list of them, text)
            raise BackboneError(
                f"{self.name}: expected images as a tensor or array (N, C, H, W), got "
                f"{type(x).__name__}; for PIL images: torch.stack([pil_to_tensor(im) for im in images])"
                " (torchvision.transforms.functional)"
            ) from None
        x = x.to(self.device, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            feats = self(x)
        # Copied outside inference mode: the results are normal tensors that a caller may feed
        # to a model it trains (inference tensors cannot be saved for backward).
        return {
            k: v.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
            for k, v in feats.items()
        }

    def pooled(self, x) -> torch.Tensor:
        """(N, D): each requested layer global-average-pooled, concatenated in layer order."""
        return torch.cat([f.mean(dim=(2, 3)) for f in self.extract(x).values()], dim=1)

    def _autocast(self):
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    # ------------------------------------------------------------------ saving

    def trunk_state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors of the stages actually used, keyed as in the full model (what a bundle
        embeds; `from_config(config(), state_dict=this)` rebuilds the same extractor)."""
        return {
            self._full_keys[k]: v.detach().contiguous() for k, v in self.stages.state_dict().items()
        }

    def config(self) -> dict:
        """JSON-serialisable description; with `trunk_state_dict()` it restores the extractor."""
        return {
            "name": self.name,
            "weights_source": self.weights_source,
            "weights_sha256": self.weights_sha256,
            "layers": list(self.layers),
            "image_size": list(self.image_size) if self.image_size else None,
            "mean": list(self.mean),
            "std": list(self.std),
            "seed": self.seed,
        }

    @classmethod
    def from_config(
        cls,
        cfg: Mapping,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        device: str | torch.device = "auto",
        download: bool = True,
    ) -> FeatureExtractor:
        """Rebuild from `config()`. With `state_dict`, its tensors are used as they are;
        without, the recorded weights are resolved again (ImageNet cache or file; "random"
        re-seeds) and a recorded weights_sha256 must match the file's."""
        try:
            name, source = cfg["name"], cfg["weights_source"]
        except (KeyError, TypeError):
            raise BackboneError(
                "backbone config: needs at least 'name' and 'weights_source'"
            ) from None
        sha = cfg.get("weights_sha256")
        if state_dict is None and source != "random":
            resolved = resolve_weights(get_spec(name), source, download)
            if sha and resolved.sha256 != sha:
                raise BackboneError(
                    f"{name}: weights {source} have sha256 {resolved.sha256[:12]}..., "
                    f"the config recorded {sha[:12]}...; they are not the same weights"
                )
            state_dict = resolved.state
        return cls(
            name,
            cfg.get("layers"),
            state_dict=state_dict,
            weights_source=source,
            weights_sha256=sha,
            image_size=cfg.get("image_size"),
            mean=cfg.get("mean"),
            std=cfg.get("std"),
            seed=cfg.get("seed", 0),
            device=device,
        )

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layers={self.layers}, weights={self.weights_source!r}"


def create(
    name: str,
    weights: str | os.PathLike | None = "imagenet",
    layers: Sequence[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    download: bool = True,
    frozen: bool = True,
) -> FeatureExtractor:
    """A FeatureExtractor for backbone `name`, frozen unless ``frozen=False`` (fine-tuning).

    weights: "imagenet" (torchvision's weights through its cache; "imagenet:<enum member>" picks
    another), "random" or None (seeded init) or a path (safetensors or weights-only torch file).
    layers: stage names (default: the backbone's mid-level default_layers). image_size: resize
    inputs to it (None keeps the input size). download: allow fetching ImageNet weights.
    """
    spec = get_spec(name)
    _check_layers(spec, layers)  # fail on a bad layer or device before any weights are read
    device = resolve_device(device)
    resolved = resolve_weights(spec, weights, download)
    return FeatureExtractor(
        name,
        layers,
        state_dict=resolved.state,
        weights_source=resolved.source,
        weights_sha256=resolved.sha256,
        image_size=image_size,
        mean=resolved.mean,
        std=resolved.std,
        seed=seed,
        device=device,
        frozen=frozen,
    )


def build_model(
    name: str, weights: str | os.PathLike = "random", seed: int = 0, download: bool = True
) -> nn.Module:
    """The full trainable model (torchvision layout, classifier included where one exists),
    e.g. for self-supervised pretraining elsewhere; weights as for `create`."""
    spec = get_spec(name)
    resolved = resolve_weights(spec, weights, download)
    model = spec.make(seed, imagenet=resolved.imagenet)
    if resolved.state is not None:
        load_into(spec, model, [m for _, m in spec.stages(model)], resolved.state, resolved.source)
    return model


# ---------------------------------------------------------------------- argument checks


def _check_layers(spec: BackboneSpec, layers: Sequence[str] | str | None) -> tuple[str, ...]:
    """Requested layers in network order; a comma-separated string is accepted."""
    if layers is None:
        return spec.default_layers
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    unknown = [k for k in layers if k not in spec.layers]
    if unknown or not layers:
        what = f"unknown layer {unknown[0]!r}" if unknown else "no layers requested"
        raise BackboneError(f"{spec.name}: {what}; layers are: {', '.join(spec.layers)}")
    return tuple(k for k in spec.layers if k in layers)


def _check_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (
        (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, Sequence) else ()
    )
    if len(pair) != 2 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in pair
    ):
        raise BackboneError(f"image_size {size!r}: expected a positive int or (height, width)")
    return pair


def _check_stats(spec: BackboneSpec, what: str, values: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) not in (1, spec.in_channels):
        raise BackboneError(
            f"{spec.name}: {what} has {len(values)} values; expected 1 or {spec.in_channels}"
        )
    return values
