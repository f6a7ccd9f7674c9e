"""Components: the parts detectors are built of (patch features, kNN banks and coresets, running
moments and reservoirs, networks, ONNX graphs). Imports the root and ``data``.
"""
