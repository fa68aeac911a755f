"""A sparse grad with an index outside its param (``torch.sparse_coo_tensor`` builds one unchecked by
default): NumPy's indexing raised an unnamed IndexError after the dense params and the earlier
sparse ones were written, and read a negative index from the end (``[0, -1]`` stepped ``p[2]``).
torch's SGD drops an index past the end, its Adagrad raises IndexError mid-step, and a negative
index corrupts its heap (not run here): refused by name, before anything is written, as a
ValueError that is also torch's IndexError."""

import warnings

import pytest
import torch

import optkern.torch as ot

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks")


def _unchecked(indices, values, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_coo_tensor(torch.tensor(indices), torch.tensor(values), shape)


@pytest.mark.parametrize("name", ["SGD", "Adagrad"])
@pytest.mark.parametrize(
    "indices, shape, bad",
    [
        ([[0, 3]], (3,), "index 3 is out of bounds for dimension 0 with size 3"),
        ([[0, -1]], (3,), "index -1 is out of bounds for dimension 0 with size 3"),
        ([[0, 1], [2, 0]], (2, 2), "index 2 is out of bounds for dimension 1 with size 2"),
    ],
)
def test_an_out_of_bounds_index_is_refused_by_name_before_anything_is_written(name, indices, shape, bad):
    dense = torch.nn.Parameter(torch.zeros(3))
    first = torch.nn.Parameter(torch.zeros(4))
    p = torch.nn.Parameter(torch.zeros(shape))
    opt = getattr(ot, name)([dense, first, p], lr=0.1)
    dense.grad = torch.ones(3)
    first.grad = _unchecked([[1]], [1.0], (4,))
    p.grad = _unchecked(indices, [1.0] * len(indices[0]), shape)
    for kind in (ValueError, IndexError):  # (ours by the codebase's rule, torch's Adagrad's type)
        with pytest.raises(kind, match=r"param_groups\[0\]\['params'\]\[2\]\.grad: " + bad):
            opt.step()
    for x in (dense, first, p):
        assert not x.detach().any()
    for st in opt.state.values():  # (Adagrad's, made by its constructor as torch's: step 0, sum 0)
        assert not any(v.any() for v in st.values())


def test_torch_adagrad_raises_index_error_for_an_index_past_the_end():
    # (the type matched: torch's own, from its step, after the param before it moved)
    dense, p = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adagrad([dense, p], lr=0.1)
    dense.grad, p.grad = torch.ones(3), _unchecked([[0, 3]], [1.0, 1.0], (3,))
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        opt.step()
    assert dense.detach().any()


@pytest.mark.parametrize("name", ["SGD", "Adagrad"])
def test_in_bounds_indices_still_step_like_torch(name):
    a, b = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(2, 3))
    ta, tb = getattr(torch.optim, name)([a], lr=0.1, foreach=False), getattr(ot, name)([b], lr=0.1)
    for _ in range(3):
        g = _unchecked([[1, 0, 1], [2, 0, 2]], [1.0, -2.0, 3.0], (2, 3))
        a.grad, b.grad = g.clone(), g.clone()
        ta.step()
        tb.step()
    torch.testing.assert_close(b, a, rtol=1e-6, atol=0)
