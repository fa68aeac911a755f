"""``optkern.regularize.load_state`` (EarlyStopping's checkpoint file) of a truncated or altered
file raises the documented ValueError naming ``path``.

It raised ``EOFError: No data left in file`` for an empty file (a writer killed before its first
byte, a full disk) and ``zipfile.BadZipFile`` for a truncated one or one whose bytes were altered
(a CRC mismatch), naming no file: a caller catching ValueError, as the docstring says, was passed
by. A single ``.npy`` array said "'numpy.ndarray' object does not support the context manager
protocol"."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from optkern.regularize import load_state, save_state


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "best.npz"
    save_state(path, {"w": np.arange(64.0), "epoch": 3})
    return path, path.read_bytes()


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -10, -1])
def test_a_truncated_file_is_a_value_error_naming_it(saved, keep):
    path, raw = saved
    n = int(len(raw) * keep) if isinstance(keep, float) else keep if keep >= 0 else len(raw) + keep
    path.write_bytes(raw[:n])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no file left open: np.load's own handle leaked on a bad zip)
        with pytest.raises(ValueError, match=f"^path: .*{path.name}.* is not a state written by save_state"):
            load_state(path)


def test_an_altered_file_is_a_value_error_naming_it(saved):
    path, raw = saved
    data = bytearray(raw)
    data[len(data) // 3] ^= 0xFF  # (inside the stored array: the zip's CRC no longer matches)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"^path: .*{path.name}.* is not a state written by save_state"):
        load_state(path)


def test_a_single_npy_array_is_named_as_such(tmp_path):
    path = tmp_path / "a.npz"
    with open(path, "wb") as f:
        np.save(f, np.arange(3.0))
    with pytest.raises(ValueError, match=r"is not a state written by save_state \(a single \.npy array"):
        load_state(path)


def test_a_good_file_still_loads(saved):
    path, _ = saved
    back = load_state(path)
    assert back["epoch"] == 3 and np.array_equal(back["w"], np.arange(64.0))
