"""Hunt 42x (the 55th's leftovers), item 5: SAM's search for gradients in its params' memory took a
tensor's memory as ``data_ptr() .. data_ptr() + nbytes`` (optkern.torch), true of dense tensors only:
a strided gradient reaching into a param (``base[::2]`` beside the param ``base[20:]``) was missed,
and NumPy's byte spans called an interleaved gradient (``a[1::2]`` beside ``a[::2]``) shared. The
public steps refuse strided params and grads before the search (C-contiguous / dense: optim.SAM
refuses these non-contiguous configurations earlier), so this file is a unit test of the search and
its helpers, not of a reachable SAM step: strided bounds for torch (``_overlap.tensor_span``,
conservative), exact answers for NumPy (``_overlap.exact_for_numpy`` through ``_overlap.shares``, the
package's one bounded ``np.shares_memory`` test)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern._array_checks import byte_span
from optkern.optim._sam_alias import copy_shared

torch = pytest.importorskip("torch")
from optkern._overlap import tensor_span  # noqa: E402
from optkern.torch.sam import _in_params  # noqa: E402


def _spans(ps):
    return [(*byte_span(p), f"p{i}") for i, p in enumerate(ps) if p.nbytes]


def _np_copied(grads, params):
    roots = {id(p.base if p.base is not None else p) for p in params}
    out = copy_shared(grads, params, _spans(params), roots)
    return [i for i, (a, b) in enumerate(zip(grads, out)) if a is not b]


@pytest.mark.parametrize("n", [1, 7, 1023])
def test_tensor_span_bounds_every_element_of_a_strided_tensor(n):
    base = torch.zeros(4 * n + 3)
    item = base.element_size()
    for t in (base[::2][:n], base[1::3][:n], base[: 2 * n].view(2, n).t(), base[:0]):
        lo, hi = tensor_span(t)
        if t.numel() == 0:
            assert lo == hi
            continue
        # every element's address, from the tensor's own index -> offset map (independent of strides' sum)
        offs = torch.as_strided(torch.arange(base.numel()), t.shape, t.stride(), t.storage_offset()).reshape(-1)
        assert lo == base.data_ptr() + int(offs.min()) * item
        assert hi == base.data_ptr() + (int(offs.max()) + 1) * item


def test_torch_finds_a_strided_gradient_reaching_into_a_param():
    base = torch.randn(40)
    w = base[20:]  # (dense param: the second half)
    g = base[::2]  # (its data_ptr + nbytes ends at base[20], but its last element is base[38])
    assert _in_params([w], [g]) == [0]
    assert _in_params([w], [torch.randn(20)]) == []
    assert _in_params([w], [None]) == [] and _in_params([], [g]) == []


def test_torch_takes_an_interleaved_gradient_conservatively():
    base = torch.randn(40)
    assert _in_params([base[::2]], [base[1::2]]) == [0]  # (a bound: copied, never read after the move)


def test_numpy_decides_interleaved_and_strided_gradients_exactly():
    a = np.arange(40, dtype=np.float32)
    assert _np_copied([a[1::2]], [a[::2]]) == []  # (interleaved: no element in common)
    assert _np_copied([a[::2]], [a[::2].copy()]) == []
    assert _np_copied([a[::2]], [a[20:]]) == [0]  # (base[::2] reaches base[38])
    m = np.arange(36, dtype=np.float32).reshape(6, 6)
    assert _np_copied([m.T], [m]) == [0]  # (a transposed view: the same memory)
    assert _np_copied([m[:, ::2]], [m[:, 1::2]]) == []
    assert _np_copied([None, m[:, ::2]], [m[:, 1::2], m[0]]) == [1]


def test_copied_gradients_hold_the_values_they_had():
    a = np.arange(40, dtype=np.float32)
    g = a[::2]
    (out,) = copy_shared([g], [a[20:]], _spans([a[20:]]), {id(a)})
    assert out is not g and not np.shares_memory(out, a)
    np.testing.assert_array_equal(out, np.arange(0, 40, 2, dtype=np.float32))
