"""Runtime: running a fitted detector elsewhere: ONNX export, River-style online scoring, series
streams scored line by line.
"""
