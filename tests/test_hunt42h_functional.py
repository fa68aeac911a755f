"""optkern.functional with torch tensors passed in iterables that are not lists (a generator, a
map, a dict's values): the tensors written must have their version counters bumped as from a list,
so that a graph saved before the step refuses to differentiate the new values."""

from __future__ import annotations

import pytest

import optkern.functional as F

torch = pytest.importorskip("torch")

ITERABLES = {
    "generator": lambda xs: (x for x in xs),
    "map": lambda xs: map(lambda x: x, xs),
    "dict_values": lambda xs: dict(enumerate(xs)).values(),
}


@pytest.mark.parametrize("kind", sorted(ITERABLES))
def test_params_in_an_iterator_are_versioned(kind):
    q = torch.ones(5, requires_grad=True)
    y = (q * q).sum()  # saves q for its backward
    F.sgd_(ITERABLES[kind]([q]), [torch.ones(5)], lr=1.0)
    assert q.detach().tolist() == [0.0] * 5  # (the step ran)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


@pytest.mark.parametrize("kind", sorted(ITERABLES))
def test_state_in_an_iterator_is_versioned(kind):
    p, m, v = torch.zeros(3), torch.zeros(3), torch.zeros(3)
    before = (m._version, v._version)
    F.adam_([p], [torch.ones(3)], ITERABLES[kind]([m]), exp_avg_sqs=ITERABLES[kind]([v]), step=1)
    assert m._version > before[0] and v._version > before[1]
    assert m.tolist() == pytest.approx([0.1] * 3) and v.tolist() == pytest.approx([0.001] * 3)
