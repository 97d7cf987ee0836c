"""Numba kernels: tokenizing, hashing, sketch updates and per-document features.

Kernels only compute. They take numpy arrays and return numpy arrays; the Python
wrappers in `scanner/` own validation, dtypes and state.
"""
