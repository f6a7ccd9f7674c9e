"""CNN feature extractors for anomaly detection: named torchvision-style backbones, cut into
stages, frozen, with preprocessing inside. Knows nothing of training or of detectors.

    fx = backbones.create("resnet18", weights="imagenet", layers=["layer2", "layer3"])
    feats = fx.extract(images)          # {"layer2": (N,128,H/8,W/8), "layer3": (N,256,H/16,W/16)}
"""

from .device import resolve_device
from .errors import BackboneError
from .extractor import FeatureExtractor, build_model, create
from .registry import BackboneInfo, list_backbones
from .weights import file_sha256, imagenet_cached, load_weights_file, save_weights

__all__ = [
    "BackboneError",
    "BackboneInfo",
    "FeatureExtractor",
    "build_model",
    "create",
    "file_sha256",
    "imagenet_cached",
    "list_backbones",
    "load_weights_file",
    "resolve_device",
    "save_weights",
]
