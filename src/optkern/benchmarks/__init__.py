"""Benchmarks against PyTorch (``optkern bench``; ``bench/*.py`` are thin wrappers).

Each suite returns :class:`~optkern.benchmarks.timing.Row` objects measured in
one process: optkern's time, the best PyTorch time, bytes moved, and a
bandwidth probe measured in the same run, so every ratio is like for like.
"""
