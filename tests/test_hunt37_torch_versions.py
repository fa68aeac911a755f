"""optkern.torch's steps bump their params' version counters before the native calls write (while
the params are still in cache; after a large step's memory traffic the bump cost 40-90 us for 200
params) and put them back when the step raises: what autograd sees stays torch's. A step that
raises leaves every version as it was (a graph that saved a param still runs its backward), views
of one tensor (one shared counter) included; a step that completes, or is interrupted by a Ctrl-C
deferred to its end, leaves them bumped; inference tensors (no counter) step inside inference mode.
"""

import signal

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from optkern import _atomic, _cpu  # noqa: E402
from test_torch_autograd_version import _stale_backward_raises  # noqa: E402

# (name, hyper-parameters, the CPU module's kernel its step calls)
CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9), "sgd_"),
    ("Adam", dict(lr=0.1), "adam_"),
    ("AdamW", dict(lr=0.1), "adam_"),
]
IDS = [n for n, _, _ in CASES]


def _failing(monkeypatch, kernel: str, exc: BaseException) -> list:
    """Make the CPU module's ``kernel`` raise ``exc`` without writing; returns the call count."""
    calls = []

    def fail(*args):
        calls.append(1)
        raise exc

    monkeypatch.setattr(_cpu, kernel, fail)
    return calls


def _params(n_groups: int = 1):
    ws = [torch.nn.Parameter(torch.linspace(1.0, 2.0, 5) + k) for k in range(2 * n_groups)]
    for w in ws:
        w.grad = torch.ones_like(w)
    return ws


@pytest.mark.parametrize("name, hp, kernel", CASES, ids=IDS)
@pytest.mark.parametrize("exc", [RuntimeError("native"), MemoryError(), KeyboardInterrupt()], ids=type)
def test_a_step_whose_kernel_raises_leaves_every_version_as_it_was(monkeypatch, name, hp, kernel, exc):
    """The cached path (one native call, no precheck), after two good steps: whatever the kernel
    raises, the versions are exactly those before, and a graph that saved the params still runs."""
    ws = _params()
    opt = getattr(ot, name)(ws, **hp)
    opt.step()
    opt.step()
    y = sum((w * w).sum() for w in ws)
    before = [w._version for w in ws]
    values = [w.detach().clone() for w in ws]
    calls = _failing(monkeypatch, kernel, exc)
    with pytest.raises(type(exc)):
        opt.step()
    assert calls  # (the step reached its kernel: the versions had been bumped)
    assert [w._version for w in ws] == before
    assert all(torch.equal(w.detach(), v) for w, v in zip(ws, values))
    assert not _stale_backward_raises(y)
    monkeypatch.undo()
    y = sum((w * w).sum() for w in ws)
    opt.step()
    assert all(w._version > b for w, b in zip(ws, before))
    assert _stale_backward_raises(y)


@pytest.mark.parametrize("name, hp, kernel", CASES, ids=IDS)
def test_a_step_of_several_groups_that_raises_leaves_every_version_as_it_was(monkeypatch, name, hp, kernel):
    """Two groups (two native calls, prechecked): the first call raises, no group's version moves."""
    ws = _params(2)
    opt = getattr(ot, name)([{"params": ws[:2]}, {"params": ws[2:], "lr": 0.01}], **hp)
    opt.step()
    before = [w._version for w in ws]
    _failing(monkeypatch, kernel, RuntimeError("native"))
    with pytest.raises(RuntimeError, match="native"):
        opt.step()
    assert [w._version for w in ws] == before


@pytest.mark.parametrize("name, hp, kernel", CASES, ids=IDS)
def test_views_of_one_tensor_sharing_a_counter_are_put_back_exactly(monkeypatch, name, hp, kernel):
    """Params that are disjoint views of one tensor share its version counter: the step bumps it
    once per param, and a step that raises puts every counter back to the very version it had
    (three views of one tensor, in between them a param of its own, each at another version)."""
    base = torch.linspace(1.0, 2.0, 12)
    a, b, c = base[:4], base[4:8], base[8:]
    d = torch.ones(3)
    for _ in range(3):
        base.add_(0.0)  # (versions that are not those of fresh tensors: 3 and 1)
    d.add_(0.0)
    for t in (a, b, c, d):
        t.grad = torch.ones_like(t)
    opt = getattr(ot, name)([a, d, b, c], **hp)
    opt.step()
    before = (base._version, a._version, b._version, c._version, d._version)
    assert before[0] == before[1] == before[2] == before[3] != before[4]
    _failing(monkeypatch, kernel, RuntimeError("native"))
    with pytest.raises(RuntimeError, match="native"):
        opt.step()
    assert (base._version, a._version, b._version, c._version, d._version) == before
    monkeypatch.undo()
    opt.step()
    assert base._version > before[0] and d._version > before[4]


@pytest.mark.parametrize("name, hp, kernel", CASES, ids=IDS)
def test_a_refused_grad_leaves_the_versions_as_they_were(name, hp, kernel):
    """A grad the native call refuses (another dtype than its param's, set around torch's setter)
    on the cached path: ValueError naming it, versions unchanged."""
    ws = _params()
    opt = getattr(ot, name)(ws, **hp)
    opt.step()
    opt.step()
    before = [w._version for w in ws]
    ws[1].grad.data = torch.ones(5, dtype=torch.float64)
    with pytest.raises((TypeError, ValueError), match=r"param_groups\[0\]\['params'\]\[1\]"):
        opt.step()
    assert [w._version for w in ws] == before


@pytest.mark.parametrize("name, hp, kernel", CASES, ids=IDS)
def test_a_ctrl_c_deferred_to_the_end_of_a_step_leaves_the_versions_bumped(monkeypatch, name, hp, kernel):
    """A SIGINT during a large step's kernel is raised as the step ends, the step whole: its
    params written, so their versions stay bumped (a graph that saved them refuses its backward)."""
    n = _atomic.DEFER_SIGINT_ELEMENTS
    w = torch.nn.Parameter(torch.ones(n))
    w.grad = torch.ones(n)
    opt = getattr(ot, name)([w], **hp)
    opt.step()
    y = (w * w).sum()
    before = w._version
    real = getattr(_cpu, kernel)

    def interrupted(*args):
        out = real(*args)
        signal.raise_signal(signal.SIGINT)  # (recorded by the step's handler: raised at its end)
        return out

    monkeypatch.setattr(_cpu, kernel, interrupted)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        values = w.detach().clone()
        with pytest.raises(KeyboardInterrupt):
            opt.step()
    finally:
        signal.signal(signal.SIGINT, old)
    assert not torch.equal(w.detach(), values)  # (the step wrote)
    assert w._version > before
    assert _stale_backward_raises(y)


@pytest.mark.parametrize("name, hp, kernel", CASES, ids=IDS)
def test_inference_params_step_inside_inference_mode(name, hp, kernel):
    """Inference tensors have no version counter (nothing to bump or put back): with a normal
    param beside them, inside inference mode, the step writes both and bumps the normal one."""
    with torch.inference_mode():
        inf = torch.ones(3)
        inf.grad = torch.ones(3)
    w = torch.ones(3)
    w.grad = torch.ones(3)
    opt = getattr(ot, name)([inf, w], **hp)
    before = w._version
    with torch.inference_mode():
        opt.step()
        opt.step()
    assert not torch.equal(inf, torch.ones(3)) and not torch.equal(w, torch.ones(3))
    assert w._version > before


@pytest.mark.parametrize("name, hp, kernel", CASES, ids=IDS)
def test_a_step_of_inference_and_normal_params_that_raises_puts_the_normal_ones_back(monkeypatch, name, hp, kernel):
    """Inside inference mode, an inference param (no counter) beside normal ones: a step whose
    kernel raises puts the normal params' versions back and writes nothing."""
    with torch.inference_mode():
        inf = torch.ones(3)
        inf.grad = torch.ones(3)
    ws = [torch.ones(3), torch.ones(3)]
    for w in ws:
        w.grad = torch.ones(3)
    opt = getattr(ot, name)([ws[0], inf, ws[1]], **hp)
    with torch.inference_mode():
        opt.step()
    before = [w._version for w in ws]
    _failing(monkeypatch, kernel, RuntimeError("native"))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="native"):
        opt.step()
    assert [w._version for w in ws] == before
