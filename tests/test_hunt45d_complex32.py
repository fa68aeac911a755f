"""torch complex32 (``torch.chalf``) tensors in checkpoints (``optkern.save``, ``save_state``).

They were refused ("Got unsupported ScalarType ComplexHalf"), and with them the whole state dict of a
model holding one, which ``torch.save`` takes. A demanding user expects the round trip: they are now
saved as their bits (as bfloat16 and float8_* are) and come back bit for bit as complex32 tensors
(``load_state``, a torch module target); ``optkern.load``'s plain data, NumPy having no complex32,
holds them as complex64 (the same values). A file of the encoder before the codec with one
(``tests/data/early_stopping_chalf_v0.npz``, written by that code) still loads.

torch's packed ``float4_e2m1fn_x2`` (a type ml_dtypes lacks): ``optkern.save`` wrote it, and
``optkern.load`` refused the whole file ("damaged checkpoint (TypeError: unknown dtype
'float4_e2m1fn_x2' ...)"), every entry lost, the tensor's own module target too. Its plain data is now
its bits (as any tagged type without ml_dtypes), and a torch target gets the tensor back."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest

import optkern
from optkern.regularize import load_state, save_state

torch = pytest.importorskip("torch")

DATA = pathlib.Path(__file__).parent / "data"


def _chalf(values) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ("ComplexHalf support is experimental")
        return torch.tensor(values, dtype=torch.complex64).to(torch.chalf)


def _bits(t) -> list:
    return t.contiguous().view(torch.int32).tolist()


VALUES = [1 + 2j, -0.5 - 3j, complex(float("nan"), -0.0), complex(-0.0, float("inf")), 6e-8 + 65504j]


def test_save_state_round_trips_complex32_bit_for_bit(tmp_path):
    c = _chalf(VALUES)
    strided = _chalf(VALUES[:4]).reshape(2, 2).t()
    state = {"c": c, "strided": strided, "conj": c.conj(), "empty": _chalf([]).reshape(0, 3)}
    save_state(tmp_path / "s.npz", state)
    back = load_state(tmp_path / "s.npz")
    for k, t in state.items():
        assert back[k].dtype == torch.complex32 and back[k].shape == t.shape, k
        assert _bits(back[k]) == _bits(t.resolve_conj()), k


def test_optkern_save_round_trips_complex32(tmp_path):
    c = _chalf(VALUES)
    optkern.save(tmp_path / "c.npz", c=c)
    a = optkern.load(tmp_path / "c.npz")["c"]
    assert a.dtype == np.complex64
    np.testing.assert_array_equal(a, c.to(torch.complex64).numpy())
    assert np.signbit(a.imag[2]) and np.signbit(a.real[3])  # (-0.0 kept)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ("Complex modules are a new feature")
        model, other = torch.nn.Linear(3, 2).to(torch.chalf), torch.nn.Linear(3, 2).to(torch.chalf)
    optkern.save(tmp_path / "m.npz", m=model)
    optkern.load(tmp_path / "m.npz", m=other)
    assert _bits(other.weight.detach()) == _bits(model.weight.detach())


def test_an_old_file_with_complex32_still_loads():
    back = load_state(DATA / "early_stopping_chalf_v0.npz")
    assert back["c"].dtype == torch.complex32
    assert back["c"].to(torch.complex64).tolist() == [1 + 2j, -0.5 - 3j, 0.25j]
    assert back["w"].tolist() == [0.0, 1.0, 2.0]


def test_a_float4_x2_tensor_does_not_make_the_file_unreadable(tmp_path):
    fp4 = getattr(torch, "float4_e2m1fn_x2", None)
    if fp4 is None:
        pytest.skip("this torch has no float4_e2m1fn_x2")
    t = torch.tensor([56, 192, 48, 76], dtype=torch.uint8).view(fp4)
    module = torch.nn.Module()
    module.register_buffer("t", t.clone())
    optkern.save(tmp_path / "c.npz", m=module, t=t, w=np.ones(2))
    back = optkern.load(tmp_path / "c.npz")
    assert back["t"].dtype == np.uint8 and back["t"].tolist() == [56, 192, 48, 76]
    assert back["w"].tolist() == [1.0, 1.0]
    other = torch.nn.Module()
    other.register_buffer("t", torch.zeros_like(t))
    optkern.load(tmp_path / "c.npz", m=other)
    assert other.t.dtype == fp4 and other.t.view(torch.uint8).tolist() == [56, 192, 48, 76]
