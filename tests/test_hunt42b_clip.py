"""optkern.clip (defect hunt 42b).

Defect fixed: ``clip_grad_norm_(..., comm=...)`` of an order p other than 1, 2 and inf (up to 6)
whose norm was infinite (an inf gradient, legitimate input without ``error_if_nonfinite``) took
the root of the ranks' sum as ``t + t * (ql * ln s)`` on every value, the infinite one too: inf * 0
warned "invalid value encountered in multiply" (an error under pytest's warnings filter, a
FloatingPointError under ``np.errstate(all="raise")``) before ``where`` dropped it. Now NumPy's
IEEE flags are off in that arithmetic (see below); the result is the one without ``comm``.

Defect fixed: a norm of order p > 6 (``clip_grad_norm_``, ``get_total_norm``; with ``comm`` any p
but 1, 2 and inf) under the caller's ``np.errstate(all="raise")`` raised FloatingPointError
("underflow encountered in power"): its terms ``(|g| / max |g|)^p`` underflow to 0 by design for
every gradient far below the largest (1e-3 of it at p = 100). And where the largest |g| is inf,
the sum it replaces overflowed for large finite gradients: a RuntimeWarning "overflow encountered
in power" under NumPy's defaults (an error under pytest's filter). The caller's setting must not
turn the IEEE results of optkern's own arithmetic into errors or warnings; those steps ignore them.

Defect fixed: ``clip_grads_with_norm_`` refused a bfloat16 ``total_norm`` array ("total_norm:
expected a floating dtype, got bfloat16": ml_dtypes' bfloat16 is no NumPy floating kind), where a
float16 one was taken: the norm of bfloat16 grads kept in their own dtype (as torch's
``get_total_norm`` returns it) could not clip them. Now it is read as any float array is (exactly,
into float64), and the grads are clipped as by the same norm given as a float.
"""

import numpy as np
import pytest

from optkern import clip

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("grad_dtype", [np.dtype(np.float32), np.dtype(np.float64), BF16, np.dtype(np.float16)])
@pytest.mark.parametrize("norm", [5.0, 0.375, 1e30, float("inf")])
def test_a_bfloat16_total_norm_clips_as_torch_clips_by_it(grad_dtype, norm):
    # (the factor is computed in bfloat16, as torch computes it in the norm tensor's dtype: hunt 43d,
    # tests/test_hunt43d_clip_norm_dtype.py; a float norm is the grads' dtype's)
    torch = pytest.importorskip("torch")
    from torch.nn.utils.clip_grad import _clip_grads_with_norm_

    rng = np.random.default_rng(42)
    g = (rng.standard_normal(37) * 3).astype(grad_dtype)
    total = np.array([norm], BF16)
    tdt = {BF16: torch.bfloat16}.get(grad_dtype) or getattr(torch, grad_dtype.name)
    p = torch.nn.Parameter(torch.zeros(37, dtype=tdt))
    p.grad = torch.from_numpy(g.astype(np.float64)).to(tdt)  # (exact: g holds tdt's values)
    _clip_grads_with_norm_([p], 1.0, torch.tensor(float(total[0]), dtype=torch.bfloat16))
    clip.clip_grads_with_norm_([g], 1.0, total)
    np.testing.assert_array_equal(g.astype(np.float64), p.grad.double().numpy())


def test_a_negative_bfloat16_total_norm_is_refused_by_name():
    g = np.ones(3, BF16)
    with pytest.raises(ValueError, match="^total_norm: must be >= 0"):
        clip.clip_grads_with_norm_([g], 1.0, np.array([-2.0], BF16))
    np.testing.assert_array_equal(g, np.ones(3, BF16))


def test_an_integer_total_norm_array_is_still_refused():
    with pytest.raises(TypeError, match="^total_norm: expected a floating dtype, got int64"):
        clip.clip_grads_with_norm_([np.ones(3, np.float32)], 1.0, np.array([2], np.int64))


@pytest.mark.parametrize("p", [1.5, 3.0, 4.0])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_distributed_norm_of_a_nonfinite_grad_warns_nothing(p, bad):
    pytest.importorskip("mpi4py")
    from optkern.distributed import Communicator

    comm = Communicator(backend="mpi")
    g = np.array([1.0, bad, 2.0], np.float32)
    alone, together = g.copy(), g.copy()
    want = clip.clip_grad_norm_([alone], 1.0, p)
    with np.errstate(all="raise"):  # (and pytest's filter: a warning is an error)
        got = clip.clip_grad_norm_([together], 1.0, p, comm=comm)
    assert got == want or (np.isnan(got) and np.isnan(want))
    np.testing.assert_array_equal(together, alone)


def _comms():
    yield None
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return
    from optkern.distributed import Communicator

    yield Communicator(backend="mpi")


@pytest.mark.parametrize("p", [3.0, 7.0, 100.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norms_under_the_caller_s_errstate_raise(p, dtype):
    g = np.array([1.0, 1e-30, 0.0, -2e-20, 3.0], dtype)  # (terms far below the largest underflow)
    want = clip.get_total_norm([g.copy()], p)
    clipped = g.copy()
    want_norm = clip.clip_grad_norm_([clipped], 0.5, p)
    for comm in _comms():
        if comm is None:
            with np.errstate(all="raise"):
                assert clip.get_total_norm([g.copy()], p) == want
        h = g.copy()
        with np.errstate(all="raise"):
            assert clip.clip_grad_norm_([h], 0.5, p, comm=comm) == want_norm
        np.testing.assert_array_equal(h, clipped)


@pytest.mark.parametrize("p", [7.0, 100.0])
def test_a_large_gradient_beside_an_inf_warns_nothing(p):
    # (max |g| = inf: the norm is inf; the scaled sum of 1e30 ** p beside it overflowed, warning)
    g = np.array([1e30, np.inf, -1e30], np.float32)
    for comm in _comms():
        h = g.copy()
        assert clip.clip_grad_norm_([h], 1.0, p, comm=comm) == np.inf
        np.testing.assert_array_equal(h, np.array([0.0, np.nan, -0.0], np.float32))  # (torch's g * 0)
