"""A norm argument that is neither None nor an array -- a list or tuple of arrays, which the shared
backend check takes as a list argument (``running_mean[0]``: a CuPy / NumPy array) -- raised
AttributeError from ``.shape`` / ``.size`` before the type check could name it. The type check is
now the first thing ``_common._shape_of`` does, the one shape check every norm argument goes
through on both backends (the CuPy path runs the same function): TypeError naming the argument,
nothing written (56th session's leftover pass, l)."""

import numpy as np
import pytest

from optkern.norm import functional as F

C = 3


def _bad(kind):
    a = np.zeros(C, np.float32)
    return {"list": [a], "tuple": (a,), "empty": [], "many": [a, a, a]}[kind]


KINDS = ["list", "tuple", "empty", "many"]


def _buffers():
    return np.zeros(C, np.float32), np.ones(C, np.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["running_mean", "running_var"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("fn,flag", [(F.batch_norm, "training"), (F.instance_norm, "use_input_stats")])
def test_running_buffer_not_an_array_named(fn, flag, train, which, kind):
    x = np.random.default_rng().standard_normal((4, C, 7)).astype(np.float32)
    rm, rv = _buffers()
    args = {"running_mean": rm, "running_var": rv, which: _bad(kind)}
    out = np.full_like(x, 7.0)
    with pytest.raises(TypeError, match=rf"^{which}: expected a numpy or cupy array, got {type(args[which]).__name__}"):
        fn(x, **args, **{flag: train}, out=out)
    other = "running_var" if which == "running_mean" else "running_mean"
    np.testing.assert_array_equal(args[other], dict(zip(("running_mean", "running_var"), _buffers()))[other])
    assert (out == 7.0).all()  # (refused before anything was written)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["weight", "bias"])
def test_affine_parameter_not_an_array_named(which, kind):
    x = np.random.default_rng().standard_normal((4, C, 7)).astype(np.float32)
    calls = [
        lambda kw: F.batch_norm(x, **kw),
        lambda kw: F.instance_norm(x, **kw),
        lambda kw: F.group_norm(x, 1, **kw),
        lambda kw: F.layer_norm(x.reshape(4, 21)[:, :C].copy(), (C,), **kw),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=rf"^{which}: expected a numpy or cupy array"):
            call({which: _bad(kind)})
    with pytest.raises(TypeError, match=r"^weight: expected a numpy or cupy array"):
        F.rms_norm(x.reshape(4, 21)[:, :C].copy(), (C,), weight=_bad(kind))


def test_arrays_still_taken():
    # (the check refuses only what is not an array: the valid calls' results, against a float64 reference)
    x = np.random.default_rng().standard_normal((5, C, 7))
    rm, rv = np.zeros(C), np.ones(C)
    y, _ = F.batch_norm(x, np.ones(C), np.zeros(C), rm, rv, training=True, momentum=0.5)
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    np.testing.assert_allclose(y, (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm, 0.5 * mean, rtol=1e-12)
    np.testing.assert_allclose(rv, 0.5 + 0.5 * x.var(axis=(0, 2), ddof=1), rtol=1e-12)
