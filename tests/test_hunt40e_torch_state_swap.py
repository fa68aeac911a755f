"""What optkern.torch.optimizers documents of state tensors swapped between steps (hunt 40e): one
replaced in the state dict (``opt.state[p]["exp_avg"] = t``, with the step's view cache warm) is the
state the next step reads and writes, as in torch.optim, to rounding; one given other memory in
place (``.data = t``, ``.set_(t)``) is followed too since hunt 44e
(tests/test_hunt44e_torch_state_data.py)."""

import pytest

torch = pytest.importorskip("torch")
OT = pytest.importorskip("optkern.torch")

HYPER = {
    "SGD": dict(lr=0.1, momentum=0.9),
    "Adagrad": dict(lr=0.1),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True),
    "Adadelta": dict(lr=1.0),
    "Adam": dict(lr=0.1, amsgrad=True),
    "AdamW": dict(lr=0.1),
    "NAdam": dict(lr=0.1),
}


def _run(mod, name, dtype):
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(4, 3, dtype=dtype)) for _ in range(3)]
    opt = getattr(mod, name)(ps, **HYPER[name])
    for s in range(5):
        for i, p in enumerate(ps):
            p.grad = torch.arange(12, dtype=dtype).reshape(4, 3) * 0.1 + (i + 1 + s)
        if s == 2:  # (after two steps: the views cached)
            st = opt.state[ps[0]]
            for k in [k for k, v in st.items() if isinstance(v, torch.Tensor) and v.shape == ps[0].shape]:
                st[k] = torch.full_like(st[k], 0.5)
        opt.step()
    return ps, opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(HYPER))
def test_a_state_tensor_replaced_in_the_dict_steps_as_torch(name, dtype):
    want, theirs = _run(torch.optim, name, dtype)
    got, ours = _run(OT, name, dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    for p, q in zip(want, got):
        torch.testing.assert_close(q.detach(), p.detach(), **tol)
        for k, v in theirs.state[p].items():
            torch.testing.assert_close(ours.state[q][k], v, **tol)
