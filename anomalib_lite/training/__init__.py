"""Training: the one training loop and self-supervised pretraining. Imports the layers below (root,
``data``, ``components``, ``scoring``).
"""
from ..compat import forward

#: the flat layout's ``anomalib_lite.training`` module is :mod:`.loop`: its names still read from here
__getattr__ = forward(__name__, ".loop")
