"""Device selection shared by every extractor."""

from __future__ import annotations

import torch

from .errors import BackboneError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto" (CUDA, then MPS, then CPU), "cpu", "cuda:1", ... into a usable torch.device.

    A malformed string or a device this machine does not have raises BackboneError, so a typo
    fails at construction rather than at the first batch.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise BackboneError(
            f"device {device!r}: not a device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackboneError(f"device {str(device)!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackboneError(
                f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise BackboneError(f"device {str(device)!r}: MPS is not available on this machine")
    elif dev.type == "meta":
        raise BackboneError(f"device {str(device)!r}: cannot run an extractor on 'meta'")
    return dev
