"""State loaded from torch tensors (the documented way to cross a checkpoint into the NumPy API):
``optkern.optim`` optimizers' and ``optkern.norm`` modules' ``load_state_dict`` take CPU torch
tensors as values. A tensor that requires grad, or a lazy negated view (``torch._neg_view``, what
``-t`` of a conjugate-bit view gives), holds values as plain as any other; they were refused: the
optimizers with "cannot be read as a NumPy array", the norm modules with torch's own unnamed
RuntimeError from ``numpy()``. Now their values are loaded (detached, the bit resolved), as
``optkern.torch`` loads a checkpoint's views "as the values they show"."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from optkern import norm, optim, swa  # noqa: E402


def _as_neg_view(a: np.ndarray):
    """A tensor whose values are ``a``, held as the lazy negation of ``-a``."""
    return torch._neg_view(torch.from_numpy(-a))


def _saved_adam():
    p = [np.zeros(3)]
    opt = optim.Adam(p, lr=0.1)
    opt.step([np.array([1.0, -2.0, 3.0])])
    return opt.state_dict()


@pytest.mark.parametrize("kind", ["requires_grad", "neg_view"])
def test_optimizer_state_from_torch_tensors_that_require_grad_or_are_neg_views(kind):
    sd = _saved_adam()
    entry = dict(sd["state"][0])
    for k in ("exp_avg", "exp_avg_sq"):
        v = entry[k]
        entry[k] = torch.from_numpy(v.copy()).requires_grad_() if kind == "requires_grad" else _as_neg_view(v)
    opt = optim.Adam([np.zeros(3)], lr=0.1)
    opt.load_state_dict({"state": {0: entry}, "param_groups": sd["param_groups"]})
    got = opt.state_dict()["state"][0]
    for k in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(got[k], sd["state"][0][k])


@pytest.mark.parametrize("make", [lambda: norm.BatchNorm(3), lambda: norm.LayerNorm(3)])
def test_norm_module_state_from_neg_view_and_grad_tensors(make):
    m = make()
    sd = m.state_dict()
    want = {
        k: np.asarray(v) + (np.arange(np.asarray(v).size).reshape(np.shape(v)) if k != "num_batches_tracked" else 0)
        for k, v in sd.items()
    }
    load = {}
    for i, (k, v) in enumerate(want.items()):
        if k == "num_batches_tracked":
            load[k] = torch.from_numpy(np.asarray(v).copy())
        elif i % 2:
            load[k] = _as_neg_view(np.asarray(v, dtype=np.float32).copy())
        else:
            load[k] = torch.from_numpy(np.asarray(v, dtype=np.float32).copy()).requires_grad_()
    m.load_state_dict(load)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(want[k]).astype(np.asarray(v).dtype))


def _requires_grad(a):
    a = np.asarray(a)
    t = torch.from_numpy(a.copy())
    return t.requires_grad_() if a.dtype.kind == "f" else t


@pytest.mark.parametrize("as_tensor", [_requires_grad, _as_neg_view], ids=["requires_grad", "neg_view"])
def test_int8_state_lbfgs_history_and_swa_averages_from_such_tensors(as_tensor):
    """The other loaders that read values on the host (8-bit states and their scales: torch's own
    RuntimeError, unnamed; L-BFGS's history; SWA's averages: refused by name for a neg view)."""
    o8 = optim.Adam([np.zeros(64, np.float32)], lr=0.1, state_dtype="int8")
    o8.step([np.linspace(-1, 1, 64, dtype=np.float32)])
    sd = o8.state_dict()
    entry = {k: as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in sd["state"][0].items()}
    o8.load_state_dict({"state": {0: entry}, "param_groups": sd["param_groups"]})
    for k, v in o8.state_dict()["state"][0].items():
        np.testing.assert_array_equal(v, sd["state"][0][k])

    p = [np.array([1.0, -2.0])]
    lb = optim.LBFGS(p, lr=0.5, max_iter=3)
    lb.step(lambda: (float(p[0] @ p[0]), [2 * p[0]]))
    sd = lb.state_dict()

    def convert(v):
        if isinstance(v, np.ndarray) and v.ndim:
            return as_tensor(v)
        return [convert(x) for x in v] if isinstance(v, list) else v

    entry = {k: convert(v) for k, v in sd["state"][0].items()}
    lb2 = optim.LBFGS([p[0].copy()], lr=0.5, max_iter=3)
    lb2.load_state_dict({"state": {0: entry}, "param_groups": sd["param_groups"]})
    got = lb2.state_dict()["state"][0]
    for k, v in sd["state"][0].items():
        if isinstance(v, list):
            assert all(np.array_equal(a, b) for a, b in zip(got[k], v)), k
        elif isinstance(v, np.ndarray):
            np.testing.assert_array_equal(got[k], v)

    av = swa.AveragedParams([np.zeros(3, np.float32)])
    av.update([np.array([1.0, -2.0, 3.0], np.float32)])
    sd = av.state_dict()
    av.load_state_dict({**sd, "averages": [as_tensor(a) for a in sd["averages"]]})
    np.testing.assert_array_equal(av.state_dict()["averages"][0], sd["averages"][0])
