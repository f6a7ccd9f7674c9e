"""Weights: torchvision's ImageNet checkpoints (through its cache), seeded random init, and
safetensors / weights-only torch files. Nothing here ever unpickles arbitrary objects."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from .errors import BackboneError, reason
from .registry import BackboneSpec, get_spec

METADATA_KEY = "backbones"  # safetensors metadata entry holding our JSON

_sha_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (memoised per path, size and mtime: large checkpoints are hashed
    once per process)."""
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in _sha_memo:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            _sha_memo[key] = digest.hexdigest()
    except OSError as e:
        raise BackboneError(f"{path}: cannot hash ({reason(e)})") from None
    return _sha_memo[key]


# ----------------------------------------------------------------------------- files


def save_weights(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    name: str,
    metadata: dict | None = None,
) -> None:
    """Write a safetensors file of `name`'s tensors plus JSON metadata (backbone name, mean/std,
    whatever `metadata` adds). A FeatureExtractor contributes its trunk and its mean/std.
    Atomic: written to a temporary file in the same folder, then renamed."""
    path = os.path.abspath(os.fspath(path))
    data = weights_bytes(model_or_state_dict, name, metadata, where=path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def weights_bytes(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    name: str,
    metadata: dict | None = None,
    where: str = "weights",
) -> bytes:
    """The bytes of the weights file :func:`save_weights` writes (built in memory: no temporary
    file of safetensors' own appears beside the target)."""
    spec = get_spec(name)
    path = where
    obj = model_or_state_dict
    mean, std = spec.mean, spec.std
    if hasattr(obj, "trunk_state_dict"):  # a FeatureExtractor
        if obj.name != name:
            raise BackboneError(f"{path}: the extractor is a {obj.name}, not a {name}")
        state, mean, std = obj.trunk_state_dict(), obj.mean, obj.std
    elif isinstance(obj, nn.Module):
        state = obj.state_dict()
    elif isinstance(obj, Mapping):
        state = dict(obj)
    else:
        raise BackboneError(
            f"{path}: cannot save a {type(obj).__name__}; pass a module or a state dict"
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BackboneError(f"{path}: state dict entry {bad[0]!r} is not a tensor")
    meta = {"backbone": name, "mean": list(mean), "std": list(std), **(metadata or {})}
    try:
        header = {METADATA_KEY: json.dumps(meta, sort_keys=True)}
    except (TypeError, ValueError) as e:
        raise BackboneError(f"{path}: metadata is not JSON-serialisable ({reason(e)})") from None
    # Own contiguous CPU copies: safetensors refuses views and tensors sharing storage.
    tensors = {
        k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for k, v in state.items()
    }
    return save(tensors, metadata=header)


def load_weights_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read (state dict, metadata) from a safetensors file or a torch.save file (.pt/.pth,
    loaded with weights_only=True: plain tensors only). The format is recognised by content, so
    the suffix does not matter. Missing, corrupt or foreign files raise BackboneError."""
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except FileNotFoundError:
        raise BackboneError(f"{path}: no such weights file") from None
    except OSError as e:
        raise BackboneError(f"{path}: cannot read weights ({reason(e)})") from None
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save zip, or legacy pickle
        return _load_torch(path)
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: u64 header length, then JSON
        return _load_safetensors(path)
    raise BackboneError(f"{path}: not a weights file (neither safetensors nor torch.save format)")


def _load_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # noqa: BLE001  (the Rust reader raises its own error types)
        raise BackboneError(f"{path}: corrupt safetensors file ({reason(e)})") from None
    try:
        meta = json.loads(header.get(METADATA_KEY, "{}"))
    except ValueError as e:
        raise BackboneError(f"{path}: unreadable metadata ({reason(e)})") from None
    return state, meta if isinstance(meta, dict) else {}


def _load_torch(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (torch raises many types here)
        if type(e).__name__ == "UnpicklingError":  # refused by weights_only=True
            raise BackboneError(
                f"{path}: not a plain tensor file: it holds pickled Python objects, which are "
                "never loaded (they could run code); save a state_dict() instead"
            ) from None
        raise BackboneError(f"{path}: corrupt torch file ({reason(e)})") from None
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if isinstance(obj, Mapping):  # unwrap the usual training-checkpoint layouts
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    state = {}
    if isinstance(obj, Mapping):
        state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not state:
        raise BackboneError(f"{path}: holds no state dict of tensors")
    return state, meta if isinstance(meta, dict) else {}


# ----------------------------------------------------------------------------- ImageNet


def imagenet_weights(spec: BackboneSpec, member: str | None = None):
    """torchvision's weights-enum member for `spec` (its default, or `member` by name)."""
    if spec.imagenet is None:
        raise BackboneError(
            f"{spec.name}: no ImageNet weights exist for this backbone; "
            "use weights='random' or weights=PATH (e.g. from self-supervised pretraining)"
        )
    import torchvision.models  # only for ImageNet weights

    enum = torchvision.models.get_model_weights(spec.name)
    try:
        return enum[member or spec.imagenet]
    except KeyError:
        names = ", ".join(m.name for m in enum)
        raise BackboneError(
            f"{spec.name}: no ImageNet weights {member!r}; available: {names}"
        ) from None


def imagenet_file(weights) -> str:
    """Where torch.hub caches a weights-enum member: <hub dir>/checkpoints/<url basename>
    (honours $TORCH_HOME, like torchvision)."""
    return os.path.join(
        torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path)
    )


def imagenet_cached(name: str) -> bool | None:
    """Whether `name`'s default ImageNet weights are in torch.hub's cache; None if none exist."""
    spec = get_spec(name)
    if spec.imagenet is None:
        return None
    return os.path.isfile(imagenet_file(imagenet_weights(spec)))


def _load_imagenet(spec: BackboneSpec, member: str | None, download: bool):
    """(state dict, weights member, cached file) from the cache, downloading when allowed."""
    weights = imagenet_weights(spec, member)
    file = imagenet_file(weights)
    if os.path.isfile(file):
        try:
            return torch.load(file, map_location="cpu", weights_only=True), weights, file
        except Exception as e:  # noqa: BLE001
            raise BackboneError(
                f"{file}: cached {spec.name} ImageNet weights are unreadable ({reason(e)}); "
                "delete the file to download it again"
            ) from None
    why = "download=False"
    if download:
        try:
            state = torch.hub.load_state_dict_from_url(
                weights.url,
                progress=sys.stderr.isatty(),
                check_hash=True,
                weights_only=True,
                map_location="cpu",
            )
            return state, weights, file
        except Exception as e:  # noqa: BLE001  (offline, HTTP error, hash mismatch, disk full)
            why = reason(e)
    raise BackboneError(
        f"{spec.name}: ImageNet weights are not cached and could not be downloaded ({why}); "
        f"put {os.path.basename(file)} into {os.path.dirname(file)}{os.sep} "
        "or pass weights=PATH or weights='random'"
    )


# ----------------------------------------------------------------------------- resolution


@dataclass
class Resolved:
    """What a `weights=` argument turned into."""

    state: dict[str, torch.Tensor] | None  # None: keep the seeded random init
    source: str  # "imagenet:<enum member>", "random" or an absolute path
    sha256: str | None
    mean: tuple[float, ...] | None = None  # normalisation the weights expect, when known
    std: tuple[float, ...] | None = None

    @property
    def imagenet(self) -> bool:
        return self.source.startswith("imagenet")


def resolve_weights(spec: BackboneSpec, weights: str | os.PathLike, download: bool) -> Resolved:
    """Interpret weights="imagenet" / "imagenet:<member>" / "random" / a path for `spec`; None is
    "random", as in torchvision (``resnet18(weights=None)``)."""
    if weights is None:
        weights = "random"
    if isinstance(weights, str) and (weights == "imagenet" or weights.startswith("imagenet:")):
        state, member, file = _load_imagenet(spec, weights.partition(":")[2] or None, download)
        kw = getattr(member.transforms, "keywords", {})  # e.g. vgg16 IMAGENET1K_FEATURES
        mean, std = kw.get("mean"), kw.get("std")
        return Resolved(
            state,
            f"imagenet:{member.name}",
            file_sha256(file),
            tuple(mean) if mean else None,
            tuple(std) if std else None,
        )
    if isinstance(weights, str) and weights == "random":
        return Resolved(None, "random", None)
    if not isinstance(weights, (str, os.PathLike)):
        raise BackboneError(
            f"{spec.name}: weights={weights!r}; expected 'imagenet', 'random' (or None) or a path"
        )
    state, meta = load_weights_file(weights)
    path = os.path.abspath(os.fspath(weights))
    saved_for = meta.get("backbone")
    if saved_for not in (None, spec.name):
        raise BackboneError(f"{path}: weights were saved for {saved_for}, not {spec.name}")
    mean, std = meta.get("mean"), meta.get("std")
    return Resolved(
        state, path, file_sha256(path), tuple(mean) if mean else None, tuple(std) if std else None
    )


def stage_key_map(model: nn.Module, trunk: nn.Module) -> dict[str, str]:
    """Map each state-dict key of `trunk` (a module made of `model`'s own stages) to the key
    the same tensor has in `model`, so files and bundles use torchvision's key names."""
    full = {id(t): k for k, t in model.state_dict(keep_vars=True).items()}
    return {k: full[id(t)] for k, t in trunk.state_dict(keep_vars=True).items()}


def _strip_prefix(state: dict[str, torch.Tensor], needed: Sequence[str]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix ('module.', 'model.', 'backbone.', ...) when the keys carry one."""
    if not needed or any(k in state for k in needed):
        return state
    probe = needed[0]
    prefixes = {k[: -len(probe)] for k in state if k.endswith("." + probe)}
    if not prefixes:
        return state
    best = max(sorted(prefixes), key=lambda p: sum(p + k in state for k in needed))
    return {k[len(best) :]: v for k, v in state.items() if k.startswith(best)}


def load_into(
    spec: BackboneSpec,
    model: nn.Module,
    stages: Sequence[nn.Module],
    state: Mapping[str, torch.Tensor],
    source: str,
) -> None:
    """Load `state` into `model`: every tensor of the given stages must be there with the right
    shape (else BackboneError naming `source` and the first offending keys); other keys (a
    classifier head, stages not used) load when they fit and are ignored otherwise."""
    own = model.state_dict()
    # Checkpoints older than BatchNorm's num_batches_tracked lack it; BN fills it in.
    needed = [
        k
        for k in stage_key_map(model, nn.ModuleList(stages)).values()
        if not k.endswith("num_batches_tracked")
    ]
    state = dict(state)
    if spec.fix_keys is not None:
        state = spec.fix_keys(state)
    state = _strip_prefix(state, needed)
    missing = [k for k in needed if k not in state]
    if missing:
        raise BackboneError(
            f"{source}: not {spec.name} weights: {len(missing)} of {len(needed)} tensors missing, "
            f"e.g. {', '.join(missing[:3])}"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in needed
        if state[k].shape != own[k].shape
    ]
    if wrong:
        raise BackboneError(f"{source}: shapes do not fit {spec.name}: {'; '.join(wrong[:3])}")
    usable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(usable, strict=False)
