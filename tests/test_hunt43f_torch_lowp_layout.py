"""Hunt 43f: optkern.torch's low-precision storage and a param swapped into a group between steps.

Low-precision storage (master copy, 8-bit blocks, stochastic-rounding counters) runs over a param's
elements in C order, so the constructor and ``add_param_group`` refuse a non-contiguous param
(``_validate``). A param put into ``param_groups[i]['params']`` between steps was not checked:
with a transposed bfloat16 param in the second group, the step updated the first group (its
params, masters and step counts), then refused the new param's freshly made state ("exp_avg:
tensor must be contiguous like its param"), the step half taken. Now the step refuses it first,
with the constructor's message; and that message no longer calls every permuted layout
channels_last (a transposed matrix is not)."""

import pytest

torch = pytest.importorskip("torch")
import optkern.torch as ot  # noqa: E402

LOWP = [dict(master_weights=True), dict(master_weights=True, state_dtype="int8"), dict(state_dtype="bfloat16")]


def _opt(lowp):
    dt = torch.bfloat16 if lowp.get("master_weights") else torch.float32
    a = torch.nn.Parameter(torch.ones(10, dtype=dt))
    b = torch.nn.Parameter(torch.ones(5, dtype=dt))
    opt = ot.Adam([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1, **lowp)
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    opt.step()
    return opt, a, dt


@pytest.mark.parametrize("lowp", LOWP, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_a_strided_param_swapped_into_a_later_group_is_refused_before_anything_steps(lowp):
    opt, a, dt = _opt(lowp)
    a0 = a.detach().clone()
    states = {k: v.clone() for k, v in opt.state[a].items() if isinstance(v, torch.Tensor)}
    c = torch.nn.Parameter(torch.ones(4, 6, dtype=dt).t())
    c.grad = torch.ones(4, 6, dtype=dt).t()
    opt.param_groups[1]["params"][0] = c
    with pytest.raises(
        ValueError, match=r"^param_groups\[1\]\['params'\]\[0\]: low-precision storage needs a contiguous param"
    ):
        opt.step()
    assert torch.equal(a.detach(), a0)
    for k, v in states.items():
        assert torch.equal(opt.state[a][k], v)
    assert not opt.state.get(c)


def test_the_constructors_message_names_the_layout_it_sees():
    p = torch.nn.Parameter(torch.ones(4, 6, dtype=torch.bfloat16).t())
    with pytest.raises(ValueError, match=r"got strides \(1, 6\) \(a permuted layout") as e:
        ot.Adam([p], lr=0.1, master_weights=True)
    assert "channels_last" not in str(e.value).split("(a permuted layout")[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex64])
def test_a_param_of_another_dtype_swapped_in_is_refused_before_anything_steps(dtype):
    opt, a, _ = _opt(dict(master_weights=True))
    a0 = a.detach().clone()
    c = torch.nn.Parameter(torch.ones(5, dtype=dtype))
    c.grad = torch.ones_like(c)
    opt.param_groups[1]["params"][0] = c
    with pytest.raises(TypeError, match=r"^param_groups\[1\]\['params'\]\[0\]: "):
        opt.step()
    assert torch.equal(a.detach(), a0)
    assert int(opt.state[a]["step"]) == 1
