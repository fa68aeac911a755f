"""Schedule arguments that are sequences refuse unordered collections.

``sequential({a, b}, [3])`` took a set of schedules and ran them in the set's order (here b
first, then a) without a word; a set of milestones or boundaries passed only when its iteration
order happened to be sorted. A set or a dict (its keys) is refused naming the argument;
generators and arrays, which have an order, are taken.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import schedules as S


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda c: S.sequential(c([S.constant(1.0), S.constant(2.0)]), [3]), "schedules"),
        (lambda c: S.sequential([S.constant(1.0), S.constant(2.0), S.constant(3.0)], c([3, 7])), "boundaries"),
        (lambda c: S.multi_step(1.0, c([2, 5]), 0.1), "milestones"),
        (lambda c: S.batch_size_schedule(32, c([2, 5])), "milestones"),
    ],
    ids=["sequential-schedules", "sequential-boundaries", "multi_step", "batch_size_schedule"],
)
@pytest.mark.parametrize("kind", [set, frozenset, dict.fromkeys], ids=["set", "frozenset", "dict"])
def test_unordered_collections_are_refused_naming_the_argument(call, name, kind):
    with pytest.raises(TypeError, match=f"^{name}: expected a sequence in order"):
        call(kind)


def test_generators_and_arrays_keep_their_order():
    a, b = S.constant(1.0), S.constant(2.0)
    s = S.sequential((x for x in (a, b)), (t for t in [3]))
    assert [s(t) for t in (0, 2, 3, 9)] == [1.0, 1.0, 2.0, 2.0]
    m = S.multi_step(1.0, np.array([2, 5]), 0.5)
    assert [m(t) for t in (1, 2, 5)] == [1.0, 0.5, 0.25]
