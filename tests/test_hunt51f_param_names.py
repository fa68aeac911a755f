"""Hunt 51f: a param re-strided or made read-only in place, in an optimizer of several param
groups, is named by its group and place (``param_groups[1]['params'][1]``), as a param replaced in
its group's list is named; the step's checks named it by its index over all groups (``params[2]``),
a list the user never built. One group keeps ``params[i]`` (its list is the one passed). Nothing
is written before the error."""

import warnings

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import optkern.optim as oo

SHAPES = [(6,), (5,), (4, 6)]
LOWP = [{}, {"state_dtype": "int8"}, {"state_dtype": "bfloat16"}]


def _made(kw, cls=oo.Adam):
    rng = np.random.default_rng(5141)
    ps = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    o = cls([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.1}], lr=1e-2, **kw)
    o.step(_grads())
    return ps, o


def _grads():
    return [np.full(s, 0.5, np.float32) for s in SHAPES]


def _restride(p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (NumPy 2.4 deprecates setting strides)
        p.strides = (4, 16)  # (4, 6) of overlapping rows, in place: the same object


def _unchanged(ps, o, before):
    for p, b in zip(ps, before[0]):
        assert np.array_equal(p, b)
    for k, v in o.state_dict()["state"].items():
        for n, a in v.items():
            if isinstance(a, np.ndarray):
                assert np.array_equal(a, before[1][k][n]), (k, n)


def _snapshot(ps, o):
    sd = o.state_dict()["state"]
    return [p.copy() for p in ps], {k: {n: np.copy(a) for n, a in v.items()} for k, v in sd.items()}


@pytest.mark.parametrize("kw", LOWP)
def test_a_param_restrided_in_place_is_named_by_its_group(kw):
    ps, o = _made(kw)
    _restride(ps[2])
    before = _snapshot(ps, o)
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['params'\]\[1\]: array must be C-contiguous"):
        o.step(_grads())
    _unchanged(ps, o, before)


@pytest.mark.parametrize("kw", LOWP)
def test_a_param_made_read_only_is_named_by_its_group(kw):
    ps, o = _made(kw)
    ps[1].flags.writeable = False
    before = _snapshot(ps, o)
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['params'\]\[0\]: array is read-only"):
        o.step(_grads())
    _unchanged(ps, o, before)


@pytest.mark.parametrize("kw", LOWP)
def test_a_param_swapped_for_an_alias_is_named_by_its_group(kw):
    ps, o = _made(kw)
    o.param_groups[1]["params"][0] = ps[2].reshape(-1)[:5]  # (the memory of the group's other param)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[1\] shares memory with param_groups\[1\]"):
        o.step(_grads())


def test_the_same_name_from_a_scaler_check():
    from optkern import amp

    ps, o = _made({})
    _restride(ps[2])
    s = amp.GradScaler()
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[1\]: array must be C-contiguous"):
        s.step(o, _grads())


def test_one_group_keeps_the_index_in_its_list():
    rng = np.random.default_rng(5142)
    ps = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    o = oo.Adam(ps, lr=1e-2)
    _restride(ps[2])
    with pytest.raises(ValueError, match=r"^params\[2\]: array must be C-contiguous"):
        o.step(_grads())


def test_grads_keep_their_index_in_the_flat_list():
    ps, o = _made({})
    g = _grads()
    g[2] = as_strided(g[2], shape=(4, 6), strides=(4, 16))
    with pytest.raises(ValueError, match=r"^grads\[2\]: array must be C-contiguous"):
        o.step(g)
