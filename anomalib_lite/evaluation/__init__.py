"""Evaluation: one scoring pass and its figures, heatmaps, the HTML report, NAB's protocol. Imports
the detectors' contract and the layers below.
"""
from ..compat import forward

#: the flat layout's ``anomalib_lite.evaluation`` module is :mod:`.assessment`: its names still read from here
__getattr__ = forward(__name__, ".assessment")
