"""Scoring: metrics, thresholds (conformal, tail, moving, dynamic, NAB's surprise) and the series'
kinds of evidence. Imports the root, ``data`` and ``components``.
"""
