"""Standardizing a data file's features against an exact reference: integer columns near 2**63
(which float64 could not tell apart), float columns with a large offset and a spread of a few ulps,
columns near float64's overflow, constant columns; NaN / Inf and bool columns refused by name."""

from __future__ import annotations

import decimal
from fractions import Fraction

import numpy as np
import pytest

from optkern.datasets import DataError, load_file
from optkern.datasets._scaling import _standardized

_EPS = np.finfo(np.float64).eps


def _reference(column, rows, part) -> np.ndarray:
    """``column[part]`` standardized by ``column[rows]``'s exact mean and (population) standard
    deviation: Python ints / Fractions, the square root in 60-digit decimal, one final rounding."""
    exact = [Fraction(int(v)) if column.dtype.kind in "iu" else Fraction(float(v)) for v in column.tolist()]
    train = [exact[i] for i in rows]
    mu = sum(train, Fraction(0)) / len(train)
    var = sum(((v - mu) ** 2 for v in train), Fraction(0)) / len(train)
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        sd = (decimal.Decimal(var.numerator) / decimal.Decimal(var.denominator)).sqrt()
        out = []
        for i in part:
            c = exact[i] - mu
            out.append(float(decimal.Decimal(c.numerator) / decimal.Decimal(c.denominator) / sd))
    return np.array(out)


def _check(column: np.ndarray, rows, part) -> None:
    (z,) = _standardized(column[:, None], rows, (part,), np.float64, "t")
    ref = _reference(column, rows, part)
    np.testing.assert_allclose(z[:, 0], ref, rtol=8 * _EPS, atol=8 * _EPS)


_N = 40
_ALL = np.arange(_N)
_COLUMNS = {
    "uint64 2**63 + k": np.array([2**63 + k for k in range(_N)], dtype=np.uint64),
    "uint64 near 2**64": np.array([2**64 - 1 - 3 * k for k in range(_N)], dtype=np.uint64),
    "int64 2**62 + k": np.array([2**62 + k for k in range(_N)], dtype=np.int64),
    "int64 -2**63 + k**2": np.array([-(2**63) + k * k for k in range(_N)], dtype=np.int64),
    "int64 both ends": np.array([-(2**63), 2**63 - 1] * (_N // 2), dtype=np.int64),
    "int64 -2**63, +k": np.array([-(2**63)] + list(range(1, _N)), dtype=np.int64),
    "float 1 + k ulp": 1.0 + np.arange(_N) * 2.0**-52,
    "float 1e300 (1 + k ulp)": 1e300 * (1.0 + np.arange(_N) * 2.0**-52),
    "float -3e-300 + k ulp": -3e-300 + np.arange(_N) * np.spacing(3e-300),
    "float +-1e308": np.array([1e308, -1e308, 1.7e308, -3e307] * (_N // 4)),
    "float32 1 + k ulp": (np.float32(1) + np.arange(_N, dtype=np.float32) * np.float32(2.0**-23)),
}


@pytest.mark.parametrize("name", sorted(_COLUMNS))
def test_columns_match_an_exact_reference(name):
    _check(_COLUMNS[name], _ALL, _ALL)


# (not +-1e308: validation values standardized by the other rows' small spread overflow, refused)
@pytest.mark.parametrize("name", sorted(set(_COLUMNS) - {"float +-1e308"}))
def test_validation_rows_match_an_exact_reference(name):
    # split(): the statistics of the training rows only; a validation row may lie below their minimum
    rows, part = _ALL[_N // 4 :], _ALL[: _N // 4]
    _check(_COLUMNS[name], rows, part)


def test_integer_ids_near_2_63_keep_their_information_through_load_file(tmp_path):
    x = np.array([[2**63 + k, k % 7] for k in range(_N)], dtype=np.uint64)
    path = tmp_path / "ids.npz"
    np.savez(path, x=x, y=np.arange(_N) % 2)
    ds = load_file(str(path), dtype=np.float64)
    np.testing.assert_allclose(ds.x[:, 0], _reference(x[:, 0], _ALL, _ALL), rtol=8 * _EPS, atol=8 * _EPS)
    train, val = ds.split(0.25, seed=3)
    assert np.unique(train.x[:, 0]).size == train.x.shape[0]  # (all zeros before)
    assert np.all(np.isfinite(val.x))


@pytest.mark.parametrize("dtype", [np.uint64, np.int64, np.float64])
def test_constant_columns_are_centred_only(dtype):
    column = np.full(_N, 7 if dtype is np.float64 else 2**62 + 5, dtype=dtype)
    column[:3] += 4  # validation rows, off the training rows' one value
    (z,) = _standardized(column[:, None], _ALL[3:], (_ALL,), np.float64, "t")
    assert np.array_equal(z[:, 0], np.where(_ALL < 3, 4.0, 0.0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused(tmp_path, bad):
    x = np.arange(2.0 * _N).reshape(_N, 2)
    x[5, 1] = bad
    path = tmp_path / "bad.npz"
    np.savez(path, x=x, y=np.arange(_N) % 2)
    with pytest.raises(DataError, match="bad.npz: features contain NaN or Inf"):
        load_file(str(path))


def test_bool_features_are_refused_by_name(tmp_path):
    path = tmp_path / "flags.npz"
    np.savez(path, x=np.ones((_N, 2), bool), y=np.arange(_N) % 2)
    with pytest.raises(DataError, match="flags.npz: features must be numeric, got bool"):
        load_file(str(path))


@pytest.mark.parametrize("labels", ["numbers", "words"])
def test_csv_integer_features_past_2_53_are_read_exactly(tmp_path, labels):
    ids = [2**63 - 1000 + 7 * k for k in range(_N)]
    path = tmp_path / "ids.csv"
    names = ["cat", "dog"] if labels == "words" else ["0", "1"]
    rows = [f"{v},{k % 5}.5,{names[k % 2]}" for k, v in enumerate(ids)]
    path.write_text("id,w,label\n" + "\n".join(rows) + "\n")
    ds = load_file(str(path), dtype=np.float64)
    ref = _reference(np.array(ids, dtype=np.int64), _ALL, _ALL)
    np.testing.assert_allclose(ds.x[:, 0], ref, rtol=8 * _EPS, atol=8 * _EPS)  # (all zeros before)
    assert f"CSV column 1 (integers past 2**53) read exactly, less its minimum {min(ids)}" in ds.notes
    np.testing.assert_allclose(ds.x[:, 1], _reference(np.arange(_N) % 5 + 0.5, _ALL, _ALL), rtol=8 * _EPS)


def test_csv_float_features_past_2_53_stay_floats(tmp_path):
    # 1e20 and 2.5e16 are written as floating-point numbers: read as such, no note
    path = tmp_path / "f.csv"
    path.write_text("".join(f"{1e20 + k * 1e6:e},{2.5e16},{k % 2}\n" for k in range(_N)))
    ds = load_file(str(path), dtype=np.float64)
    assert not any("read exactly" in n for n in ds.notes)
    assert np.all(np.isfinite(ds.x)) and np.all(ds.x[:, 1] == 0)
