"""A seed (or offset) of the wrong type is refused naming the type the caller passed (55th hunt, c).

``optkern.random``'s generators and ``norm.dropout`` view their foreign array arguments (torch
tensors, DLPack exporters) as NumPy / CuPy arrays before they run: a torch tensor given as ``seed``
was viewed too and refused as "seed: expected an integer, got ndarray" -- a type the caller never
passed. The parameters annotated ``int`` are now left as given (``_backend.on_array_device``)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian, nn, norm
from optkern import random as okr

torch = pytest.importorskip("torch")

_m = nn.MLP([5, 7, 3])
_op = hessian.from_mlp(_m, _m.init_params(0), np.ones((4, 5), np.float32), np.array([0, 1, 2, 0]))

TAKERS = {
    "uniform": lambda s: okr.uniform(3, seed=s),
    "uniform (positional)": lambda s: okr.uniform(3, s),
    "rademacher": lambda s: okr.rademacher(7, s, dtype=np.float64),
    "dropout (torch x)": lambda s: norm.dropout(torch.ones(4), 0.5, s),
    "dropout (numpy x)": lambda s: norm.dropout(np.ones(4, np.float32), 0.5, seed=s),
    "dropout_backward": lambda s: norm.dropout_backward(torch.ones(4), 0.5, s),
    "top_eigenvalues": lambda s: hessian.top_eigenvalues(_op, seed=s),
    "init_params": lambda s: _m.init_params(s),
}


@pytest.mark.parametrize("seed", [torch.tensor(3), torch.tensor([3]), torch.tensor(3.0)], ids=["0-d", "1-d", "float"])
@pytest.mark.parametrize("take", TAKERS.values(), ids=TAKERS.keys())
def test_a_tensor_seed_is_refused_as_a_tensor(take, seed):
    with pytest.raises(TypeError, match=r"^seed: expected an integer, got Tensor$"):
        take(seed)


@pytest.mark.parametrize("seed, name", [(np.array(3), "ndarray"), (3.0, "float"), ("3", "str"), (None, "NoneType")])
def test_other_seeds_are_refused_by_their_own_type(seed, name):
    for take in (TAKERS["uniform"], TAKERS["dropout (torch x)"]):
        with pytest.raises(TypeError, match=rf"^seed: expected an integer, got {name}$"):
            take(seed)


def test_a_tensor_offset_is_refused_as_a_tensor():
    with pytest.raises(TypeError, match=r"^offset: expected an integer, got Tensor$"):
        okr.uniform(3, 1, offset=torch.tensor(2))
    with pytest.raises(TypeError, match=r"^offset: expected an integer, got Tensor$"):
        norm.dropout(torch.ones(4), 0.5, 1, offset=torch.tensor(2))


def test_integer_seeds_with_tensor_arrays_are_taken_as_before():
    x = torch.arange(1.0, 10.0)
    got = norm.dropout(x, 0.5, 7, offset=np.uint64(3))
    want = norm.dropout(x.numpy(), 0.5, 7, offset=3)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert okr.uniform(5, np.int64(9)).tolist() == okr.uniform(5, 9).tolist()
