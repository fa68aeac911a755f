"""Hunt 53d: optkern.torch's clip_grad_norm_ / get_total_norm with ``norm_type=inf`` and an empty
(0-element) grad, against torch.nn.utils's.

The max of no elements has no identity: torch's ``_foreach_norm`` (``linalg.vector_norm`` with
``foreach=False``) raises RuntimeError for an empty tensor whatever the others hold, and so does
its clipping. optkern's kernels took it as 0: a lone empty grad returned 0, beside others it
clipped them by their norm. Now torch's RuntimeError (its words, naming the tensor) before
anything is written; every other corner (no grads at all, None grads, a single tensor, a
generator, the other orders of an empty grad) was already torch's and is compared here too.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402

ORDERS = [math.inf, "inf", 2.0, 1.0, 3.0]


def params(kind: str, dtype) -> list:
    gen = torch.Generator().manual_seed(0)
    empty = torch.zeros(0, 3, dtype=dtype, requires_grad=True)
    empty.grad = torch.zeros(0, 3, dtype=dtype)
    full = torch.zeros(7, dtype=dtype, requires_grad=True)
    full.grad = torch.randn(7, generator=gen, dtype=dtype) * 3
    bare = torch.zeros(5, dtype=dtype, requires_grad=True)  # (no grad)
    return {"empty": [empty], "empty+full": [bare, full, empty], "none": [bare], "list": []}[kind]


def outcome(fn, ps, **kw):
    try:
        r = fn(ps, **kw)
    except RuntimeError as e:
        return "RuntimeError", "empty tensor" in str(e)
    # (optkern sums in float64: a float32 norm of order 3 an ulp or so from torch's)
    return r.dtype, round(float(r), 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("foreach", [None, True, False])
@pytest.mark.parametrize("norm_type", ORDERS)
@pytest.mark.parametrize("kind", ["empty", "empty+full", "none", "list"])
def test_clip_grad_norm_as_torch(kind, norm_type, foreach, dtype):
    for error_if_nonfinite in (False, True):
        kw = dict(max_norm=1.0, norm_type=norm_type, foreach=foreach, error_if_nonfinite=error_if_nonfinite)
        ours, theirs = params(kind, dtype), params(kind, dtype)
        got = outcome(ot.clip_grad_norm_, ours, **kw)
        assert got == outcome(torch.nn.utils.clip_grad_norm_, theirs, **kw)
        for p, q in zip(ours, theirs):  # (refused: nothing written; else clipped alike)
            assert (p.grad is None) == (q.grad is None)
            if p.grad is not None:
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=0)
        if got[0] == "RuntimeError":  # named, nothing written
            with pytest.raises(RuntimeError, match=r"^parameters\[\d\]\.grad: .*empty tensor"):
                ot.clip_grad_norm_(ours, **kw)
            assert all(torch.equal(p.grad, q.grad) for p, q in zip(ours, params(kind, dtype)) if p.grad is not None)


@pytest.mark.parametrize("foreach", [None, False])
@pytest.mark.parametrize("norm_type", ORDERS)
def test_get_total_norm_as_torch(norm_type, foreach):
    for make in (lambda: [torch.zeros(0)], lambda: [torch.ones(3), torch.zeros(2, 0)], lambda: torch.zeros(0)):
        got = outcome(ot.get_total_norm, make(), norm_type=norm_type, foreach=foreach)
        assert got == outcome(torch.nn.utils.get_total_norm, make(), norm_type=norm_type, foreach=foreach)
    if got[0] == "RuntimeError":
        with pytest.raises(RuntimeError, match=r"^tensors\[0\]: "):
            ot.get_total_norm(torch.zeros(0), norm_type, foreach=foreach)


def test_a_single_tensor_and_a_generator_as_torch():
    for fn in (ot.clip_grad_norm_, torch.nn.utils.clip_grad_norm_):
        p = torch.zeros(0, requires_grad=True)
        p.grad = torch.zeros(0)
        with pytest.raises(RuntimeError, match="empty tensor"):
            fn(p, 1.0, math.inf)
        with pytest.raises(RuntimeError, match="empty tensor"):
            fn((q for q in [p]), 1.0, math.inf)
        assert float(fn(p, 1.0, 2.0)) == 0.0
