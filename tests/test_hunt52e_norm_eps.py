"""Norm forwards' ``eps``: finite, and usable in the statistics' dtype, natively too (hunt 52e).

The Python layer refused ``eps=inf`` (and one that overflows or rounds to 0 in float32 statistics,
norm/_common.py: ``_eps``), but the native ``row_norm_forward`` and ``channel_stats`` checked only
``eps > 0``: inf and 1e39 on float32 x ran (rstd 0 in the row kernels, y = bias), and 1e-50 on
float32 x divided a constant row by a zero variance. torch takes eps=inf (y = bias, zero input
gradients) and NaN or a negative eps (NaN outputs): refused here, by name, on both layers, before
anything is written (one native check, norm_layout.hpp: check_norm_eps, for both modules).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optkern import _cpu
from optkern.norm import functional as F

INF, NAN = float("inf"), float("nan")


def _row_call(dtype, eps):
    x = np.random.default_rng(0).standard_normal((3, 7)).astype(dtype)
    st = np.float64 if dtype == np.float64 else np.float32
    out, mean, rstd = np.full((3, 7), -1.0, dtype), np.full(3, -1.0, st), np.full(3, -1.0, st)
    return (x, None, None, out, mean, rstd, 3, 1, 7, 1, eps, False), (out, mean, rstd)


def _channel_call(dtype, eps):
    x = np.random.default_rng(1).standard_normal((2, 3, 5)).astype(dtype)
    st = np.float64 if dtype == np.float64 else np.float32
    mean, rstd, var = (np.full(3, -1.0, st) for _ in range(3))
    return (x, mean, rstd, var, 2, 3, 5, eps), (mean, rstd, var)


@pytest.mark.parametrize("call", [("row_norm_forward", _row_call), ("channel_stats", _channel_call)])
@pytest.mark.parametrize(
    ("dtype", "eps", "message"),
    [
        (np.float64, INF, r"^eps: must be finite, got inf$"),
        (np.float32, INF, r"^eps: must be finite, got inf$"),
        (np.float64, NAN, r"^eps: must be finite, got nan$"),
        (np.float64, -1e-9, r"^eps: must be > 0, got -1e-09$"),
        (
            np.float32,
            1e39,
            r"^eps: 1e\+39 overflows float32 \(the statistics' dtype\); at most 3\.4028234663852886e\+38$",
        ),
        (np.float32, 1e-50, r"^eps: 1e-50 rounds to 0 in float32 \(the statistics' dtype\); the smallest usable value"),
    ],
)
def test_native_eps_is_refused_before_anything_is_written(call, dtype, eps, message):
    name, make = call
    args, written = make(dtype, eps)
    with pytest.raises(ValueError, match=message):
        getattr(_cpu, name)(*args)
    assert all((a == -1.0).all() for a in written)


@pytest.mark.parametrize("call", [("row_norm_forward", _row_call), ("channel_stats", _channel_call)])
def test_native_eps_the_python_layer_takes_still_runs(call):
    name, make = call
    for dtype, eps in ((np.float64, 1e300), (np.float32, 3e38), (np.float32, 2.0**-149), (np.float64, 1e-300)):
        args, written = make(dtype, eps)
        getattr(_cpu, name)(*args)
        assert all(np.isfinite(a).all() for a in written)


FORWARDS = {
    "layer_norm": (
        lambda x, e: F.layer_norm(x, (5,), eps=e),
        lambda t, e: torch.nn.functional.layer_norm(t, (5,), eps=e),
    ),
    "group_norm": (lambda x, e: F.group_norm(x, 3, eps=e), lambda t, e: torch.nn.functional.group_norm(t, 3, eps=e)),
    "instance_norm": (lambda x, e: F.instance_norm(x, eps=e), lambda t, e: torch.nn.functional.instance_norm(t, eps=e)),
    "rms_norm": (lambda x, e: F.rms_norm(x, (5,), eps=e), lambda t, e: torch.nn.functional.rms_norm(t, (5,), eps=e)),
    "batch_norm": (
        lambda x, e: F.batch_norm(x, None, None, training=True, eps=e),
        lambda t, e: torch.nn.functional.batch_norm(t, None, None, training=True, eps=e),
    ),
}


@pytest.mark.parametrize("name", sorted(FORWARDS))
def test_python_forwards_refuse_what_torch_takes_without_normalizing(name):
    """torch runs eps=inf to y = bias (0 here) with zero input gradients; we refuse it by name, as
    the docstring (optkern.norm) says. A finite eps agrees with torch."""
    ours, theirs = FORWARDS[name]
    x = np.random.default_rng(2).standard_normal((4, 3, 5))
    t = torch.tensor(x, requires_grad=True)
    y = theirs(t, INF)
    y.sum().backward()
    assert not y.detach().any() and not t.grad.any()  # (torch: nothing normalized, nothing learned)
    for eps in (INF, NAN, -1.0):
        with pytest.raises(ValueError, match=r"^eps: must be "):
            ours(x, eps)
    np.testing.assert_allclose(ours(x, 1e-3)[0], theirs(torch.tensor(x), 1e-3).numpy(), rtol=1e-10, atol=1e-12)
