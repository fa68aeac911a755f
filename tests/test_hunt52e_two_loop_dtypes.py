"""``lbfgs_two_loop``'s arrays refused by dtype, by name (hunt 52e).

Its five arrays (``sy``, ``yy``, ``sg``, ``yg``, ``ro``) were ``py::array_t<double, forcecast>``: a bool
array, an int array, a list or True was cast to float64 and the recursion ran on it. Every other
native array argument refuses a wrong dtype with a TypeError naming it (py_arrays.hpp: check_array);
these do too now. Any layout of a float64 array still runs (the Python layer passes views of its
Gram buffers), with the bits of a contiguous copy.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _cpu

NAMES = ("sy", "yy", "sg", "yg", "ro")


def _inputs(k: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    s, y = rng.standard_normal((k, 9)), rng.standard_normal((k, 9))
    y += s  # (s.y > 0: pairs L-BFGS keeps)
    g = rng.standard_normal(9)
    return dict(sy=s @ y.T, yy=y @ y.T, sg=s @ g, yg=y @ g, ro=1.0 / np.einsum("ij,ij->i", s, y))


def _call(kw: dict, k: int):
    return _cpu.lbfgs_two_loop(k, kw["sy"], kw["yy"], kw["sg"], kw["yg"], kw["ro"], 0.5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda a: a.astype(bool), r"expected float64, got bool"),
        (lambda a: a.astype(np.float32), r"expected float64, got float32"),
        (lambda a: a.astype(np.int64), r"expected float64, got int64"),
        (lambda a: a.tolist(), r"expected a numpy\.ndarray, got list"),
        (lambda a: True, r"expected a numpy\.ndarray, got bool"),
    ],
)
def test_a_wrong_dtype_is_refused_by_name(name, make, message):
    kw = _inputs(3)
    kw[name] = make(kw[name])
    with pytest.raises(TypeError, match=rf"^{name}: {message}$"):
        _call(kw, 3)


@pytest.mark.parametrize("k", [1, 2, 7])
def test_any_layout_of_float64_runs_with_the_contiguous_bits(k):
    kw = _inputs(k, seed=k)
    want = _call(kw, k)
    big = {n: np.zeros((2 * k, 2 * k)) for n in ("sy", "yy")}
    strided = dict(kw)
    for n in ("sy", "yy"):
        big[n][:k, :k] = kw[n]
        strided[n] = big[n][:k, :k]  # (the Python layer's views of its grown Gram buffers)
    for n in ("sg", "yg", "ro"):
        buf = np.zeros(2 * k)
        buf[::2] = kw[n]
        strided[n] = buf[::2]
    assert k == 1 or not strided["sy"].flags.c_contiguous
    assert _call(strided, k) == want


def test_sizes_still_checked():
    kw = _inputs(3)
    with pytest.raises(ValueError, match=r"^sy, yy: expected k\*k = 9 elements each$"):
        _call(kw | dict(sy=np.zeros((2, 2))), 3)
    with pytest.raises(ValueError, match=r"^sy, yy: expected k\*k = 4611686014132420609 elements each$"):
        _call(kw, 2**31 - 1)
    with pytest.raises(ValueError, match=r"^sy, yy: expected k\*k = 4294967296\*\*2 elements each$"):
        _call(kw, 2**32)  # (k * k wrapped to 0 past 2**63)
    with pytest.raises(ValueError, match=r"^k: must be >= 0, got -1$"):
        _call(kw, -1)
