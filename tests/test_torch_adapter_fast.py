"""optkern.torch's per-step fast path: what it skips must still be caught or followed.

The adapter reuses checked hyper-parameters and cached views while nothing changed, hands the
CPU grads to the native call as DLPack capsules without checking them in Python, and skips
torch's step wrapper when no hook or profiler needs it. Each test changes one of those things
between steps and compares with torch.optim doing the same, or expects the named error.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch.utils.dlpack import to_dlpack  # noqa: E402

from optkern import _cpu  # noqa: E402

torch.set_num_threads(1)


pytestmark = pytest.mark.usefixtures("float64_default")  # (tests/conftest.py)


def _pair(cls="Adam", n=3, **hp):
    """The same params under torch.optim.<cls> (for-loop) and optkern.torch.<cls>, grads set."""
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(7 + i, generator=g, dtype=torch.float64) for i in range(n)]
    grads = [torch.randn(7 + i, generator=g, dtype=torch.float64) for i in range(n)]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    mine = [torch.nn.Parameter(t.clone()) for t in init]
    for a, b, gr in zip(ref, mine, grads):
        a.grad, b.grad = gr.clone(), gr.clone()
    return ref, getattr(torch.optim, cls)(ref, foreach=False, **hp), mine, getattr(ot, cls)(mine, **hp)


def _same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_allclose(y.detach().numpy(), x.detach().numpy(), rtol=1e-13, atol=1e-300)


def _step_both(ref_opt, opt, times=1):
    for _ in range(times):
        ref_opt.step()
        opt.step()


def test_hyper_parameters_changed_between_steps_are_used():
    ref, ref_opt, mine, opt = _pair("Adam", lr=1e-2)
    _step_both(ref_opt, opt, 2)
    for o in (ref_opt, opt):
        o.param_groups[0]["lr"] = 3e-2  # a new float object
        o.param_groups[0]["betas"] = (0.8, 0.99)
    _step_both(ref_opt, opt, 2)
    _same(ref, mine)
    for o in (ref_opt, opt):
        o.param_groups[0]["weight_decay"] = 0.5
    _step_both(ref_opt, opt)
    _same(ref, mine)


def test_bad_hyper_parameter_set_between_steps_is_named_and_nothing_written():
    _, _, mine, opt = _pair("Adam", lr=1e-2)
    opt.step()
    before = [p.detach().clone() for p in mine]
    state = [opt.state[p]["exp_avg"].clone() for p in mine]
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    opt.param_groups[0]["lr"] = float("nan")
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    for p, b, s in zip(mine, before, state):
        assert torch.equal(p.detach(), b) and torch.equal(opt.state[p]["exp_avg"], s)


@pytest.mark.parametrize(
    "cls, hp", [("Adam", dict(lr=1e-2)), ("NAdam", dict(lr=1e-2)), ("SGD", dict(lr=1e-2, momentum=0.9))]
)
def test_state_dict_of_a_param_replaced_or_deleted_between_steps_is_followed(cls, hp):
    """A param's whole state dict replaced (its moments reset) or deleted (made afresh at the next
    step, as torch does): the cached run layout and views held the old dict."""
    ref, ref_opt, mine, opt = _pair(cls, **hp)
    _step_both(ref_opt, opt, 2)
    for o, ps in ((ref_opt, ref), (opt, mine)):
        o.state[ps[1]] = {k: v.clone() * 0.5 for k, v in o.state[ps[1]].items()}  # step count halved too
    _step_both(ref_opt, opt, 2)
    _same(ref, mine)
    _same_state(ref_opt, ref, opt, mine)
    for o, ps in ((ref_opt, ref), (opt, mine)):
        del o.state[ps[0]]
    _step_both(ref_opt, opt, 2)
    _same(ref, mine)
    _same_state(ref_opt, ref, opt, mine)
    for o, ps in ((ref_opt, ref), (opt, mine)):
        o.state.pop(ps[2])
        o.state.update({ps[1]: {k: v.clone() for k, v in o.state[ps[1]].items()}})
    _step_both(ref_opt, opt, 2)
    _same(ref, mine)
    for o in (ref_opt, opt):
        o.state.clear()
    _step_both(ref_opt, opt, 2)
    _same(ref, mine)
    _same_state(ref_opt, ref, opt, mine)


def _same_state(ref_opt, ref, opt, mine):
    """Every state entry of every param as torch's (Adam's params alone hardly tell a reset: with
    constant grads its step is lr * sign(g) from any state)."""
    for a, b in zip(ref, mine):
        assert set(opt.state[b]) == set(ref_opt.state[a])
        for k, v in ref_opt.state[a].items():
            np.testing.assert_allclose(opt.state[b][k].numpy(), v.numpy(), rtol=1e-13, atol=1e-300, err_msg=k)


def test_users_own_state_dict_changed_later_is_followed():
    """A per-param dict the user made and keeps a reference to: changes to it after it was
    assigned (not seen by the optimizer's change count) are checked every step."""
    ref, ref_opt, mine, opt = _pair("Adam", lr=1e-2)
    _step_both(ref_opt, opt, 2)
    held = []
    for o, ps in ((ref_opt, ref), (opt, mine)):
        d = {k: v.clone() for k, v in o.state[ps[0]].items()}
        o.state[ps[0]] = d
        held.append((d, ps[0]))
    _step_both(ref_opt, opt)
    for d, p in held:
        d["exp_avg_sq"] = torch.full_like(p, 2.0)  # (a new tensor into the user's own dict)
    _step_both(ref_opt, opt, 2)
    _same(ref, mine)
    _same_state(ref_opt, ref, opt, mine)


def test_entry_checks_skipped_only_while_nothing_changed(monkeypatch):
    """The per-entry identity check runs only after a change to some per-param dict (the optimizer
    counts them): none in steady steps, one pass after ``opt.state[p][k] = t``."""
    import optkern.torch._runs as runs

    calls = []
    real = runs._same_entries
    monkeypatch.setattr(runs, "_same_entries", lambda *a: calls.append(1) or real(*a))
    ref, ref_opt, mine, opt = _pair("Adam", lr=1e-2)
    _step_both(ref_opt, opt, 3)
    calls.clear()
    _step_both(ref_opt, opt, 3)
    assert calls == []
    for o, ps in ((ref_opt, ref), (opt, mine)):
        o.state[ps[2]]["exp_avg"] = torch.full_like(ps[2], -0.5)
    _step_both(ref_opt, opt)
    assert calls
    calls.clear()
    _step_both(ref_opt, opt, 2)
    assert calls == []
    for o in (ref_opt, opt):  # (the loaded per-param dicts are the optimizer's own again)
        o.load_state_dict(o.state_dict())
    _step_both(ref_opt, opt)
    calls.clear()
    _step_both(ref_opt, opt, 2)
    assert calls == []
    _same(ref, mine)
    _same_state(ref_opt, ref, opt, mine)


def test_checkpoint_holds_plain_dicts_and_loads_weights_only(tmp_path):
    import io

    ref, ref_opt, mine, opt = _pair("AdamW", lr=1e-2)
    _step_both(ref_opt, opt, 2)
    sd = opt.state_dict()
    assert all(type(e) is dict for e in sd["state"].values())
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    other = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    for a, b in zip(mine, other):
        b.grad = a.grad.clone()
    opt2 = ot.AdamW(other, lr=1e-2)
    opt2.load_state_dict(loaded)
    opt.step()
    opt2.step()
    _same(mine, other)


def test_state_mapping_replaced_is_followed_every_step():
    """``opt.state`` replaced by the user's own mapping: its later changes are followed too."""
    ref, ref_opt, mine, opt = _pair("Adam", lr=1e-2)
    _step_both(ref_opt, opt, 2)
    mappings = []
    for o in (ref_opt, opt):
        o.state = dict(o.state)
        mappings.append(o.state)
    _step_both(ref_opt, opt)
    for m, ps in zip(mappings, (ref, mine)):
        m[ps[0]] = {k: torch.zeros_like(v) for k, v in m[ps[0]].items()}
    _step_both(ref_opt, opt, 2)
    _same(ref, mine)
    _same_state(ref_opt, ref, opt, mine)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("cls", ["Adam", "SGD", "AdagradNorm"])
def test_copied_optimizer_continues_as_the_original(how, cls):
    """``copy.deepcopy`` / pickle of a model with its optimizer (torch's own optimizers allow both):
    the copy steps its own params from its own state, as the original steps its; torch's hooks and
    the caches are not carried."""
    import copy
    import pickle

    hp = dict(lr=1e-2, momentum=0.9) if cls == "SGD" else dict(lr=1e-2)
    _, _, mine, opt = _pair("Adam", **dict(lr=1e-2)) if cls == "AdagradNorm" else _pair(cls, **hp)
    if cls == "AdagradNorm":
        opt = ot.AdagradNorm(mine, **hp)
    opt.step()
    pair = (mine, opt)
    copied = copy.deepcopy(pair) if how == "deepcopy" else pickle.loads(pickle.dumps(pair))
    params2, opt2 = copied
    assert all(a is not b for a, b in zip(mine, params2))
    for a, b in zip(mine, params2):
        b.grad = a.grad.clone()  # (a copied param comes without its grad)
    for _ in range(3):
        opt.step()
        opt2.step()
    for a, b in zip(mine, params2):
        assert torch.equal(a.detach(), b.detach())
        for k, v in opt.state[a].items():
            assert torch.equal(opt2.state[b][k], v), k


def test_copied_low_precision_optimizer_continues_as_the_original():
    import copy

    g = torch.Generator().manual_seed(1)
    mine = [torch.nn.Parameter(torch.randn(700, generator=g).to(torch.bfloat16)) for _ in range(2)]
    for p in mine:
        p.grad = torch.randn(700, generator=g).to(torch.bfloat16)
    opt = ot.Adam(mine, lr=1e-2, master_weights=True, state_dtype="int8", block_size=256)
    opt.step()
    params2, opt2 = copy.deepcopy((mine, opt))
    for a, b in zip(mine, params2):
        b.grad = a.grad.clone()
    for _ in range(3):
        opt.step()
        opt2.step()
    for a, b in zip(mine, params2):
        assert torch.equal(a.detach(), b.detach())
        assert set(opt2.state[b]) == set(opt.state[a])
        for k, v in opt.state[a].items():  # (tensors, and the storage's numbers)
            assert torch.equal(opt2.state[b][k], v) if isinstance(v, torch.Tensor) else opt2.state[b][k] == v, k


def test_state_tensor_replaced_between_steps_is_used():
    ref, ref_opt, mine, opt = _pair("Adam", lr=1e-2)
    _step_both(ref_opt, opt, 2)
    for o, ps in ((ref_opt, ref), (opt, mine)):
        o.state[ps[1]]["exp_avg"] = torch.full_like(ps[1], 0.25)  # new memory, not a copy into the old
        o.state[ps[2]]["exp_avg_sq"] = o.state[ps[2]]["exp_avg_sq"] * 4.0
    _step_both(ref_opt, opt, 2)
    _same(ref, mine)
    for p, q in zip(ref, mine):
        np.testing.assert_allclose(opt.state[q]["exp_avg"].numpy(), ref_opt.state[p]["exp_avg"].numpy(), rtol=1e-13)


@pytest.mark.parametrize("cls", ["Adam", "SGD", "NAdam"])
def test_grads_replaced_by_new_tensors_each_step(cls):
    hp = {"lr": 1e-2, **({"momentum": 0.9} if cls == "SGD" else {})}
    ref, ref_opt, mine, opt = _pair(cls, **hp)
    g = torch.Generator().manual_seed(5)
    for _ in range(4):  # as after zero_grad(set_to_none=True) and backward
        for a, b in zip(ref, mine):
            gr = torch.randn(a.shape, generator=g, dtype=torch.float64)
            a.grad, b.grad = gr.clone(), gr.clone()
        _step_both(ref_opt, opt)
    _same(ref, mine)


def test_grad_that_requires_grad_steps_like_torch():
    ref, ref_opt, mine, opt = _pair("Adam", lr=1e-2)
    for a, b in zip(ref, mine):  # as backward(create_graph=True) leaves them
        a.grad, b.grad = a.grad.clone().requires_grad_(), b.grad.clone().requires_grad_()
    _step_both(ref_opt, opt, 2)
    _same(ref, mine)


def test_non_contiguous_grad_is_named_and_nothing_written():
    _, _, mine, opt = _pair("Adam", lr=1e-2)
    opt.step()
    before = [p.detach().clone() for p in mine]
    mine[1].grad = torch.zeros(2 * mine[1].numel(), dtype=torch.float64)[::2]
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\]\.grad: tensor must be contiguous"):
        opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(mine, before))


def test_sparse_grad_is_named_and_nothing_written():
    # (plain SGD steps sparse grads as torch's does since hunt 47f; with momentum they are refused)
    _, _, mine, opt = _pair("SGD", lr=1e-2, momentum=0.9)
    before = [p.detach().clone() for p in mine]
    mine[2].grad = torch.zeros_like(mine[2]).to_sparse()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[2\]\.grad: sparse"):
        opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(mine, before))


def test_step_hooks_profiler_and_scheduler_as_torch():
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    ref, ref_opt, mine, opt = _pair("Adam", lr=1e-2)
    calls: dict = {"ref": [], "mine": []}
    handles = []
    for key, o in (("ref", ref_opt), ("mine", opt)):
        handles.append(o.register_step_pre_hook(lambda _o, a, k, key=key: calls[key].append("pre")))
        handles.append(o.register_step_post_hook(lambda _o, a, k, key=key: calls[key].append("post")))
    glob = [
        register_optimizer_step_pre_hook(lambda o, a, k: calls["ref" if o is ref_opt else "mine"].append("gpre")),
        register_optimizer_step_post_hook(lambda o, a, k: calls["ref" if o is ref_opt else "mine"].append("gpost")),
    ]
    _step_both(ref_opt, opt)
    assert calls["mine"] == calls["ref"] == ["gpre", "pre", "post", "gpost"]
    for h in handles + glob:
        h.remove()
    _step_both(ref_opt, opt)
    assert calls["mine"] == ["gpre", "pre", "post", "gpost"]
    with torch.profiler.profile() as prof:
        opt.step()
    ref_opt.step()
    assert "Optimizer.step#Adam.step" in [e.name for e in prof.events()]
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, 1, gamma=0.5)
    _step_both(ref_opt, opt)
    sched.step()
    ref_sched.step()
    _step_both(ref_opt, opt)
    assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"] == 5e-3
    _same(ref, mine)


# ---- the native calls' DLPack capsules (read-only lists) ------------------------------------


def _adam_args(n=5, dtype=np.float32):
    rng = np.random.default_rng(3)
    p = [rng.standard_normal(n + i).astype(dtype) for i in range(3)]
    g = [rng.standard_normal(n + i).astype(dtype) for i in range(3)]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    return p, g, m, v


def _adam(p, g, m, v):
    _cpu.adam_(p, g, m, v, None, 1e-2, 0.9, 0.999, 1e-8, 0.0, False, False, False, 1)


def test_capsule_grads_equal_array_grads():
    p, g, m, v = _adam_args()
    p2, m2, v2 = [x.copy() for x in p], [x.copy() for x in m], [x.copy() for x in v]
    _adam(p, g, m, v)
    _adam(p2, [to_dlpack(torch.from_numpy(x)) for x in g], m2, v2)
    for a, b in zip(p + m + v, p2 + m2 + v2):
        np.testing.assert_array_equal(a, b)


def test_capsules_refused_where_written_or_wrong():
    p, g, m, v = _adam_args()
    before = [x.copy() for x in p]
    caps = [to_dlpack(torch.from_numpy(x)) for x in g]
    with pytest.raises(TypeError, match=r"params\[0\]: expected a numpy.ndarray"):
        _adam([to_dlpack(torch.from_numpy(x)) for x in p], g, m, v)
    wrong = caps[:1] + [to_dlpack(torch.from_numpy(g[1].astype(np.float64)))] + caps[2:]
    with pytest.raises(TypeError, match=r"grads\[1\]: expected float32, got DLPack dtype code 2 bits 64"):
        _adam(p, wrong, m, v)
    strided = caps[:2] + [to_dlpack(torch.zeros(2 * g[2].size, dtype=torch.float32)[::2])]
    with pytest.raises(ValueError, match=r"grads\[2\]: array must be C-contiguous"):
        _adam(p, strided, m, v)
    short = caps[:2] + [to_dlpack(torch.zeros(g[2].size - 1, dtype=torch.float32))]
    with pytest.raises(ValueError, match=r"grads\[2\]: expected \d+ elements"):
        _adam(p, short, m, v)
    ints = caps[:1] + [to_dlpack(torch.zeros(g[1].size, dtype=torch.int32))] + caps[2:]
    with pytest.raises(TypeError, match=r"grads\[1\]: expected float32, got DLPack dtype code 0"):
        _adam(p, ints, m, v)
    used = to_dlpack(torch.from_numpy(g[0]))
    np.from_dlpack(_Exported(used))  # consumed: renamed "used_dltensor"
    with pytest.raises(TypeError, match=r"grads\[0\]: expected a numpy.ndarray or an unused DLPack capsule"):
        _adam(p, [used] + caps[1:], m, v)
    overlap = [to_dlpack(torch.from_numpy(p[0]))] + caps[1:]  # a read grad over a written param: fine
    _adam([x.copy() for x in p], overlap, [x.copy() for x in m], [x.copy() for x in v])
    for a, b in zip(p, before):
        np.testing.assert_array_equal(a, b)


class _Exported:
    """An object whose ``__dlpack__`` returns a given capsule (for NumPy to consume it)."""

    def __init__(self, capsule):
        self.capsule = capsule

    def __dlpack__(self, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)


def test_step_runs_with_grad_disabled_and_restores_it(monkeypatch):
    from optkern.torch import _fused

    seen = []
    inner = _fused._Fused._group_step
    monkeypatch.setattr(_fused._Fused, "_group_step", lambda *a: (seen.append(torch.is_grad_enabled()), inner(*a)))
    _, _, mine, opt = _pair("Adam", lr=1e-2)

    def closure():
        seen.append(("closure", torch.is_grad_enabled()))
        return torch.zeros(())

    opt.step(closure)
    assert seen == [("closure", True), False] and torch.is_grad_enabled()
    with torch.no_grad():
        opt.step(closure)
        assert not torch.is_grad_enabled()
    assert seen[2:] == [("closure", True), False]
    mine[0].grad = torch.zeros(1, dtype=torch.float64).expand(mine[0].numel())  # refused: stride 0
    with pytest.raises(ValueError, match="contiguous"):
        opt.step()
    assert torch.is_grad_enabled()  # restored after an error too
