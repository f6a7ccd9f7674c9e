"""App: what each ``anomaly`` command does (:mod:`.workflows`) and the command line's options
(:mod:`.options`, ``options.json``). The top layer: imports any below; nothing in the package
imports it.
"""
