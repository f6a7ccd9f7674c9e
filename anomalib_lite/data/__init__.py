"""Data: every input read into one shape (arrays, folders, MVTec sets, series files, NAB), tiles,
sample data. Imports only the package root's modules.
"""
from ..compat import forward

#: the flat layout's ``anomalib_lite.data`` module is :mod:`.batches`: its names still read from here
__getattr__ = forward(__name__, ".batches")
