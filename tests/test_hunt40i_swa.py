"""Hunt 40i: ``AveragedParams.load_state_dict`` refuses an ``n_averaged`` that no ``update`` takes
(2**63 - 1: the next update's weight would count past int64), naming the key, nothing changed --
it was loaded, and the next ``update`` refused it, far from the checkpoint that held it."""

import numpy as np
import pytest

from optkern import swa

INT64_MAX = 2**63 - 1


def _avg():
    a = swa.AveragedParams([np.arange(3, dtype=np.float32)])
    a.update([np.ones(3, np.float32)])
    return a


@pytest.mark.parametrize("n", [INT64_MAX, 2**63, 2**70])
def test_load_refuses_a_count_no_update_takes(n):
    a = _avg()
    sd = a.state_dict()
    sd["n_averaged"] = n
    sd["averages"] = [np.full(3, 7.0, np.float32)]
    with pytest.raises(ValueError, match=rf"^state_dict\['n_averaged'\]: must be <= {INT64_MAX - 1}, got {n}$"):
        a.load_state_dict(sd)
    assert a.n_averaged == 1 and np.array_equal(a.averages[0], np.ones(3, np.float32))


def test_the_largest_loadable_count_updates():
    a = _avg()
    sd = a.state_dict()
    sd["n_averaged"] = INT64_MAX - 1
    a.load_state_dict(sd)
    a.update([np.ones(3, np.float32)])  # (its weight 1 / 2**63: taken)
    assert a.n_averaged == INT64_MAX
