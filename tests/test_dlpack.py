"""Foreign arrays (torch CPU tensors, any DLPack exporter) in the core API: zero-copy, in place,
bitwise the NumPy path's results; read-only exports and foreign devices refused by name."""

import os
import subprocess
import sys

import numpy as np
import pytest

import optkern
import optkern.functional as F
import optkern.optim as O
from optim_registry import BY_NAME, CASES, IDS

torch = pytest.importorskip("torch")

SHAPES = [(7,), (3, 5), (1,), (33,)]


class Exporter:
    """A minimal DLPack producer (not torch, not NumPy): exports a NumPy array's memory as is."""

    def __init__(self, a, device=(1, 0)):
        self.a, self.device = a, device

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.device


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _addr(t):
    return t.data_ptr()


@pytest.mark.parametrize("name, hp", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_on_torch_tensors_is_the_numpy_step_in_place(name, hp, dtype):
    cls = BY_NAME[name].cls
    ref = _data(dtype)
    tensors = [torch.tensor(p.copy()) for p in ref]
    ptrs = [_addr(t) for t in tensors]
    opt_np, opt_t = cls(ref, **hp), cls(tensors, **hp)
    for s in range(3):
        grads = _data(dtype, seed=10 + s)
        opt_np.step(grads)
        opt_t.step([torch.tensor(g) for g in grads])  # fresh grad tensors every step, as after zero_grad()
    for p, t, ptr in zip(ref, tensors, ptrs):
        assert _addr(t) == ptr  # the same memory, updated in place
        assert np.array_equal(t.numpy(), p)  # bitwise the NumPy path
    view = opt_t.param_groups[0]["params"][0]
    assert np.shares_memory(view, tensors[0].numpy())  # zero-copy
    for p, t in zip(ref, tensors):  # state keyed by the tensors passed in, as the NumPy one is by its arrays
        assert (t in opt_t.state) == (p in opt_np.state)
        if p in opt_np.state:
            for k, v in opt_np.state[p].items():
                assert np.array_equal(np.asarray(opt_t.state[t][k]), np.asarray(v)), k


def test_parameters_that_require_grad_are_updated_in_place():
    model = torch.nn.Linear(5, 3).double()
    ref = [p.detach().numpy().copy() for p in model.parameters()]
    opt, opt_np = O.AdamW(model.parameters(), lr=0.1), O.AdamW(ref, lr=0.1)
    model(torch.ones(2, 5, dtype=torch.float64)).sum().backward()
    opt.step([p.grad for p in model.parameters()])
    opt_np.step([p.grad.numpy() for p in model.parameters()])
    for p, r in zip(model.parameters(), ref):
        assert p.requires_grad and np.array_equal(p.detach().numpy(), r)
    assert opt.state[model.weight]["step"] == 1  # keyed by the tensor passed in


def test_torch_none_grads_skip():
    ps = [torch.zeros(3, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)]
    opt = O.SGD(ps, lr=1.0, weight_decay=0.1)
    opt.step([torch.ones(3, dtype=torch.float64), None])
    assert ps[0].tolist() == [-1.0] * 3 and ps[1].tolist() == [0.0] * 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_updates_torch_state_in_place(dtype):
    p, g, m, v = (_data(dtype, seed=s) for s in range(4))
    v = [np.abs(x) for x in v]
    tp, tg, tm, tv = ([torch.tensor(x.copy()) for x in xs] for xs in (p, g, m, v))
    kw = dict(step=3, lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1, decoupled_weight_decay=True)
    F.adam_(p, g, m, v, None, **kw)
    F.adam_(tp, tg, tm, tv, None, **kw)
    for xs, ts in ((p, tp), (m, tm), (v, tv)):
        assert all(np.array_equal(x, t.numpy()) for x, t in zip(xs, ts))


def test_clip_grad_norm_on_torch_and_dlpack_exporters():
    g = _data(np.float32)
    tg = [torch.tensor(x.copy()) for x in g]
    eg = [Exporter(x.copy()) for x in g]
    n = optkern.clip.clip_grad_norm_(g, 0.5)
    assert optkern.clip.clip_grad_norm_(tg, 0.5) == n
    assert optkern.clip.clip_grad_norm_(eg, 0.5) == n
    for x, t, e in zip(g, tg, eg):
        assert np.array_equal(t.numpy(), x) and np.array_equal(e.a, x)
    one = torch.tensor(g[0] * 10)
    optkern.clip.clip_grad_value_(one, 0.1)  # a single tensor
    assert float(one.abs().max()) <= np.float32(0.1)


def test_norm_functions_take_tensors():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6))
    w = rng.standard_normal(6)
    y, saved = optkern.norm.layer_norm(x, (6,), weight=w)
    ty, tsaved = optkern.norm.layer_norm(torch.tensor(x), (6,), weight=torch.tensor(w))
    assert np.array_equal(ty, y)
    dy = rng.standard_normal((4, 6))
    ref = optkern.norm.layer_norm_backward(dy, x, w, saved)
    got = optkern.norm.layer_norm_backward(torch.tensor(dy), torch.tensor(x), torch.tensor(w), tsaved)
    for a, b in zip(ref, got):
        assert np.array_equal(a, b)


def test_generic_dlpack_exporter_in_place_and_zero_copy():
    p, g = _data(np.float64), _data(np.float64, seed=1)
    ref = [x.copy() for x in p]
    exp = [Exporter(x) for x in p]
    opt = O.Adam(exp, lr=0.1)
    assert np.shares_memory(opt.param_groups[0]["params"][1], p[1])
    opt.step([Exporter(x) for x in g])
    O.Adam(ref, lr=0.1).step(g)
    assert all(np.array_equal(a, b) for a, b in zip(p, ref))


def test_read_only_export_refused_by_name():
    p = _data(np.float64)
    p[2].flags.writeable = False
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[2\]: array is read-only"):
        O.SGD([Exporter(x) for x in p], lr=0.1)
    with pytest.raises(ValueError, match=r"grads\[2\]: array is read-only"):
        optkern.clip.clip_grad_value_([Exporter(x) for x in p], 1.0)
    g = _data(np.float64, seed=1)
    g[0].flags.writeable = False  # read-only is fine where nothing is written
    q = _data(np.float64, seed=2)
    O.SGD([torch.tensor(x) for x in q], lr=0.1).step([Exporter(x) for x in g])


def test_foreign_device_and_layout_refused_by_name():
    with pytest.raises(TypeError, match=r"params\[1\]: Exporter lives on DLPack device type 4"):
        F.sgd_([np.zeros(3), Exporter(np.zeros(3), device=(4, 0))], [np.zeros(3)] * 2, lr=0.1)
    t = torch.zeros(4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\]: array must be C-contiguous"):
        O.SGD([t.t()], lr=0.1)
    with pytest.raises(TypeError, match=r"grads\[0\]: expected float64, got int64"):
        O.SGD([t], lr=0.1).step([torch.zeros(4, 4, dtype=torch.int64)])


@pytest.mark.spawns
def test_import_optkern_imports_no_array_library():
    code = "import sys, optkern, optkern.clip; print(sorted({'torch', 'cupy', 'jax'} & sys.modules.keys()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_param_groups_of_generators_and_the_same_tensor_twice():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)).double()
    opt = O.SGD([{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.5}], lr=0.1)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    w = model[0].weight
    before = w.detach().clone()
    opt.step([torch.ones_like(p) for p in model.parameters()])
    assert torch.equal(w.detach(), before - 0.1)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\]: appears in more than one"):
        O.SGD([{"params": [w]}, {"params": [w]}], lr=0.1)  # one tensor, two different views


_JAX_CHECKS = """
import numpy as np, jax.numpy as jnp, optkern, optkern.optim as O
rng = np.random.default_rng(0)
p = [rng.standard_normal(s).astype(np.float32) for s in [(7,), (3, 5), (1,)]]
g = [rng.standard_normal(x.shape).astype(np.float32) for x in p]
ref = [x.copy() for x in p]
O.Adam(p, lr=0.1).step([jnp.asarray(x) for x in g])
O.Adam(ref, lr=0.1).step(g)
assert all(np.array_equal(a, b) for a, b in zip(p, ref))
x = rng.standard_normal((4, 6)).astype(np.float32)
assert np.array_equal(optkern.norm.layer_norm(jnp.asarray(x), (6,))[0], optkern.norm.layer_norm(x, (6,))[0])
for call, name in [
    (lambda: O.SGD([p[0], jnp.asarray(p[1])], lr=0.1), "param_groups[0]['params'][1]: array is read-only"),
    (lambda: optkern.clip.clip_grad_norm_([jnp.asarray(g[0])], 1.0), "grads[0]: array is read-only"),
]:
    try:
        call()
        raise SystemExit("accepted: " + name)
    except ValueError as e:
        assert str(e).startswith(name), e
print("ok")
"""


def test_jax_arrays_read_where_nothing_is_written_and_refused_as_params():
    """JAX arrays (immutable: their DLPack exports are read-only) are taken as grads and norm
    inputs, bitwise the NumPy results, and refused by name where optkern would write them. (In a
    subprocess: an imported JAX makes every later fork in this process warn.)"""
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed")
    # (JAX on its CPU backend: on a GPU machine its arrays live on the GPU, and a GPU grad for a
    # NumPy param is refused, rightly, as "grads[0]: expected a numpy.ndarray, got cupy.ndarray")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _JAX_CHECKS], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
