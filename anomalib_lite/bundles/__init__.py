"""Bundles: the one-file safetensors + JSON format, its header read without torch, Ed25519
signatures. Knows detectors only through :mod:`anomalib_lite.registry`.
"""
