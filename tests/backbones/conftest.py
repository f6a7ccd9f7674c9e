"""Fixtures for the backbones tests: a private, empty torch.hub cache per test and no way to
download (a download attempt fails like an offline machine and is recorded)."""

from __future__ import annotations

import os
import urllib.error

import pytest
import torch
import torchvision


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """TORCH_HOME -> a temporary dir; torch.hub downloads raise URLError. Returns the list of
    (url, kwargs) download attempts."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)  # in case set_dir was used
    attempts = []

    def refuse(url, *args, **kwargs):
        attempts.append((url, kwargs))
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return attempts


@pytest.fixture
def fake_imagenet():
    """Put a random-init torchvision model's state dict where torch.hub caches `name`'s
    ImageNet weights; returns (path, state dict)."""

    def put(name: str, seed: int = 123):
        weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, os.path.basename(weights.url))
        torch.manual_seed(seed)
        kwargs = {"aux_logits": True, "init_weights": True} if name == "googlenet" else {}
        state = torchvision.models.get_model(name, weights=None, **kwargs).state_dict()
        torch.save(state, path)
        return path, state

    return put
