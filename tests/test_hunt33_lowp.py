"""Session 33's hunt in low precision (optkern.optim's master weights and compact states).

A one-call low-precision step (every param in one group, one half format) is checked by its native
call alone, which names its own arguments: a grad sharing memory with a state array was refused as
``masters[0] shares memory with grads[0]`` / ``states[0][1] shares memory with grads[0]`` --
arguments the caller never passed -- where a step of several calls (and optkern.torch) names the
state entry, ``state[0]['master_param']``. Fixed: the refused call's arrays are checked again by the
step's own full check, which names the entry (``_lowp.LowPrecisionMixin._lowp_update``).
"""

import numpy as np
import pytest

from optkern import optim

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


def _snapshot(opt):
    return {
        (i, k): np.array(v, copy=True)
        for i, e in opt.state_dict()["state"].items()
        for k, v in e.items()
        if isinstance(v, np.ndarray)
    }


@pytest.mark.parametrize(
    "kw,entry,view",
    [
        # the grad of params[0] (10 bfloat16 = 20 bytes) laid over 20 bytes of a state array of params[1]
        (dict(master_weights=True), "master_param", lambda a: a[:5].view(BF16)),
        (dict(master_weights=True, state_dtype="bfloat16"), "exp_avg_sq", lambda a: a[:10].view(BF16)),
        (dict(master_weights=True, state_dtype="int8"), "exp_avg", lambda a: a[:20].view(BF16)),
        (dict(master_weights=True, state_dtype="int8"), "exp_avg_sq_scale", lambda a: a[:5].view(BF16)),
    ],
)
def test_one_call_step_names_the_state_entry_a_grad_shares_memory_with(kw, entry, view):
    rng = np.random.default_rng(3301)
    ps = [
        rng.standard_normal(10).astype(np.float32).astype(BF16),
        rng.standard_normal(4096).astype(np.float32).astype(BF16),
    ]
    opt = optim.Adam(ps, lr=1e-2, **kw)  # one group, one format: one native call per step
    opt.step([np.ones_like(p) for p in ps])
    before_p, before = [p.copy() for p in ps], _snapshot(opt)
    g0 = view(opt.state_dict()["state"][1][entry])  # (the live array)
    assert g0.shape == ps[0].shape and g0.dtype == BF16
    with pytest.raises(ValueError, match=rf"grads\[0\] shares memory with state\[1\]\['{entry}'\]"):
        opt.step([g0, np.ones_like(ps[1])])
    for p, b in zip(ps, before_p):
        np.testing.assert_array_equal(p.view(np.uint16), b.view(np.uint16))
    after = _snapshot(opt)
    assert after.keys() == before.keys()
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)
