"""optim.SAM: the two-step update against a float64 NumPy reference, rho = 0 bit for bit equal to
the wrapped optimizer, the native perturb / restore passes, and bad input."""

import numpy as np
import pytest

from optkern import _backend, nn, optim
from optkern.datasets import load_digits


@pytest.fixture(scope="module")
def mlp():
    d = load_digits(np.float64)
    return nn.MLP([64, 16, 10], activation="tanh", dtype=np.float64), d.x[:200], d.y[:200]


def sam_reference(w, grad, steps, rho, lr, momentum, eps=1e-12, adaptive=False):
    """SAM (ASAM: ``adaptive``) + SGD with momentum (torch's form), float64, written from the
    papers' updates (ASAM: the ascent w^2 g / ||w g||, Kwon et al. 2021, eq. 12 with T_w = |w|)."""
    w = w.astype(np.float64).copy()
    buf = None
    for _ in range(steps):
        g = grad(w)
        t = np.abs(w) if adaptive else 1.0
        e = rho * t * t * g / (np.linalg.norm(t * g) + eps)
        g2 = grad(w + e)
        buf = g2.copy() if buf is None else momentum * buf + g2
        w = w - lr * buf
    return w


def test_sam_matches_the_reference(mlp):
    model, x, y = mlp
    w0 = model.init_params(seed=1)
    grad = lambda w: model.loss_and_grad(w, x, y)[1]
    want = sam_reference(w0, grad, 6, rho=0.1, lr=0.2, momentum=0.9)
    p = w0.copy()
    opt = optim.SAM(optim.SGD([p], lr=0.2, momentum=0.9), rho=0.1)
    for _ in range(6):
        opt.step(lambda: model.loss_and_grad(p, x, y))
    np.testing.assert_allclose(p, want, rtol=1e-12, atol=1e-13)
    assert opt.grad_norm > 0


def test_adaptive_sam_matches_the_reference(mlp):
    model, x, y = mlp
    w0 = model.init_params(seed=4)
    grad = lambda w: model.loss_and_grad(w, x, y)[1]
    want = sam_reference(w0, grad, 6, rho=1.0, lr=0.2, momentum=0.9, adaptive=True)
    assert np.abs(want - sam_reference(w0, grad, 6, rho=1.0, lr=0.2, momentum=0.9)).max() > 1e-3
    p = w0.copy()
    opt = optim.SAM(optim.SGD([p], lr=0.2, momentum=0.9), rho=1.0, adaptive=True)
    for _ in range(6):
        opt.step(lambda: model.loss_and_grad(p, x, y))
    np.testing.assert_allclose(p, want, rtol=1e-12, atol=1e-13)
    assert opt.state_dict()["adaptive"] is True


def test_sam_float32_follows_the_float64_reference(mlp):
    model, x, y = mlp
    m32 = nn.MLP([64, 16, 10], activation="tanh", dtype=np.float32)
    x32 = x.astype(np.float32)
    w0 = m32.init_params(seed=2)
    want = sam_reference(w0, lambda w: model.loss_and_grad(w, x, y)[1], 3, rho=0.05, lr=0.1, momentum=0.0)
    p = w0.copy()
    opt = optim.SAM(optim.SGD([p], lr=0.1), rho=0.05)
    for _ in range(3):
        opt.step(lambda: m32.loss_and_grad(p, x32, y))
    np.testing.assert_allclose(p, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("base", ["Adam", "SGD", "RMSprop"])
def test_rho_zero_is_the_wrapped_optimizer_bit_for_bit(mlp, base):
    model, x, y = mlp
    w0 = model.init_params(seed=3)
    w0[:5] = -0.0  # signed zeros survive (w + 0 g would make them +0)
    a, b = w0.copy(), w0.copy()
    hp = {"lr": 1e-2}
    plain = getattr(optim, base)([a], **hp)
    sam = optim.SAM(getattr(optim, base)([b], **hp), rho=0.0)
    for _ in range(5):
        plain.step([model.loss_and_grad(a, x, y)[1]])
        sam.step(lambda: model.loss_and_grad(b, x, y))
    assert a.tobytes() == b.tobytes()


def test_sam_over_groups_and_arrays_uses_the_global_norm():
    rng = np.random.default_rng(0)
    ps = [rng.standard_normal(5), rng.standard_normal((3, 4)), rng.standard_normal(1)]
    targets = [rng.standard_normal(p.shape) for p in ps]
    grad = lambda qs: [q - t for q, t in zip(qs, targets)]
    base = optim.SGD([{"params": ps[:2], "lr": 0.1}, {"params": ps[2:], "lr": 0.5}])
    opt = optim.SAM(base, rho=0.3)
    w = [p.copy() for p in ps]
    opt.step(lambda: (0.0, grad(ps)))
    g = grad(w)
    nrm = np.sqrt(sum(np.sum(v * v) for v in g))
    g2 = grad([wi + 0.3 * gi / (nrm + 1e-12) for wi, gi in zip(w, g)])
    for i, lr in enumerate((0.1, 0.1, 0.5)):
        np.testing.assert_allclose(ps[i], w[i] - lr * g2[i], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes", [[0], [1], [7, 1023], [70001, 3]])
def test_perturb_and_restore_kernels(dtype, sizes, adaptive):
    """The norm against float64 sums; the move bit for bit the reference's roundings: NumPy's
    ``w + scale g``, ASAM's ``w + ((w * w) * g) * scale`` (the order of the reference code)."""
    rng = np.random.default_rng(sum(sizes))
    ps = [rng.standard_normal(n).astype(dtype) for n in sizes]
    gs = [rng.standard_normal(n).astype(dtype) for n in sizes]
    w = [p.copy() for p in ps]
    bk = [np.full(n, 7, dtype) for n in sizes]
    out = np.zeros(1)
    nrm = _backend.cpu.sam_perturb_(ps, gs, bk, 0.2, 1e-12, out, adaptive)
    terms = [(wi.astype(np.float64) if adaptive else 1.0) * g.astype(np.float64) for wi, g in zip(w, gs)]
    want = np.sqrt(sum(np.sum(t**2) for t in terms))
    assert nrm == out[0] and abs(nrm - want) <= 1e-12 * max(want, 1)
    scale = dtype(0.2 / (nrm + 1e-12))
    for p, wi, g, b in zip(ps, w, gs, bk):
        np.testing.assert_array_equal(b, wi)
        np.testing.assert_array_equal(p, wi + ((wi * wi) * g) * scale if adaptive else wi + scale * g)
    _backend.cpu.sam_restore_(ps, bk)
    for p, wi in zip(ps, w):
        assert p.tobytes() == wi.tobytes()


def test_sam_bad_input_writes_nothing():
    p = np.array([1.0, 2.0, 3.0])
    opt = optim.SAM(optim.SGD([p], lr=0.1), rho=0.1)
    with pytest.raises(ValueError, match=r"grads\[0\]: expected shape"):
        opt.first_step([np.ones(2)])
    with pytest.raises(TypeError, match=r"grads\[0\]: expected float64"):
        opt.first_step([np.ones(3, np.float32)])
    with pytest.raises(ValueError, match="closure: returned a non-finite loss"):
        opt.step(lambda: (float("nan"), [np.ones(3)]))
    with pytest.raises(RuntimeError, match="second_step: call first_step first"):
        opt.second_step([np.ones(3)])
    np.testing.assert_array_equal(p, [1.0, 2.0, 3.0])
    calls = [0]

    def bad_second():
        calls[0] += 1
        return 1.0, [np.ones(3)] if calls[0] == 1 else [np.ones(4)]

    with pytest.raises(ValueError, match=r"closure: grads\[0\]"):
        opt.step(bad_second)
    np.testing.assert_array_equal(p, [1.0, 2.0, 3.0])  # back at w after the failed ascent-point evaluation
    with pytest.raises(ValueError, match="rho"):
        optim.SAM(optim.SGD([p], lr=0.1), rho=-1.0)
    with pytest.raises(TypeError, match="base"):
        optim.SAM(object())
    with pytest.raises(ValueError, match="shares memory"):
        _backend.cpu.sam_perturb_([p], [p], [np.empty(3)], 0.1, 0.0, np.zeros(1))
    with pytest.raises(ValueError, match="rho: must be finite"):
        _backend.cpu.sam_perturb_([p], [np.ones(3)], [np.empty(3)], float("inf"), 0.0, np.zeros(1))


def test_sam_state_dict_round_trip():
    p = np.array([1.0, -2.0])
    opt = optim.SAM(optim.Adam([p], lr=0.1), rho=0.2)
    f = lambda: (float(p @ p), 2 * p)
    opt.step(f)
    q = p.copy()
    opt2 = optim.SAM(optim.Adam([q], lr=0.1), rho=0.9)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.rho == 0.2 and opt2.adaptive is False
    opt.step(f)
    opt2.step(lambda: (float(q @ q), 2 * q))
    np.testing.assert_array_equal(p, q)


def test_sam_state_dict_adaptive_and_older_checkpoints():
    """``adaptive`` round-trips; a checkpoint without it (written before ASAM) loads as plain SAM;
    a non-bool is refused by name before anything changes."""
    p = np.array([1.0, -2.0])
    opt = optim.SAM(optim.SGD([p], lr=0.1), rho=0.2, adaptive=True)
    sd = opt.state_dict()
    other = optim.SAM(optim.SGD([p.copy()], lr=0.1), adaptive=False)
    other.load_state_dict(sd)
    assert other.adaptive is True
    old = {k: v for k, v in sd.items() if k != "adaptive"}
    other.load_state_dict(old)
    assert other.adaptive is False
    with pytest.raises(TypeError, match=r"state_dict\['adaptive'\]"):
        other.load_state_dict({**sd, "adaptive": "yes"})
    assert other.adaptive is False and other.rho == 0.2
    with pytest.raises(TypeError, match="adaptive"):
        optim.SAM(optim.SGD([p], lr=0.1), adaptive=1)


def test_sam_load_state_dict_refused_while_perturbed():
    """Between first_step and second_step the params hold the ascent point and SAM the backups of
    w: a checkpoint loaded then would be overwritten by second_step's return to w. Refused as
    optkern.torch.SAM refuses it (RuntimeError), before anything changes; loads after second_step."""
    w = [np.array([1.0, -2.0, 0.5]), np.array([3.0, 4.0])]
    g = [np.ones(3), np.full(2, -1.0)]
    opt = optim.SAM(optim.SGD(w, lr=0.1, momentum=0.9), rho=0.2)
    opt.step(lambda: (1.0, g))  # a momentum buffer in the checkpoint
    sd = opt.state_dict()
    sd["rho"] = 0.7
    sd["base"]["param_groups"][0]["lr"] = 0.5
    opt.first_step(g)
    at_ascent = [p.copy() for p in w]
    momentum = [m.copy() for m in (opt.base.state_dict()["state"][i]["momentum_buffer"] for i in (0, 1))]
    with pytest.raises(RuntimeError, match=r"load_state_dict: the params are perturbed \(call second_step first\)"):
        opt.load_state_dict(sd)
    assert opt.rho == 0.2 and opt.param_groups[0]["lr"] == 0.1  # nothing loaded
    for p, a in zip(w, at_ascent):
        np.testing.assert_array_equal(p, a)
    for i, m in enumerate(momentum):
        np.testing.assert_array_equal(opt.base.state_dict()["state"][i]["momentum_buffer"], m)
    opt.second_step(g)  # still the step it was: back to w, then SGD's step
    opt.load_state_dict(sd)
    assert opt.rho == 0.7 and opt.param_groups[0]["lr"] == 0.5
