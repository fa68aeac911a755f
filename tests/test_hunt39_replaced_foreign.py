"""A param replaced in place in a group's list by a DLPack exporter (a torch tensor, any
``__dlpack__`` object) is taken as ``add_param_group`` takes one: as its zero-copy array view,
stepped in place (the step raised a bare AttributeError: 'X' object has no attribute 'dtype')."""

import numpy as np
import pytest

from optkern.optim import SGD, Adam


class Exporter:
    """A versioned DLPack exporter of a writable NumPy array (not an array itself)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        return self.a.__dlpack__(max_version=max_version, dl_device=dl_device, copy=copy)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


@pytest.mark.parametrize("cls, hp", [(SGD, {"lr": 0.1, "momentum": 0.9}), (SGD, {"lr": 0.1}), (Adam, {"lr": 0.01})])
def test_replaced_by_an_exporter_is_stepped_in_place(cls, hp):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(7), rng.standard_normal(5)
    ref = cls([a.copy(), b.copy()], **hp)
    opt = cls([a, b], **hp)
    g = [rng.standard_normal(7), rng.standard_normal(5)]
    ref.step(g)
    opt.step(g)
    new = b.copy()
    opt.param_groups[0]["params"][1] = Exporter(new)
    ref_b = ref.param_groups[0]["params"][1]
    ref_b[...] = new  # the reference's own param given the same values, its state kept as opt's
    ref.step(g)
    opt.step(g)
    np.testing.assert_array_equal(new, ref_b)  # written through the exporter's memory
    np.testing.assert_array_equal(a, ref.param_groups[0]["params"][0])


def test_replaced_by_a_non_array_is_named():
    opt = SGD([np.zeros(3)], lr=0.1)
    opt.param_groups[0]["params"][0] = object()
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\]"):
        opt.step([np.ones(3)])
