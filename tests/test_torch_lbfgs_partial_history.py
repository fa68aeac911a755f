"""optkern.torch.LBFGS checkpoints taken before the history is full continue in torch.optim.LBFGS:
torch keeps ``al`` as ``history_size`` slots (None past the history) and indexes it by position."""

import copy

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

torch.set_num_threads(1)


def _fit(cls, model, x, y, ls, state=None, steps=1):
    opt = cls(model.parameters(), history_size=10, max_iter=4, line_search_fn=ls)
    if state is not None:
        opt.load_state_dict(state)

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return opt


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_partial_history_checkpoint_continues_in_torch(line_search_fn, float64_default):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 5, generator=g), torch.randn(40, 1, generator=g)
    torch.manual_seed(1)
    start = torch.nn.Linear(5, 1)

    def run(first_cls):
        m = copy.deepcopy(start)
        sd = copy.deepcopy(_fit(first_cls, m, x, y, line_search_fn).state_dict())
        st = sd["state"][0]
        assert len(st["old_dirs"]) < 10 and len(st["al"]) == 10 and st["al"][len(st["old_dirs"])] is None
        _fit(torch.optim.LBFGS, m, x, y, line_search_fn, state=sd, steps=2)  # (torch indexes al by history position)
        return [p.detach().clone() for p in m.parameters()]

    want, got = run(torch.optim.LBFGS), run(ot.LBFGS)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
