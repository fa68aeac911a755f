"""Small datasets shipped with optkern, and loading users' own data files.

``load_digits()`` returns the UCI 8x8 handwritten digits (1,797 samples, CC BY
4.0; see ATTRIBUTION.txt). ``load_file(path)`` reads ``.npz`` (arrays ``x``,
``y``) or ``.csv`` (label in the last column, or ``label_column``) and checks
what it reads. Every ``Dataset`` lists in ``notes`` what was done to the data
(scaling, flattening, label renumbering), so a report can say so.
"""

from __future__ import annotations

import numbers
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ._csv import _read_csv
from ._errors import DataError as DataError
from ._scaling import _standardized

# (without it help() and pydoc listed the split's helper untrained_classes and not DataError)
__all__ = ["DataError", "Dataset", "load_digits", "load_file"]

_HERE = os.path.dirname(__file__)


@dataclass
class Dataset:
    x: np.ndarray  # (n, features) float
    y: np.ndarray  # (n,) int64 labels 0..num_classes-1
    num_classes: int
    name: str
    notes: tuple = ()  # what was done to the data, one phrase each
    # A file's features as read (checked, not standardized; a CSV's integer column past 2**53 less
    # its minimum, which standardizing does not see, as notes say): split()
    # standardizes both halves by the training rows' mean and standard deviation, so that no
    # validation row's value reaches the training inputs. None: x needs no such step (the digits).
    unscaled: np.ndarray | None = field(default=None, repr=False, compare=False)

    def split(self, val_fraction: float = 0.2, seed: int = 0):
        """Shuffled (train, validation) split, stratification-free, reproducible. A file's features
        (``load_file``) are standardized by the training rows' per-column mean and standard
        deviation, the validation rows by the same numbers."""
        from .. import _backend

        val_fraction = _backend.real("val_fraction", val_fraction)  # (a str or None: TypeError naming it)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: must be in (0, 1), got {val_fraction}")
        seed = _backend.integer("seed", seed, 0)  # (NumPy's own error would not say which argument)
        n = len(self.y)
        perm = np.random.default_rng(seed).permutation(n)
        nv = max(1, int(round(n * val_fraction)))
        if n < 2:
            raise DataError(f"{self.name}: {n} samples are too few to split")
        if nv >= n:  # (said "1797 samples are too few to split" of the digits at 0.9999)
            raise ValueError(
                f"val_fraction: {val_fraction} of {n} samples is {nv} for validation, no training sample left"
            )
        v, t = perm[:nv], perm[nv:]
        xt, xv, notes = self.x[t], self.x[v], self.notes
        if self.unscaled is not None:
            xt, xv = _standardized(self.unscaled, t, (t, v), self.x.dtype, self.name)
            notes = tuple(_SPLIT_NOTE if n == _FILE_NOTE else n for n in notes)
        # (a rare class's samples all drawn for validation: a class the model never trains on, which
        # the study's report counted among its classes without a word)
        notes += tuple(n for n in [untrained_classes(self.y[t], self.y[v], self.num_classes, val_fraction, seed)] if n)
        return (
            Dataset(xt, self.y[t], self.num_classes, self.name + ":train", notes),
            Dataset(xv, self.y[v], self.num_classes, self.name + ":val", notes),
        )


def untrained_classes(y_train, y_val, num_classes: int, val_fraction: float, seed: int) -> str:
    """What ``Dataset.split`` notes of classes with no training sample ("" if none): the
    validation split drawn with ``seed`` took every sample of them."""
    seen = set(np.unique(np.asarray(y_train)).tolist())
    absent = [c for c in range(int(num_classes)) if c not in seen]
    if not absent:
        return ""
    held = int(np.isin(np.asarray(y_val), absent).sum())
    why = (
        f"the validation split ({val_fraction:g} of the samples, drawn with seed {seed}) took "
        f"{'its sample' if held == 1 else f'their {held} samples' if len(absent) > 1 else f'its {held} samples'}"
        if held
        else "none in the data"
    )
    return (
        f"{'class' if len(absent) == 1 else 'classes'} {', '.join(map(str, absent))} of {num_classes}: no "
        f"training sample: {why}; the network is never trained on {'it' if len(absent) == 1 else 'them'}"
    )


_FILE_NOTE = "features standardized per column (mean 0, standard deviation 1; constant columns set to 0)"
_SPLIT_NOTE = (
    "features standardized per column by the training rows' mean and standard deviation (applied to the "
    "validation rows too; a column constant on the training rows is only centred)"
)


def _float_dtype(dtype) -> np.dtype:
    """``dtype`` as a floating NumPy dtype, or TypeError naming it: a name ("float64") or a dtype
    object works, not only a scalar type; None is refused (NumPy reads it as float64), and so are
    integer dtypes (pixels divided by 16, standardized features, would be truncated)."""
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind != "f":
        raise TypeError(f"dtype: expected a floating dtype, got {repr(dtype) if dt is None else dt}")
    return dt


def load_digits(dtype=np.float32) -> Dataset:
    """The 8x8 digits, pixels scaled to [0, 1]."""
    dt = _float_dtype(dtype)
    with np.load(os.path.join(_HERE, "digits.npz")) as f:
        x = f["x"].astype(dt) / dt.type(16.0)
        y = f["y"].astype(np.int64)
    return Dataset(x, y, 10, "digits", ("pixel values 0..16 divided by 16 (features in [0, 1])",))


def _labels(raw: np.ndarray, path: str) -> tuple[np.ndarray, int, str]:
    """Class indices 0..K-1 from any set of integer labels (1..10, -1/+1, 3/7/9):
    renumbered in increasing order, so no class is left empty; returns the
    indices, K and a note saying how they were renumbered ('' when they were 0..K-1)."""
    if raw.ndim != 1:
        raise DataError(f"{path}: labels must be one-dimensional, got shape {raw.shape}")
    if raw.dtype.kind not in "biufU":  # bytes, complex, dates: no class index
        raise DataError(f"{path}: labels must be integers or class names, got dtype {raw.dtype}")
    if raw.dtype.kind == "U" and not np.all(np.char.str_len(raw) > 0):
        raise DataError(f"{path}: a label is empty (row {int(np.argmin(np.char.str_len(raw))) + 1})")
    if raw.dtype.kind in "biuU":
        # integer labels compared as integers: through float64, labels past 2**53 (IDs, hashes)
        # that differ by less than its spacing would merge into one class
        values, index = np.unique(raw, return_inverse=True)
    else:
        f = raw.astype(np.float64)
        if not np.all(np.isfinite(f)):
            raise DataError(f"{path}: labels contain NaN or Inf")
        if np.any(f != np.round(f)):
            raise DataError(f"{path}: labels must be integers (class numbers), got fractional values")
        values, index = np.unique(f, return_inverse=True)
    k = len(values)
    if k < 2:
        raise DataError(f"{path}: need at least 2 classes, found {k}")
    if k > 1000:
        raise DataError(f"{path}: {k} distinct labels is not a classification label column")
    note = ""
    if not np.array_equal(values, np.arange(k)):
        fmt = "{}" if values.dtype.kind in "biuU" else "{:g}"  # (exact integers, as in the file)
        shown = ", ".join(fmt.format(v) for v in values[:3]) + (
            f", ..., {fmt.format(values[-1])}" if k > 4 else "".join(", " + fmt.format(v) for v in values[3:])
        )
        order = "sorted (class names)" if values.dtype.kind == "U" else "increasing"
        note = f"labels {{{shown}}} renumbered 0..{k - 1} in {order} order"
    return index.reshape(-1).astype(np.int64), k, note


def _is_npy(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    if os.path.isfile(path) and not zipfile.is_zipfile(path) and not _is_npy(path):
        # (np.load reads any other file as a pickle and says "pickled (object) data", which misleads)
        raise DataError(f"{path}: not an .npz (zip) archive; save one with np.savez(path, x=..., y=...)")
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
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:]))), y, x.shape


def _features(x: np.ndarray, path: str) -> np.ndarray:
    """Checked features, flattened; :func:`_standardized` scales them (to mean 0, standard
    deviation 1) so one learning rate suits any file."""
    if x.dtype.kind == "c":
        raise DataError(f"{path}: features must be real numbers, got {x.dtype}")
    if x.dtype.kind not in "iuf":  # bool, strings, dates
        raise DataError(f"{path}: features must be numeric, got {x.dtype}")
    if x.shape[1] < 1:
        raise DataError(f"{path}: x has no feature columns, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: features contain NaN or Inf")
    return x


def load_file(path: str, dtype=np.float32, label_column=None) -> Dataset:
    """Read ``.npz`` (``x``: (n, d) or (n, ...) features, flattened to (n,
    prod(...)); ``y``: (n,) labels) or ``.csv`` (numbers, optional header line; the label in the
    last column or in ``label_column``: an index or a header name). The first line of a CSV is a
    header when it holds a word (a field no number reads as, not ``1_0`` or ``\u0661``, which
    Python reads as numbers and loadtxt refuses: that line is data, refused naming the cell as on
    any other line) where the second line has a number, or is pandas' ``0,1,...,n-1``; a header
    names every column, with words: a first line with too few or too many names, or with names and
    numbers (``0,0,a`` above rows of numbers), is refused (``_csv._is_header``). Every line is cut
    as np.loadtxt cuts the rows (``_csv._data``, ``_csv._row``): a '#' outside quotes starts a comment,
    a line of spaces or comment alone is skipped, a double quote opens a quoted field only as its
    first character (after ``, `` it is a character); a quoted field that does not close on its
    line, or a NUL character, is refused naming the line. Features are
    standardized per column (over every row here; ``split()`` standardizes each half by the
    training rows' mean and standard deviation); integer labels of any values are renumbered
    0..K-1, and so are class names (words in the label column or a string ``y``), in sorted order.
    ``Dataset.notes`` says what was done."""
    dtype = _float_dtype(dtype)
    # (os.stat's own TypeError named no argument, and read an int as a file descriptor; a bytes
    # path was refused as the "unsupported file type b'.csv'")
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = os.fsdecode(path)
    if not (label_column is None or isinstance(label_column, (str, numbers.Integral))) or isinstance(
        label_column, bool
    ):  # (else True or 1.0 was looked up as the header name "True" / "1.0")
        raise TypeError(f"label_column: expected an int or a str (a header name), got {type(label_column).__name__}")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a data file")
    if not os.path.isfile(path):  # a FIFO or device could block or never end
        raise DataError(f"{path}: not a regular file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npz", ".csv"):
        raise DataError(f"{path}: unsupported file type {ext!r} (use .npz or .csv)")
    if ext == ".npz" and label_column is not None:
        raise DataError(f"{path}: a label column applies to .csv files; an .npz holds its labels in array 'y'")
    notes = []
    try:
        if ext == ".npz":
            x, y, shape = _read_npz(path)
            if len(shape) > 2:
                notes.append(f"x of shape {tuple(shape)} flattened to {x.shape[1]} features per sample")
            where = ""
        else:
            x, y, column, exact = _read_csv(path, label_column)
            notes.append(
                f"label from the CSV's {column!r}"
                if not column.startswith("column ")
                else f"label from CSV {column} of {x.shape[1] + 1}"
            )
            notes.extend(exact)
            where = (
                ""
                if label_column is not None
                else " (the label is read from the last column: choose another with --label-column)"
            )
    except OSError as e:  # permissions, I/O errors: one line, not a traceback
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if x.shape[0] < 10:
        raise DataError(f"{path}: {x.shape[0]} samples are too few")
    unscaled = _features(x, path)
    everything = np.arange(len(unscaled))
    (x,) = _standardized(unscaled, everything, (everything,), dtype, path)
    notes.append(_FILE_NOTE)
    try:
        yy, k, renumbered = _labels(np.asarray(y), path)
        if k > x.shape[0] // 2:
            raise DataError(f"{path}: {k} classes for {x.shape[0]} samples does not fit a classification task")
    except DataError as e:
        raise DataError(f"{e}{where}") from None
    if renumbered:
        notes.append(renumbered)
    return Dataset(x, yy, k, os.path.basename(path), tuple(notes), unscaled)
