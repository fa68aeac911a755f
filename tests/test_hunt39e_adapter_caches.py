"""What the adapter's step keeps between steps (optkern.torch's ``_Fused``) is dropped when what
it stands for changes: here the hyper-parameters that passed the dtype check (``_dtype_ok``: a
group's new value that the params' dtype cannot run is refused at the next step, nothing
written)."""

import pytest

torch = pytest.importorskip("torch")
import optkern.torch as OT  # noqa: E402


def _model(dtype):
    torch.manual_seed(0)
    m = torch.nn.Linear(5, 3).to(dtype)
    m(torch.randn(4, 5, dtype=dtype)).sum().backward()
    return m


@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_a_new_eps_that_rounds_to_zero_in_float32_is_refused_at_the_next_step(cls):
    m = _model(torch.float32)
    opt = getattr(OT, cls)(m.parameters(), lr=1e-2)
    opt.step()
    opt.step()  # (the dtype check's memo made)
    opt.param_groups[0]["eps"] = 1e-50  # (a float64 step runs it; a float32 one cannot)
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(ValueError, match=r"eps.*rounds to 0 in float32"):
        opt.step()
    for p, b in zip(m.parameters(), before):
        assert torch.equal(p.detach(), b)
    opt.param_groups[0]["eps"] = 1e-8
    opt.step()


def test_the_same_eps_runs_in_float64():
    m = _model(torch.float64)
    opt = OT.Adam(m.parameters(), lr=1e-2, eps=1e-50)
    opt.step()
    opt.step()
