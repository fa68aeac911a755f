"""Hunt 43f: ``lowp.from_half`` names its own argument when its native call refuses the array.

``from_half(h)`` hands ``h`` (made C-contiguous) to the native ``lowp_from_half(x, out, dtype)``,
whose refusal of a misaligned array (a float16 array read from a byte buffer at an odd offset)
named ``x``: no argument of ``from_half``. ``to_half(x)`` names its ``x`` for the same array."""

import numpy as np
import pytest

from optkern import lowp


def _misaligned(dtype, n=10):
    buf = bytearray(np.dtype(dtype).itemsize * n + 1)
    a = np.frombuffer(buf, dtype=dtype, count=n, offset=1)
    assert not a.flags.aligned
    return a


@pytest.mark.parametrize("dtype,fmt", [(np.float16, None), (np.uint16, "bfloat16"), (np.uint16, "float16")])
def test_from_half_names_h_for_a_misaligned_array(dtype, fmt):
    with pytest.raises(ValueError, match=r"^h: array data is misaligned"):
        lowp.from_half(_misaligned(dtype), fmt)


def test_to_half_names_x_for_a_misaligned_array():
    with pytest.raises(ValueError, match=r"^x: array data is misaligned"):
        lowp.to_half(_misaligned(np.float32))


def test_a_strided_misaligned_array_still_converts():
    h = _misaligned(np.float16, 20)
    h[...] = np.arange(20, dtype=np.float16)  # (a bytearray's frombuffer view is writable)
    # (not contiguous: converted through an aligned C-order copy, as before)
    np.testing.assert_array_equal(lowp.from_half(h[::2]), np.arange(0, 20, 2, dtype=np.float32))
    np.testing.assert_array_equal(lowp.from_half(h.copy()), np.arange(20, dtype=np.float32))


def test_swalp_step_names_the_misaligned_grad_and_changes_nothing():
    from optkern.swalp import SWALP

    ps = [np.linspace(-1, 1, 7, dtype=np.float32), np.linspace(-2, 2, 10, dtype=np.float32)]
    opt = SWALP(ps, lr=0.1, momentum=0.9)
    before = [p.copy() for p in ps]
    with pytest.raises(ValueError, match=r"^grads\[1\]: array data is misaligned"):
        opt.step([np.ones(7, np.float32), _misaligned(np.float32)])
    assert opt.t == 0 and all(np.array_equal(p, b) for p, b in zip(ps, before))
    g = _misaligned(np.float32, 20)
    opt.step([np.ones(7, np.float32), g[::2]])  # (strided: quantized from an aligned copy, as before)
    assert opt.t == 1


def test_adagrad_norm_master_weights_names_the_misaligned_grad():
    """AdaGrad-Norm's low-precision step widens each half grad in its own native call: the whole-step
    check passed a misaligned grad (the Python check it falls back to tested no alignment), and the
    widening refused it as "x"."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from optkern import optim

    bf16 = np.dtype(ml_dtypes.bfloat16)
    ps = [np.ones(10, bf16), np.ones(5, bf16)]
    opt = optim.AdagradNorm(ps, lr=0.1, master_weights=True)
    opt.step([np.ones(10, bf16), np.ones(5, bf16)])
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"^grads\[1\]: array data is misaligned"):
        opt.step([np.ones(10, bf16), _misaligned(bf16, 5)])
    after = opt.state_dict()
    assert after["state"][0]["step"] == before["state"][0]["step"] == 1
    assert after["state"][0]["b_sq"] == before["state"][0]["b_sq"]


def _refused_before_writing(name, groups, swap, match):
    """A bf16 param with master weights swapped in after one step (``swap(opt, bf16)``) is refused with
    ``match`` before anything is written: the first param, the state and the step count unchanged."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from optkern import optim

    bf16 = np.dtype(ml_dtypes.bfloat16)
    ps = [np.ones(10, bf16), np.ones(5, bf16)]
    spec = ps if not groups else [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.2}]
    opt = getattr(optim, name)(spec, lr=0.1, master_weights=True)
    grads = [np.ones(10, bf16), np.ones(5, bf16)]
    opt.step(grads)
    before = {k: np.copy(v) for k, v in opt.state_dict()["state"][0].items()}
    p0 = ps[0].copy()
    swap(opt, bf16)
    with pytest.raises(ValueError, match=match):
        opt.step(grads)
    after = opt.state_dict()["state"][0]
    assert all(np.array_equal(after[k], v) for k, v in before.items())
    assert np.array_equal(ps[0].view(np.uint16), p0.view(np.uint16))


#: a param put in place named where it was put (hunt 50b; its flat place, "params[1]", before)
_PUT = r"^param_groups\[{}\]\['params'\]\[{}\]: "


def _put_misaligned(group, index):
    def swap(opt, bf16):
        q = _misaligned(bf16, 5)
        q[...] = 1
        opt.param_groups[group]["params"][index] = q

    return swap


def test_adagrad_norm_master_weights_refuses_a_misaligned_param_before_it_writes():
    """A half param replaced between steps by a misaligned one: AdaGrad-Norm's low-precision step
    (several native calls) stepped the masters, b^2 and the other params, then the rounding into
    that param refused it as "out", its step not counted. Now refused first, naming it."""
    _refused_before_writing("AdagradNorm", False, _put_misaligned(0, 1), _PUT.format(0, 1) + "array data is misaligned")


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_a_misaligned_param_in_a_later_group_is_refused_before_the_first_group_steps(name):
    _refused_before_writing(name, True, _put_misaligned(1, 0), _PUT.format(1, 0) + "array data is misaligned")


@pytest.mark.parametrize("name", ["Adam", "AdagradNorm"])
def test_a_strided_param_in_a_later_group_is_refused_before_the_first_group_steps(name):
    def swap(opt, bf16):
        opt.param_groups[1]["params"][0] = np.ones(10, bf16)[::2]

    _refused_before_writing(name, True, swap, _PUT.format(1, 0) + "array must be C-contiguous")
