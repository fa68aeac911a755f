"""``MLP``'s attributes that define its flat parameter layout -- ``sizes``, ``norm`` and what the
constructor derives from them, ``layout`` and ``num_params`` -- are read-only: assigned after
construction (``m.norm = "group"``), the next loss failed with a bare KeyError 'group' (or, with
``norm=None`` on a normalized model, read a parameter buffer in another layout silently). Now an
AttributeError naming the attribute; pickles and copies keep their values (56th session's
leftover pass, l)."""

import copy
import pickle

import numpy as np
import pytest

from optkern.nn import MLP


def _model(norm="batch"):
    return MLP([5, 7, 3], activation="tanh", norm=norm)


@pytest.mark.parametrize(
    "name,value",
    [("norm", "group"), ("norm", None), ("norm", "layer"), ("sizes", [5, 9, 3]), ("layout", []), ("num_params", 3)],
)
def test_layout_attributes_read_only(name, value):
    m = _model()
    rng = np.random.default_rng()
    p, x, y = m.init_params(0), rng.standard_normal((7, 5)), rng.integers(0, 3, 7)
    want = m.loss_and_grad(p, x, y)
    before = getattr(m, name)
    with pytest.raises(AttributeError, match=rf"^{name}: .*build a new MLP"):
        setattr(m, name, value)
    assert getattr(m, name) == before
    got = m.loss_and_grad(p, x, y)  # (the model unchanged: the same loss and gradient)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


def test_sizes_in_place_change_does_not_reach_the_model():
    m = _model(None)
    s = m.sizes
    s.append(4)
    assert m.sizes == [5, 7, 3] and m.num_layers == 2


def test_pickle_and_copies_keep_the_layout():
    m = _model("layer")
    for c in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m), copy.copy(m)):
        assert c.sizes == m.sizes and c.norm == "layer" and c.num_params == m.num_params
        assert c.layout == m.layout
        with pytest.raises(AttributeError, match="^norm"):
            c.norm = None


def test_other_attributes_stay_assignable():
    m = _model()
    m.label_smoothing = 0.1  # (not part of the layout: as before)
    assert m.label_smoothing == 0.1
