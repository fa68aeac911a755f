"""Low-precision optimizers check their *state* arrays (master copy, compact moments, 8-bit block
scales) before the first native call of a step writes, as the float32 optimizers do
(``_prechecks._check_state_sizes`` / ``precheck_step_``), and name them ``state[i][name]``.

A step of several native calls (param groups, or bfloat16 and float16 params in one group) used to
step the first group, count its step, and only then have the second call refuse a state array of
the wrong size (a param replaced by one of another size) or one made read-only through
``state_dict()``'s live arrays, naming it by the native call's position (``masters[0]``,
``states[0][0]``, ``scales[0][0]``)."""

import numpy as np
import pytest

from optkern import optim
from optkern.amp import GradScaler

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = ml_dtypes.bfloat16

KWS = [
    dict(master_weights=True),
    dict(master_weights=True, state_dtype="int8"),
    dict(master_weights=True, state_dtype="bfloat16"),
    dict(state_dtype="int8"),
    dict(state_dtype="bfloat16"),
]


def _dtype(kw):
    return BF16 if kw.get("master_weights") else np.float32


def _two_groups(kw, cls=optim.Adam, sizes=(5, 300)):
    dt = _dtype(kw)
    rng = np.random.default_rng(2027)
    ps = [rng.standard_normal(n).astype(np.float32).astype(dt) for n in sizes]
    opt = cls([{"params": [ps[0]]}, {"params": [ps[1]]}], lr=0.1, **kw)
    opt.step([np.ones_like(p) for p in ps])
    return ps, opt


def _snapshot(opt):
    return {
        i: {k: (np.array(v, copy=True) if hasattr(v, "dtype") else v) for k, v in e.items()}
        for i, e in opt.state_dict()["state"].items()
    }


def _assert_unchanged(opt, p0, before_p0, before_state, keys=(0,)):
    np.testing.assert_array_equal(p0.view(np.uint8), before_p0.view(np.uint8))
    now = opt.state_dict()["state"]
    for i in keys:
        for k, v in before_state[i].items():
            got = now[i][k]
            if hasattr(v, "dtype"):
                np.testing.assert_array_equal(np.asarray(got).view(np.uint8), v.view(np.uint8), err_msg=f"{i} {k}")
            else:
                assert got == v, (i, k)


@pytest.mark.parametrize("kw", KWS)
def test_a_param_replaced_by_another_size_in_a_later_group_is_refused_before_any_write(kw):
    ps, opt = _two_groups(kw)
    before_p0, before = ps[0].copy(), _snapshot(opt)
    opt.param_groups[1]["params"][0] = np.zeros(301, _dtype(kw))
    grads = [np.ones(5, _dtype(kw)), np.ones(301, _dtype(kw))]
    with pytest.raises(ValueError, match=r"state\[1\]\['\w+'\]: expected \d+ (elements|block scales)"):
        opt.step(grads)
    _assert_unchanged(opt, ps[0], before_p0, before)


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(master_weights=True), "master_param"),
        (dict(master_weights=True, state_dtype="int8"), "exp_avg"),
        (dict(state_dtype="int8"), "exp_avg_scale"),
        (dict(state_dtype="int8"), "exp_avg_sq"),
    ],
)
def test_a_state_array_made_read_only_in_a_later_group_is_refused_before_any_write(kw, name):
    ps, opt = _two_groups(kw)
    before_p0, before = ps[0].copy(), _snapshot(opt)
    opt.state_dict()["state"][1][name].flags.writeable = False  # (state_dict hands out the live arrays)
    with pytest.raises(ValueError, match=rf"state\[1\]\['{name}'\]: array is read-only"):
        opt.step([np.ones_like(p) for p in ps])
    _assert_unchanged(opt, ps[0], before_p0, before)


def test_grad_scaler_step_refuses_it_too_and_records_nothing():
    kw = dict(master_weights=True, state_dtype="int8")
    ps, opt = _two_groups(kw)
    before_p0, before = ps[0].copy(), _snapshot(opt)
    opt.state_dict()["state"][1]["master_param"].flags.writeable = False
    sc = GradScaler(init_scale=4.0)
    with pytest.raises(ValueError, match=r"state\[1\]\['master_param'\]: array is read-only"):
        sc.step(opt, [np.ones_like(p) for p in ps])
    _assert_unchanged(opt, ps[0], before_p0, before)
    assert not sc._iteration  # (nothing recorded: the refused step changes nothing)


def test_mixed_formats_in_one_group_check_the_second_formats_state_first():
    """bfloat16 and float16 params in one group: one native call per format."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal(6).astype(np.float32).astype(np.float16)
    b = rng.standard_normal(9).astype(np.float32).astype(BF16)
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9, master_weights=True, state_dtype="int8")
    opt.step([np.ones_like(a), np.ones_like(b)])
    before_a, before = a.copy(), _snapshot(opt)
    opt.state_dict()["state"][1]["master_param"].flags.writeable = False
    with pytest.raises(ValueError, match=r"state\[1\]\['master_param'\]: array is read-only"):
        opt.step([np.ones_like(a), np.ones_like(b)])
    _assert_unchanged(opt, a, before_a, before)


def test_adagrad_norm_master_checked_before_any_group_writes():
    ps, opt = _two_groups(dict(master_weights=True), cls=optim.AdagradNorm)
    before_p0, before = ps[0].copy(), _snapshot(opt)
    opt.state_dict()["state"][1]["master_param"].flags.writeable = False
    with pytest.raises(ValueError, match=r"state\[1\]\['master_param'\]: array is read-only"):
        opt.step([np.ones_like(p) for p in ps])
    _assert_unchanged(opt, ps[0], before_p0, before)


@pytest.mark.parametrize(
    "kw,name,match",
    [
        (dict(master_weights=True), "master_param", "array is read-only"),
        (dict(state_dtype="int8"), "exp_avg_scale", "array is read-only"),
        (dict(master_weights=True, state_dtype="int8"), "exp_avg_sq", "array is read-only"),
    ],
)
def test_one_call_steps_name_the_state_entry_too(kw, name, match):
    """A one-group step is one native call (it writes nothing before it refuses): its error names
    the state entry, not the native call's argument (``masters[0]``, ``scales[0][0]``)."""
    dt = _dtype(kw)
    p = np.linspace(-1, 1, 300).astype(np.float32).astype(dt)
    opt = optim.Adam([p], lr=0.1, **kw)
    opt.step([np.ones_like(p)])
    before_p, before = p.copy(), _snapshot(opt)
    opt.state_dict()["state"][0][name].flags.writeable = False
    with pytest.raises(ValueError, match=rf"state\[0\]\['{name}'\]: {match}"):
        opt.step([np.ones_like(p)])
    _assert_unchanged(opt, p, before_p, before)
