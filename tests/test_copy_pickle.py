"""Optimizers and averages copied mid-training (``copy.deepcopy`` / pickle, as torch's optimizers
allow: branching a run, a copy for evaluation): the copy continues from its own arrays exactly as
the original continues from its own, and the two share nothing.

(The native module an object holds is kept by name: a module does not pickle. optkern.torch's
adapters are tested in test_torch_adapter_fast.py, test_torch_sam.py, test_torch_lbfgs.py.)
"""

import copy
import pickle

import numpy as np
import pytest

from optkern import amp, lowp, optim, swa, swalp

FIRST_ORDER = ["SGD", "Adam", "AdamW", "NAdam", "RMSprop", "Adagrad", "Adadelta", "AdagradNorm"]
HYPER = {"SGD": dict(lr=1e-2, momentum=0.9)}


def _copy(obj, how):
    return copy.deepcopy(obj) if how == "deepcopy" else pickle.loads(pickle.dumps(obj))


def _arrays(dtype, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(37 + 64 * i).astype(np.float32).astype(dtype) for i in range(n)]


def _grads(step, like):
    return [(np.random.default_rng(100 + step).standard_normal(p.shape) * 0.1).astype(p.dtype) for p in like]


def _continue_both(step_a, step_b, params_a, params_b, steps=3):
    """Both objects stepped with the same grads; each set of params checked against the other's."""
    for t in range(steps):
        grads = _grads(t, params_a)
        step_a([g.copy() for g in grads])
        step_b([g.copy() for g in grads])
    for a, b in zip(params_a, params_b):
        assert a is not b and not np.shares_memory(a, b)
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


#: every storage each optimizer has (AdaGrad-Norm's one scalar has no 8-bit form)
STORAGES = [(n, s) for n in FIRST_ORDER for s in ("float32", "bf16-master", "bf16-master-int8")]
STORAGES.remove(("AdagradNorm", "bf16-master-int8"))


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("name, storage", STORAGES)
def test_first_order_optimizer_copy_continues_bit_for_bit(name, storage, how):
    kw = {}
    dtype = np.float32
    if storage != "float32":
        dtype = lowp.bfloat16_dtype()
        kw = dict(master_weights=True)
        if storage.endswith("int8"):
            kw.update(state_dtype="int8", block_size=64)
    params = _arrays(dtype)
    opt = getattr(optim, name)(params, **HYPER.get(name, dict(lr=1e-2)), **kw)
    opt.step(_grads(99, params))
    params2, opt2 = _copy((params, opt), how)
    assert opt2.param_groups[0]["params"][0] is params2[0]
    _continue_both(opt.step, opt2.step, params, params2)
    sd, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd["param_groups"] == sd2["param_groups"]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_lbfgs_copy_continues_bit_for_bit(how):
    target = np.linspace(-1.0, 2.0, 41)

    def closure_of(x):
        return lambda: (float(((x - target) ** 4).sum()), 4 * (x - target) ** 3)

    x = np.zeros(41)
    opt = optim.LBFGS([x], lr=1.0, history_size=5, line_search_fn="strong_wolfe")
    opt.step(closure_of(x))
    x2, opt2 = _copy((x, opt), how)
    for _ in range(3):
        opt.step(closure_of(x))
        opt2.step(closure_of(x2))
    assert not np.shares_memory(x, x2)
    np.testing.assert_array_equal(x, x2)
    assert float(np.abs(x - np.zeros(41)).max()) > 0.1  # (it moved)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("between", [False, True], ids=["after-a-step", "between-first-and-second"])
def test_sam_copy_continues_bit_for_bit(how, between):
    params = _arrays(np.float32)
    opt = optim.SAM(optim.SGD(params, lr=1e-2, momentum=0.9), rho=0.1)
    opt.first_step(_grads(0, params))
    opt.second_step(_grads(1, params))
    if between:
        opt.first_step(_grads(2, params))
    params2, opt2 = _copy((params, opt), how)
    if between:
        opt.second_step(_grads(3, params))
        opt2.second_step(_grads(3, params2))

    def two_steps(o):
        def step(grads):
            o.first_step(grads)
            o.second_step([g * 0.5 for g in grads])

        return step

    _continue_both(two_steps(opt), two_steps(opt2), params, params2)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("mode", ["swa", "ema"])
def test_averaged_params_copy_continues_bit_for_bit(mode, how):
    params = _arrays(np.float32)
    avg = swa.AveragedParams(params, mode=mode, decay=0.9)
    avg.update(params)
    avg2 = _copy(avg, how)
    for t in range(3):
        new = _grads(t, params)
        avg.update(new)
        avg2.update(new)
    assert avg2.n_averaged == avg.n_averaged
    for a, b in zip(avg.averages, avg2.averages):
        assert not np.shares_memory(a, b)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_swalp_and_grad_scaler_copies_continue_bit_for_bit(how):
    params = _arrays(np.float32)
    opt = swalp.SWALP(params, lr=1e-2, swa_start=1)
    opt.step(_grads(0, params))
    params2, opt2 = _copy((params, opt), how)
    _continue_both(opt.step, opt2.step, params, params2)

    params = _arrays(np.float32)
    inner = optim.Adam(params, lr=1e-2)
    scaler = amp.GradScaler(init_scale=2.0**4, growth_interval=2)
    scaler.step(inner, [g * scaler.get_scale() for g in _grads(0, params)])
    scaler.update()
    params2, inner2, scaler2 = _copy((params, inner, scaler), how)

    def scaled(o, s):
        def step(grads):
            s.step(o, [g * s.get_scale() for g in grads])
            s.update()

        return step

    _continue_both(scaled(inner, scaler), scaled(inner2, scaler2), params, params2, steps=5)
    assert scaler.get_scale() == scaler2.get_scale()


# ---- models, layers, loaders and operators --------------------------------------------------


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("norm", [None, "batch"])
def test_mlp_copy_computes_the_same(norm, how):
    from optkern import nn

    model = nn.MLP([6, 9, 4], activation="tanh", norm=norm)
    params = model.init_params(seed=3)
    x = np.random.default_rng(5).standard_normal((11, 6))
    y = np.arange(11) % 4
    v = np.random.default_rng(6).standard_normal(params.shape).astype(params.dtype)
    model2 = _copy(model, how)
    loss, grad = model.loss_and_grad(params, x, y)
    loss2, grad2 = model2.loss_and_grad(params, x, y)
    assert loss == loss2
    np.testing.assert_array_equal(grad, grad2)
    np.testing.assert_array_equal(model.hvp(params, x, y, v), model2.hvp(params, x, y, v))


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_batch_norm_module_copy_continues_bit_for_bit(how):
    from optkern import norm

    bn = norm.BatchNorm(5)
    xs = [np.random.default_rng(t).standard_normal((8, 5)).astype(np.float32) for t in range(4)]
    bn(xs[0])
    bn2 = _copy(bn, how)
    assert not np.shares_memory(bn.running_mean, bn2.running_mean)
    for x in xs[1:]:
        np.testing.assert_array_equal(_out(bn(x)), _out(bn2(x)))
    np.testing.assert_array_equal(bn.running_var, bn2.running_var)


def _out(r):
    return r[0] if isinstance(r, tuple) else r


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_batch_loader_copy_gives_the_same_batches(how):
    from optkern.data import BatchLoader

    x = np.arange(50.0).reshape(25, 2)
    loader = BatchLoader(x, np.arange(25), batch_size_schedule=4, seed=7)
    next(iter(loader))
    loader2 = _copy(loader, how)
    for (a, ya), (b, yb) in zip(loader.batches(epoch=2), loader2.batches(epoch=2)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)


def test_newton_cg_and_operator_deepcopy_continue_bit_for_bit():
    from optkern import hessian, nn

    model = nn.MLP([4, 7, 3], activation="tanh")
    x = np.random.default_rng(1).standard_normal((16, 4))
    y = np.arange(16) % 3
    params = model.init_params(seed=2)
    op = hessian.from_mlp(model, params, x, y, kind="ggn")
    v = np.random.default_rng(3).standard_normal(params.shape).astype(params.dtype)
    np.testing.assert_array_equal(copy.deepcopy(op).matvec(v), op.matvec(v))

    def run(p, opt, steps):
        for _ in range(steps):
            opt.step(lambda: model.loss_and_grad(p, x, y))

    opt = optim.NewtonCG([params], lambda: hessian.from_mlp(model, params, x, y, kind="ggn"), max_cg_iter=5)
    run(params, opt, 2)
    params2, opt2 = copy.deepcopy((params, opt))
    opt2.curvature = lambda: hessian.from_mlp(model, params2, x, y, kind="ggn")  # (it read params)
    run(params, opt, 2)
    run(params2, opt2, 2)
    np.testing.assert_array_equal(params, params2)
