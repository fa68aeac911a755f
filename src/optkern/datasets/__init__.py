"""Small datasets shipped with optkern, and loading users' own data files.

``load_digits()`` returns the UCI 8x8 handwritten digits (1,797 samples, CC BY
4.0; see ATTRIBUTION.txt). ``load_file(path)`` reads ``.npz`` (arrays ``x``,
``y``) or ``.csv`` (label in the last column) and checks what it reads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

_HERE = os.path.dirname(__file__)


class DataError(ValueError):
    """A data file that cannot be used: the message says why, in one line."""


@dataclass
class Dataset:
    x: np.ndarray          # (n, features) float
    y: np.ndarray          # (n,) int64 labels 0..num_classes-1
    num_classes: int
    name: str

    def split(self, val_fraction: float = 0.2, seed: int = 0):
        """Shuffled (train, validation) split, stratification-free, reproducible."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: must be in (0, 1), got {val_fraction}")
        n = len(self.y)
        perm = np.random.default_rng(seed).permutation(n)
        nv = max(1, int(round(n * val_fraction)))
        if nv >= n:
            raise DataError(f"{self.name}: {n} samples are too few to split")
        v, t = perm[:nv], perm[nv:]
        return (Dataset(self.x[t], self.y[t], self.num_classes, self.name + ":train"),
                Dataset(self.x[v], self.y[v], self.num_classes, self.name + ":val"))


def load_digits(dtype=np.float32) -> Dataset:
    """The 8x8 digits, pixels scaled to [0, 1]."""
    with np.load(os.path.join(_HERE, "digits.npz")) as f:
        x = f["x"].astype(dtype) / dtype(16.0)
        y = f["y"].astype(np.int64)
    return Dataset(x, y, 10, "digits")


def _labels(raw: np.ndarray, path: str) -> tuple[np.ndarray, int]:
    if raw.ndim != 1:
        raise DataError(f"{path}: labels must be one-dimensional, got shape {raw.shape}")
    if not np.all(np.isfinite(raw.astype(np.float64))):
        raise DataError(f"{path}: labels contain NaN or Inf")
    if np.any(raw != np.round(raw)) or np.any(raw < 0):
        raise DataError(f"{path}: labels must be non-negative integers 0..K-1")
    y = raw.astype(np.int64)
    k = int(y.max()) + 1 if y.size else 0
    if k < 2:
        raise DataError(f"{path}: need at least 2 classes, found {k}")
    if k > 1000:
        raise DataError(f"{path}: {k} classes is not a classification label column")
    return y, k


def load_file(path: str, dtype=np.float32) -> Dataset:
    """Read ``.npz`` (``x``: (n, d) or (n, ...) features, ``y``: (n,) labels) or
    ``.csv`` (numeric, label in the last column, optional header line)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                if "x" not in f or "y" not in f:
                    raise DataError(f"{path}: .npz must hold arrays 'x' and 'y', found {sorted(f.files)}")
                x, y = f["x"], f["y"]
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{path}: not a readable .npz file ({e})") from None
        if x.ndim < 2 or x.shape[0] != y.shape[0]:
            raise DataError(f"{path}: x must be (n, features) with n == len(y); got x {x.shape}, y {y.shape}")
        x = x.reshape(x.shape[0], -1)
    elif ext == ".csv":
        try:
            with open(path) as fh:
                first = fh.readline()
            skip = 1 if any(c.isalpha() for c in first) else 0
            d = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
        except ValueError as e:
            raise DataError(f"{path}: not a numeric CSV ({e})") from None
        if d.shape[1] < 2:
            raise DataError(f"{path}: need at least one feature column and a label column, got {d.shape[1]} column(s)")
        x, y = d[:, :-1], d[:, -1]
    else:
        raise DataError(f"{path}: unsupported file type {ext!r} (use .npz or .csv)")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: features must be numeric, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: features contain NaN or Inf")
    if x.shape[0] < 10:
        raise DataError(f"{path}: {x.shape[0]} samples are too few")
    yy, k = _labels(np.asarray(y), path)
    if k > x.shape[0] // 2:
        raise DataError(f"{path}: {k} classes for {x.shape[0]} samples does not fit (labels must be 0..K-1)")
    x = x.astype(dtype)
    # Standardize features so one learning rate suits any file.
    mu, sd = x.mean(0), x.std(0)
    x = (x - mu) / np.where(sd > 0, sd, 1).astype(dtype)
    return Dataset(x.astype(dtype), yy, k, os.path.basename(path))
