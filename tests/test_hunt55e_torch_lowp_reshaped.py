"""optkern.torch with low-precision storage: a param re-viewed to another shape between steps is
refused by name before the step writes, as with float32 state.

``p.data = p.data.view(2, 3)`` gives a (6,) param another shape over the same memory. The float32
optimizers refuse the next step naming the state (``state[...]['exp_avg']: expected shape (2, 3)
(its param's), got (6,)``; torch.optim's step fails on the mismatch too). With ``master_weights`` or
``state_dtype`` the shape check was skipped for every state tensor (the 8-bit block scales have a
shape of their own), so the step went on with the (6,) moments and master, and the optimizer's own
``state_dict()`` was then refused by its ``load_state_dict`` (the same message, at load time). The
check now skips only the block scales.
"""

import copy

import pytest

torch = pytest.importorskip("torch")
import optkern.torch as ot  # noqa: E402

CONFIGS = [
    dict(state_dtype="bfloat16"),
    dict(state_dtype="int8"),
    dict(master_weights=True),
    dict(master_weights=True, state_dtype="int8"),
    dict(master_weights=True, stochastic_rounding=True, state_dtype="bfloat16"),
]


def _dtype(kw):
    return torch.bfloat16 if kw.get("master_weights") else torch.float32


@pytest.mark.parametrize("kw", CONFIGS, ids=str)
@pytest.mark.parametrize("new_shape", [(2, 3), (6, 1), (1, 6, 1)], ids=str)
def test_a_param_re_viewed_to_another_shape_is_refused_before_the_step_writes(kw, new_shape):
    dt = _dtype(kw)
    p = torch.nn.Parameter(torch.linspace(-1, 1, 6).to(dt))
    opt = ot.Adam([p], lr=0.1, **kw)
    p.grad = torch.ones(6, dtype=dt)
    opt.step()
    before = {k: v.clone() for k, v in opt.state[p].items() if isinstance(v, torch.Tensor)}
    values = p.detach().clone()
    p.data = p.data.view(*new_shape)
    p.grad = torch.ones(new_shape, dtype=dt)
    with pytest.raises(ValueError, match=r"\['exp_avg'\]: expected shape .* \(its param's\), got \(6,\)"):
        opt.step()
    assert torch.equal(p.detach().reshape(-1), values)  # (nothing written)
    for k, v in before.items():
        assert torch.equal(opt.state[p][k], v), k


@pytest.mark.parametrize("kw", CONFIGS, ids=str)
def test_the_float32_optimizer_refuses_it_alike(kw):
    """The reference behaviour: float32 state, the same refusal."""
    p = torch.nn.Parameter(torch.ones(6))
    opt = ot.Adam([p], lr=0.1)
    p.grad = torch.ones(6)
    opt.step()
    p.data = p.data.view(2, 3)
    p.grad = torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"\['exp_avg'\]: expected shape \(2, 3\) \(its param's\), got \(6,\)"):
        opt.step()


@pytest.mark.parametrize("kw", CONFIGS, ids=str)
@pytest.mark.parametrize("shape", [(), (1, 1), (3, 0), (5, 7)], ids=str)
def test_params_of_any_shape_still_step_and_round_trip(kw, shape):
    """The block scales keep their own (n_blocks,) shape beside a param of any shape (a 0-d or (1, 1)
    param has as many blocks as elements): not refused by the shape check."""
    dt = _dtype(kw)
    torch.manual_seed(5509)
    p = torch.nn.Parameter(torch.randn(shape).to(dt))
    opt = ot.Adam([p], lr=0.1, **kw)
    for _ in range(2):
        p.grad = torch.randn(shape).to(dt)
        opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    other = ot.Adam([q], lr=0.1, **kw)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    g = torch.randn(shape).to(dt)
    p.grad, q.grad = g.clone(), g.clone()
    opt.step()
    other.step()
    assert torch.equal(p.detach(), q.detach())
