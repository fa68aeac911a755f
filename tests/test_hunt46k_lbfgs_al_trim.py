"""L-BFGS's ``al`` after ``history_size`` is lowered between steps: the step drops the oldest pairs
first (``LBFGS._trim``), and when it then stops before a new direction (the gradient already within
``tolerance_grad``) ``state_dict()`` held 2 pairs but 5 ``al`` entries, the first ones those of pairs no
longer held: longer than ``history_size`` and out of step with torch's layout, where ``al[i]`` belongs to
``old_dirs[i]``. Now ``al`` drops the entries of the dropped pairs with them, and the checkpoint continues
in torch.optim.LBFGS as in optkern."""

import numpy as np
import torch

from optkern import optim


def _closure(x, scale=1.0):
    def closure():
        return float((x**4).sum() + (x**2).sum()), (4 * x**3 + 2 * x) * scale

    return closure


def _lowered():
    x = np.array([1.5, -0.5, 2.0, 0.3, -1.2])
    opt = optim.LBFGS([x], history_size=10, max_iter=6)
    opt.step(_closure(x))
    full = opt.state_dict()["state"][0]
    assert len(full["old_dirs"]) == 5
    opt.param_groups[0]["history_size"] = 2
    opt.step(_closure(x, 0.0))  # (a zero gradient: the step trims, then returns before a direction)
    return x, opt, full


def test_al_keeps_the_entries_of_the_pairs_kept():
    x, opt, full = _lowered()
    st = opt.state_dict()["state"][0]
    assert len(st["old_dirs"]) == 2 and len(st["al"]) == 2
    assert all(np.array_equal(a, b) for a, b in zip(st["old_dirs"], full["old_dirs"][3:]))
    assert st["al"] == full["al"][3:5]  # (al[i] belongs to old_dirs[i]: the entries of the two newest pairs)


def test_the_checkpoint_continues_in_torch_as_in_optkern():
    x, opt, _ = _lowered()
    sd = opt.state_dict()
    p = torch.tensor(x.copy(), requires_grad=True)
    ref = torch.optim.LBFGS([p], history_size=2, max_iter=6)

    def conv(v):
        if isinstance(v, list):
            return [conv(a) for a in v]
        return torch.from_numpy(v) if isinstance(v, np.ndarray) else v

    ref.load_state_dict(
        {
            "state": {0: {k: conv(v) for k, v in sd["state"][0].items() if not k.startswith("gram_")}},
            "param_groups": sd["param_groups"],
        }
    )

    def closure():
        ref.zero_grad()
        loss = (p**4).sum() + (p**2).sum()
        loss.backward()
        return loss

    for _ in range(2):
        ref.step(closure)
        opt.step(_closure(x))
        np.testing.assert_allclose(x, p.detach().numpy(), rtol=1e-12, atol=1e-14)
        assert len(opt.state_dict()["state"][0]["al"]) == 2
