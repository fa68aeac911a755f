"""One checkpoint codec (``optkern._checkpoint_codec``) for ``optkern.save`` and
``optkern.regularize.save_state``; forged array indices refused.

* ``early_stopping.py`` had an encoder of its own (a second definition of the codec). It now
  writes the codec's structure; a file its old encoder wrote (``tests/data/early_stopping_state_v0.npz``,
  written by that code) still loads, with the same types.
* A checkpoint whose metadata was edited and its checksum recomputed could name array ``-1`` or
  ``True`` (``arrays[True]`` is ``arrays[1]``): loaded silently as another array. Now the
  documented ValueError naming the file."""

from __future__ import annotations

import hashlib
import io
import json
import math
import pathlib
import zipfile

import ml_dtypes
import numpy as np
import pytest

import optkern
from optkern.regularize import EarlyStopping, load_state, save_state

LEGACY = pathlib.Path(__file__).parent / "data" / "early_stopping_state_v0.npz"


def _check_fixture_state(back, torch) -> None:
    np.testing.assert_array_equal(back["w"], np.arange(6.0).reshape(2, 3))
    assert back["h"].dtype == np.float32 and back["h"].tolist() == [1.5, -2.0]
    assert back["bf"].dtype == np.dtype(ml_dtypes.bfloat16) and back["bf"].astype(float).tolist() == [1.5, -3.0]
    assert back["f8"].dtype == np.dtype(ml_dtypes.float8_e4m3fn) and back["f8"].astype(float).tolist() == [0.5, 2.0]
    assert isinstance(back["t"], torch.Tensor) and back["t"].dtype == torch.float32 and back["t"].tolist() == [1, 2]
    assert back["tb"].dtype == torch.bfloat16 and back["tb"].float().tolist() == [0.5, -1.0]
    assert back[3][:5] == (1, 2.5, None, "x", True) and math.isnan(back[3][5])
    assert back["steps"] == 7 and back["lr"][0] == 0.1
    assert back["lr"][1]["k"].dtype == np.int32 and back["lr"][1]["k"].shape == () and back["lr"][1]["k"] == 2


def _fixture_state(torch) -> dict:
    return {
        "w": np.arange(6.0).reshape(2, 3),
        "h": np.array([1.5, -2.0], np.float32),
        "bf": np.array([1.5, -3.0], ml_dtypes.bfloat16),
        "f8": np.array([0.5, 2.0], ml_dtypes.float8_e4m3fn),
        "t": torch.tensor([1.0, 2.0]),
        "tb": torch.tensor([0.5, -1.0], dtype=torch.bfloat16),
        3: (1, 2.5, None, "x", True, float("nan")),
        "steps": np.int64(7),
        "lr": [0.1, {"k": np.array(2, np.int32)}],
    }


def test_a_file_of_the_old_encoder_still_loads():
    torch = pytest.importorskip("torch")
    with np.load(LEGACY) as z:  # (it is the old format: the test would prove nothing otherwise)
        assert json.loads(str(z["__skeleton__"]))["__dict__"][0] == ["w", {"__array__": "a0", "cupy": False}]
    _check_fixture_state(load_state(LEGACY), torch)


def test_save_state_writes_the_codec_structure_and_round_trips(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "s.npz"
    save_state(path, _fixture_state(torch))
    with np.load(path) as z:
        skeleton = json.loads(str(z["__skeleton__"]))
    assert skeleton["format"] == "optkern-state"
    assert skeleton["tree"]["__items__"][0] == ["w", {"__array__": 0}]  # (the codec's node, int key in the dict)
    _check_fixture_state(load_state(path), torch)
    es = EarlyStopping(path=tmp_path / "best.npz")
    es.step(1.0, state=_fixture_state(torch))
    _check_fixture_state(es.restore(), torch)


def test_torch_float8_tensors_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch.tensor([0.5, -2.0, 448.0]).to(torch.float8_e4m3fn)
    save_state(tmp_path / "s.npz", {"t": t})
    back = load_state(tmp_path / "s.npz")["t"]
    assert back.dtype == torch.float8_e4m3fn and back.float().tolist() == [0.5, -2.0, 448.0]
    # optkern.save takes it too now (it refused every float8 tensor), and load gives its NumPy type
    optkern.save(tmp_path / "c.npz", t=t)
    a = optkern.load(tmp_path / "c.npz")["t"]
    assert a.dtype == np.dtype(ml_dtypes.float8_e4m3fn) and a.astype(float).tolist() == [0.5, -2.0, 448.0]


def _rewrite(path, edit) -> None:
    """``path`` with each member passed through ``edit(name, raw bytes)`` (a forger's tool)."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for n, raw in members.items():
            z.writestr(n, edit(n, raw))


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize("index", [-1, True, 1.0, "a1", 2])
def test_a_forged_checkpoint_index_is_refused(tmp_path, index):
    path = tmp_path / "c.npz"
    optkern.save(path, w=np.arange(3.0), v=np.ones(3))
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes())
    meta["objects"]["w"]["data"]["__array__"] = index
    raw = json.dumps(meta).encode()
    forged = {
        "meta.npy": _npy(np.frombuffer(raw, np.uint8)),
        "meta_sha256.npy": _npy(np.frombuffer(hashlib.sha256(raw).hexdigest().encode(), np.uint8)),
    }
    _rewrite(path, lambda n, b: forged.get(n, b))
    with pytest.raises(ValueError, match=rf"^{path}: .*array index {index!r} is not one of the file's 2 arrays"):
        optkern.load(path)
    w = np.zeros(3)
    with pytest.raises(ValueError, match=f"^{path}: "):
        optkern.load(path, w=w)
    assert not w.any()


@pytest.mark.parametrize("index", [-1, True])
def test_a_forged_save_state_index_is_refused(tmp_path, index):
    path = tmp_path / "s.npz"
    save_state(path, {"w": np.arange(3.0), "v": np.ones(3)})
    with np.load(path) as z:
        skeleton = json.loads(str(z["__skeleton__"]))
    skeleton["tree"]["w"]["__array__"] = index
    _rewrite(path, lambda n, b: _npy(np.array(json.dumps(skeleton))) if n == "__skeleton__.npy" else b)
    with pytest.raises(ValueError, match=f"^path: .*{path.name}.* is not a state written by save_state .*array index"):
        load_state(path)


def test_cupy_arrays_come_back_as_cupy(tmp_path):
    # (run with a GPU, or the emulator's stand-in: PYTHONPATH=src:tools/cuda_emu/py)
    cp = pytest.importorskip("cupy")
    save_state(tmp_path / "s.npz", {"w": cp.arange(3.0), "n": np.ones(2)})
    back = load_state(tmp_path / "s.npz")
    assert isinstance(back["w"], cp.ndarray) and isinstance(back["n"], np.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(back["w"]), [0.0, 1.0, 2.0])
    optkern.save(tmp_path / "c.npz", w=cp.arange(3.0))  # (optkern.load: plain NumPy, as documented)
    assert isinstance(optkern.load(tmp_path / "c.npz")["w"], np.ndarray)
