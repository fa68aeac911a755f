"""Hunt 51f: ``amp.GradScaler.scale`` of an integer (or bool) loss multiplies in float32, as
torch.amp.GradScaler does (its 0-d float32 scale tensor times an integer tensor is float32): a NumPy
int scalar / array and a NumPy bool came back float64 (NumPy's int times a Python float). (A Python
int's rule: tests/test_hunt51l_amp_loss_rule.py.)"""

import numpy as np
import pytest

from optkern import amp

torch = pytest.importorskip("torch")

SCALES = (2.0**16, 3.0, 2.0**-3)
INTS = [
    np.int64(3),
    np.int32(-7),
    np.uint8(200),
    np.array(5, np.int16),
    np.arange(-3, 4, dtype=np.int64),
    np.array([2**31 + 1, -(2**40) - 3], np.int64),  # (rounded to float32 before the product, as torch's)
    np.zeros(0, np.int32),
    np.array([True, False]),
    np.bool_(True),
]


def _torch_scaled(loss, s):
    t = torch.as_tensor(np.asarray(loss))
    return torch.amp.GradScaler("cpu", init_scale=s).scale(t).numpy()


@pytest.mark.parametrize("s", SCALES)
@pytest.mark.parametrize("loss", INTS, ids=lambda a: f"{type(a).__name__}-{np.asarray(a).dtype}-{np.ndim(a)}d")
def test_an_integer_numpy_loss_is_scaled_in_float32_as_torch(loss, s):
    got = amp.GradScaler(init_scale=s).scale(loss)
    want = _torch_scaled(loss, s)
    assert np.asarray(got).dtype == np.float32 == want.dtype
    assert np.ndim(got) == np.ndim(loss)
    assert isinstance(got, np.ndarray) == isinstance(loss, np.ndarray) or np.ndim(loss) == 0
    np.testing.assert_array_equal(np.asarray(got), want)


def test_float_losses_keep_their_dtype():
    s = amp.GradScaler(init_scale=2.0**16)
    assert s.scale(np.float64(1.5)).dtype == np.float64
    assert s.scale(np.ones(3, np.float32)).dtype == np.float32
    assert type(s.scale(1.5)) is float


def test_an_integer_loss_past_float32_range_is_inf_as_torch():
    # (2**62 * 2**100 is finite in float64: the float64 product hid the float32 overflow torch has)
    got = amp.GradScaler(init_scale=2.0**100).scale(np.array([2**62], np.int64))
    assert got.dtype == np.float32 and np.isinf(got[0])
    assert np.isinf(_torch_scaled(np.array([2**62], np.int64), 2.0**100)[0])


def test_a_list_of_integer_losses_is_each_scaled():
    got = amp.GradScaler(init_scale=4.0).scale([np.int64(2), np.arange(3)])
    assert [g.dtype for g in got] == [np.float32, np.float32]


@pytest.mark.parametrize(
    "loss",
    [np.timedelta64(3, "s"), np.array([1.0], dtype=object), np.array(["1"]), np.array([np.datetime64("2020-01-01")])],
    ids=["timedelta", "object", "str", "datetime"],
)
def test_a_loss_that_is_no_number_is_refused_naming_it(loss):
    # (a timedelta was scaled as a timedelta, an object array as objects; torch has no such tensor)
    with pytest.raises(TypeError, match=r"^loss: expected a number or an array"):
        amp.GradScaler().scale(loss)
    with pytest.raises(TypeError, match=r"^loss\[1\]: expected a number or an array"):
        amp.GradScaler().scale([1.0, loss])


def test_a_python_int_beyond_float_range_is_a_value_error_naming_the_loss():
    # (Python's unnamed OverflowError "int too large to convert to float")
    with pytest.raises(ValueError, match=r"^loss: an integer beyond float range"):
        amp.GradScaler().scale(10**400)
