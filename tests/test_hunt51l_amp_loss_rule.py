"""Hunt 51l: one rule for ``amp.GradScaler.scale``'s result type (optkern/_amp_loss.py). A Python
number (int, bool, float), which torch's ``scale`` refuses, comes out a Python float: ``scale(3)``
came back np.float32, ``scale(16777217)`` rounded in float32 where ``scale(16777217.0)`` did not,
and ``scale(2**200)`` was inf while ``scale(10**400)`` raised. An array or NumPy scalar keeps
torch's promotion with its 0-d float32 scale (an integer one float32)."""

import math

import numpy as np
import pytest

from optkern import amp

torch = pytest.importorskip("torch")

S = 2.0**16


def _id(v) -> str:
    return repr(v) if abs(v) < 2**64 else f"2**{abs(v).bit_length() - 1}"


@pytest.mark.parametrize("loss", [3, 0, -7, True, False, 16777217, -(2**40) - 3, 2**53 + 1, 2**200, 2**1000], ids=_id)
def test_a_python_int_is_the_python_float_it_converts_to_times_the_scale(loss):
    got = amp.GradScaler(init_scale=S).scale(loss)
    assert type(got) is float
    assert got == float(loss) * S  # (float64: exact for these, no float32 rounding)
    assert got == amp.GradScaler(init_scale=S).scale(float(loss))


def test_an_int_and_the_same_float_give_the_same_bits():
    s = amp.GradScaler(init_scale=3.0)
    assert s.scale(16777217) == s.scale(16777217.0) == 50331651.0  # (float32 made it 50331648)
    assert math.isfinite(s.scale(2**200))  # (was inf: float32's range)


def test_a_python_float_past_range_times_the_scale_is_inf_as_a_float_loss():
    s = amp.GradScaler(init_scale=S)
    assert s.scale(2**1023) == s.scale(float(2**1023)) == math.inf


@pytest.mark.parametrize("loss", [10**400, -(10**400), 2**1024], ids=_id)
def test_a_python_int_beyond_float64_is_a_value_error_naming_the_loss(loss):
    with pytest.raises(ValueError, match=r"^loss: an integer beyond float range"):
        amp.GradScaler().scale(loss)
    with pytest.raises(ValueError, match=r"^loss\[1\]: an integer beyond float range"):
        amp.GradScaler().scale([1, loss])


def test_a_list_of_python_numbers_gives_python_floats():
    got = amp.GradScaler(init_scale=4.0).scale([2, True, 0.5])
    assert got == [8.0, 4.0, 2.0] and all(type(v) is float for v in got)


@pytest.mark.parametrize("n", [0, 1, 7, 1023])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_])
def test_an_integer_array_keeps_torchs_promotion_with_the_float32_scale(n, dtype):
    rng = np.random.default_rng(n)
    if dtype is np.bool_:
        a = rng.integers(0, 2, n).astype(bool)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    got = amp.GradScaler(init_scale=S).scale(a)
    want = torch.amp.GradScaler("cpu", init_scale=S).scale(torch.from_numpy(a.copy())).numpy()
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("loss", [np.int64(3), np.uint64(2**64 - 1), np.bool_(True), np.array(5, np.int16)])
def test_a_numpy_integer_scalar_is_float32_unlike_a_python_int(loss):
    got = amp.GradScaler(init_scale=S).scale(loss)
    assert np.asarray(got).dtype == np.float32
    assert float(got) == float(np.float32(np.float32(loss) * np.float32(S)))
