"""A param listed twice in one group is refused saying so: the refusal said it "appears in more
than one parameter group" of an optimizer that has one."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import optim

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("make", [lambda: np.ones(3, np.float32), lambda: torch.ones(3)])
def test_a_param_twice_in_one_group(make):
    p, q = make(), make()
    with pytest.raises(
        ValueError, match=r"^param_groups\[0\]\['params'\]\[2\]: appears twice in the group \(also at \[0\]\)$"
    ):
        optim.SGD([p, q, p], lr=0.1)
    with pytest.raises(
        ValueError, match=r"^param_groups\[1\]\['params'\]\[0\]: appears in more than one parameter group$"
    ):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
