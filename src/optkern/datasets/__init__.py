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
    if raw.dtype.kind not in "biuf":  # strings, complex, dates: no class index
        raise DataError(f"{path}: labels must be integers 0..K-1, got dtype {raw.dtype}")
    f = raw.astype(np.float64)
    if not np.all(np.isfinite(f)):
        raise DataError(f"{path}: labels contain NaN or Inf")
    if np.any(f != np.round(f)) or np.any(f < 0):
        raise DataError(f"{path}: labels must be non-negative integers 0..K-1")
    k = int(f.max()) + 1 if f.size else 0  # before the int64 cast, which 1e300 would overflow
    if k < 2:
        raise DataError(f"{path}: need at least 2 classes, found {k}")
    if k > 1000:
        raise DataError(f"{path}: {k} classes is not a classification label column")
    return f.astype(np.int64), k


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):  # an .npy renamed: one bare array
            raise DataError(f"{path}: not an .npz archive; save one with np.savez(path, x=..., y=...)")
        with f:
            if "x" not in f or "y" not in f:
                raise DataError(f"{path}: .npz must hold arrays 'x' and 'y', found {sorted(f.files)}")
            x, y = f["x"], f["y"]
    except (DataError, OSError):  # OSError: load_file names it
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if y.ndim != 1:  # checked first: len(y) of a 0-d array fails
        raise DataError(f"{path}: y must be one-dimensional (n,) labels, got shape {y.shape}")
    if x.ndim < 2 or x.shape[0] != y.shape[0]:
        raise DataError(f"{path}: x must be (n, features) with n == len(y); got x {x.shape}, y {y.shape}")
    # Explicit width: reshape(n, -1) fails when n is 0.
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:]))), y


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _is_header(line: str) -> bool:
    """A first line is a header when some field is not a number: one with a
    letter can still be data (``nan``, ``1e-3``)."""
    return any(f.strip() and not _is_number(f) for f in line.split(","))


def _read_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, encoding="utf-8-sig") as fh:  # -sig: a BOM would make row 1 look like a header
            lines = fh.readlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    # Lines loadtxt reads as data: not blank, not a '#' comment.
    content = [i for i, line in enumerate(lines) if line.split("#", 1)[0].strip()]
    if not content:
        raise DataError(f"{path}: the file is empty")
    skip = 0
    if _is_header(lines[content[0]].split("#", 1)[0]):
        if len(content) == 1:  # loadtxt would only warn and return nothing
            raise DataError(f"{path}: only a header line, no data rows")
        skip = content[0] + 1
    try:
        d = np.loadtxt(lines, delimiter=",", skiprows=skip, ndmin=2)
    except ValueError as e:
        raise DataError(f"{path}: not a numeric CSV ({e})") from None
    if d.shape[1] < 2:
        raise DataError(f"{path}: need at least one feature column and a label column, got {d.shape[1]} column(s)")
    return d[:, :-1], d[:, -1]


def _features(x: np.ndarray, path: str, dtype) -> np.ndarray:
    """Checked features, standardized so one learning rate suits any file."""
    if x.dtype.kind == "c":
        raise DataError(f"{path}: features must be real numbers, got {x.dtype}")
    if x.dtype.kind not in "iuf":  # bool, strings, dates
        raise DataError(f"{path}: features must be numeric, got {x.dtype}")
    if x.shape[1] < 1:
        raise DataError(f"{path}: x has no feature columns, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: features contain NaN or Inf")
    # Scaled to [-1, 1] first: the same result, and values near 1e300 (or past
    # float32's 3e38) cannot overflow the variance or the cast.
    peak = np.abs(x).max(0).astype(np.float64)
    x = x / np.where(peak > 0, peak, 1)
    mu, sd = x.mean(0), x.std(0)
    return ((x - mu) / np.where(sd > 0, sd, 1)).astype(dtype)


def load_file(path: str, dtype=np.float32) -> Dataset:
    """Read ``.npz`` (``x``: (n, d) or (n, ...) features, ``y``: (n,) labels) or
    ``.csv`` (numeric, label in the last column, optional header line)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a data file")
    if not os.path.isfile(path):  # a FIFO or device could block or never end
        raise DataError(f"{path}: not a regular file")
    ext = os.path.splitext(path)[1].lower()
    readers = {".npz": _read_npz, ".csv": _read_csv}
    if ext not in readers:
        raise DataError(f"{path}: unsupported file type {ext!r} (use .npz or .csv)")
    try:
        x, y = readers[ext](path)
    except OSError as e:  # permissions, I/O errors: one line, not a traceback
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if x.shape[0] < 10:
        raise DataError(f"{path}: {x.shape[0]} samples are too few")
    x = _features(x, path, dtype)
    yy, k = _labels(np.asarray(y), path)
    if k > x.shape[0] // 2:
        raise DataError(f"{path}: {k} classes for {x.shape[0]} samples does not fit (labels must be 0..K-1)")
    return Dataset(x, yy, k, os.path.basename(path))
