"""Damaged checkpoint files: ``optkern.regularize.load_state`` (EarlyStopping's file) and ``optkern.load``.

* The integrity check of a ``save_state`` file is the zip's CRC-32 of every member (``np.savez`` writes
  it, ``zipfile`` checks it once a member is read to its end): no flipped byte loads as other values
  (checked here for every byte of a small file), so no second checksum is written. But a byte of the
  zip's directory damaged raised ``NotImplementedError`` ("That compression method is not supported",
  "zip file version 17.3"), ``RuntimeError`` ("... is encrypted, password required") or ``OSError``
  (a seek to a negative offset, EINVAL): not the documented ValueError naming ``path``, and a caller
  catching ValueError was passed by.
* A damaged array named only the zip member (``Bad CRC-32 for file 'a1.npy'``): it now names the entry
  of the state (``state['w'][1]``), as ``optkern.load`` names its entry too.
* Old files still load: ``early_stopping_state_v1.npz`` was written by the code before this change
  (the format is unchanged), ``early_stopping_state_v0.npz`` by the encoder before the codec.
"""

from __future__ import annotations

import pathlib
import random

import numpy as np
import pytest

import optkern
from optkern.regularize import load_state, save_state

DATA = pathlib.Path(__file__).parent / "data"


def _same(x, y) -> bool:
    """Equal values, types, dtypes and bits."""
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, np.ndarray):
        return isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    if isinstance(x, (tuple, list)):
        return type(x) is type(y) and len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y))
    return type(x) is type(y) and x == y


def _state() -> dict:
    return {"w": np.arange(7, dtype=np.float32) + 0.5, "n": 3, "t": (1.5, "x"), "b": np.array([True, False])}


def test_every_flipped_byte_is_a_value_error_naming_the_file(tmp_path):
    path, bad = tmp_path / "s.npz", tmp_path / "bad.npz"
    save_state(path, _state())
    raw = path.read_bytes()
    want = load_state(path)
    for i in range(len(raw)):
        bit = i % 8  # (one bit a byte, the bit position cycling: every byte hit, in a few seconds)
        data = bytearray(raw)
        data[i] ^= 1 << bit
        bad.write_bytes(bytes(data))
        try:
            back = load_state(bad)
        except ValueError as e:
            assert str(e).startswith(f"path: {str(bad)!r} is not a state written by save_state"), (i, bit, e)
            continue
        # (a byte the reader does not use -- the local header's copy of a field, a timestamp)
        assert _same(back, want), f"byte {i} bit {bit}: loaded other values silently"


def test_random_damage_and_cuts_are_value_errors(tmp_path):
    path, bad = tmp_path / "s.npz", tmp_path / "bad.npz"
    save_state(path, _state())
    raw = path.read_bytes()
    rng = random.Random(1)
    for _ in range(400):
        data = bytearray(raw)
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            del data[rng.randrange(len(data)) :]
        else:
            i = rng.randrange(len(data))
            del data[i : i + rng.randrange(1, 20)]
        bad.write_bytes(bytes(data))
        try:
            load_state(bad)
        except ValueError:
            pass


def test_a_damaged_array_names_its_entry(tmp_path):
    path = tmp_path / "s.npz"
    a = np.random.default_rng(0).standard_normal(1024).astype(np.float32)
    save_state(path, {"x": 1, "w": [np.ones(2), {"q": (3, a)}]})
    data = bytearray(path.read_bytes())
    data[data.find(a[500:501].tobytes())] ^= 4
    path.write_bytes(bytes(data))
    says = r"is not a state written by save_state \(damaged entry state\['w'\]\[1\]\['q'\]\[1\] \(member a1: Bad CRC"
    with pytest.raises(ValueError, match=says):
        load_state(path)


def test_optkern_load_names_the_damaged_entry(tmp_path):
    path = tmp_path / "c.npz"
    a = np.random.default_rng(0).standard_normal(1024).astype(np.float32)
    optkern.save(path, x=np.ones(3), w=[np.ones(2), {"q": (3, a)}])
    data = bytearray(path.read_bytes())
    data[data.find(a[500:501].tobytes())] ^= 4
    path.write_bytes(bytes(data))
    target = np.zeros(3)
    with pytest.raises(ValueError, match=r"damaged checkpoint: array a2 of entry w\[1\]\['q'\]\[1\] \(BadZipFile: "):
        optkern.load(path, x=target)
    assert not target.any()


def test_a_file_of_the_code_before_still_loads():
    torch = pytest.importorskip("torch")
    import ml_dtypes

    back = load_state(DATA / "early_stopping_state_v1.npz")
    assert back["w"].tolist() == np.arange(6.0).reshape(2, 3).tolist() and back["w"].dtype == np.float64
    assert back["h"].dtype == np.float32 and back["h"].tolist() == [1.5, -2.0]
    assert back["bf"].dtype == np.dtype(ml_dtypes.bfloat16) and back["bf"].astype(float).tolist() == [1.5, -3.0]
    assert back["t"].dtype == torch.bfloat16 and back["t"].float().tolist() == [0.5, -1.0]
    assert back[3] == (1, "x", None)
    assert back["k"].dtype == np.int32 and back["k"].shape == () and back["k"] == 2
