"""optkern.torch: a grad or state tensor of its param's size but another shape is refused by name,
before anything is written, on every path of a step (the first, a cached one, one of several
native calls, a low-precision one), as torch.optim's step fails on it. Such a grad gets past
torch's ``.grad`` setter through ``p.grad.data = ...``; such state after ``p.data = ...`` gave a
param a new shape, or a state tensor set by hand. Before, the native calls compared sizes only:
the step went on, pairing the elements in memory order."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402

torch.set_num_threads(1)

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adagrad", dict(lr=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("Adadelta", dict(lr=1.0)),
    ("Adam", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01)),
    ("AdagradNorm", dict(lr=0.1)),
    ("Adam", dict(lr=0.01, master_weights=True)),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
GRAD = r"^param_groups\[0\]\['params'\]\[0\]\.grad: \(2, 2\) torch\.\w+ on cpu does not match its param \(4,\)"


def _params(kw, n=2):
    dtype = torch.bfloat16 if kw.get("master_weights") else torch.float64
    g = torch.Generator().manual_seed(0)
    return [torch.randn(4 + i, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for i in range(n)]


def _grads(ps, k=0):
    g = torch.Generator().manual_seed(10 + k)
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)


def _snapshot(opt, ps):
    out = [p.detach().clone() for p in ps]
    for p in ps:
        out += [v.clone() for v in opt.state.get(p, {}).values() if isinstance(v, torch.Tensor)]
    return out


def _refused(opt, ps, err, match):
    before = _snapshot(opt, ps)
    with pytest.raises(err, match=match):
        opt.step()
    after = _snapshot(opt, ps)
    assert len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after))


def _wrong_shape_grad(p):
    p.grad.data = p.grad.detach().reshape(2, 2).clone()  # (torch's .grad setter would refuse it)


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
@pytest.mark.parametrize("when", ["first-step", "later-step"])
def test_grad_of_another_shape_is_named_and_nothing_written(name, kw, when):
    ps = _params(kw)
    opt = getattr(ot, name)(ps, **kw)
    if when == "later-step":
        _grads(ps)
        opt.step()
    _grads(ps, 1)
    _wrong_shape_grad(ps[0])
    _refused(opt, ps, ValueError, GRAD)


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_grad_of_another_shape_in_a_step_of_several_calls_is_named(name, kw):
    # a float32 param beside the float64 ones: two native calls, checked together before either writes
    ps = _params(kw)
    other = torch.randn(3, dtype=torch.float32, requires_grad=True)
    opt = getattr(ot, name)(ps + [other], **kw)
    for k in range(2):  # (the second step takes the checks' cached path)
        _grads(ps + [other], k)
        opt.step()
    _grads(ps + [other], 2)
    _wrong_shape_grad(ps[0])
    _refused(opt, ps + [other], ValueError, GRAD)


@pytest.mark.parametrize("name, kw", [c for c in CASES[:8] if c != ("SGD", dict(lr=0.1))], ids=IDS[1:8])
@pytest.mark.parametrize("same_memory", [True, False], ids=["viewed", "new-tensor"])
def test_state_of_a_param_given_another_shape_is_named(name, kw, same_memory):
    ps = _params(kw)
    opt = getattr(ot, name)(ps, **kw)
    _grads(ps)
    opt.step()
    p = ps[0]
    p.data = p.data.view(2, 2) if same_memory else p.data.reshape(2, 2).clone()
    _grads(ps, 1)
    with pytest.raises(RuntimeError):  # (torch.optim's step fails on it too)
        torch_ps = [q.detach().clone().requires_grad_() for q in _params(kw)]
        ref = getattr(torch.optim, name)(torch_ps, **kw)
        _grads(torch_ps)
        ref.step()
        torch_ps[0].data = torch_ps[0].data.view(2, 2)
        _grads(torch_ps, 1)
        ref.step()
    _refused(opt, ps, ValueError, r"^state\[param_groups\[0\]\['params'\]\[0\]\]\['\w+'\]: expected shape \(2, 2\)")


@pytest.mark.parametrize("name, kw", [("Adam", dict(lr=0.01)), ("SGD", dict(lr=0.1, momentum=0.9))])
def test_state_tensor_of_another_shape_set_by_hand_is_named(name, kw):
    ps = _params(kw)
    opt = getattr(ot, name)(ps, **kw)
    _grads(ps)
    opt.step()
    key = "exp_avg" if name == "Adam" else "momentum_buffer"
    opt.state[ps[0]][key] = torch.zeros(2, 2, dtype=torch.float64)
    _grads(ps, 1)
    _refused(opt, ps, ValueError, rf"^state\[param_groups\[0\]\['params'\]\[0\]\]\['{key}'\]: expected shape \(4,\)")


def test_plain_sgd_param_given_another_shape_steps_like_torch():
    # no state: the param and its grad of one new shape are stepped as torch steps them
    out = []
    for mod in (torch.optim, ot):
        ps = _params({})
        opt = mod.SGD(ps, lr=0.1)
        _grads(ps)
        opt.step()
        ps[0].data = ps[0].data.view(2, 2)
        _grads(ps, 1)
        opt.step()
        out.append([p.detach().clone() for p in ps])
    assert all(torch.equal(a, b) for a, b in zip(*out))
