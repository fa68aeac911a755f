"""optkern.torch inside the torch ecosystem: the same training code as with torch.optim."""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

FIRST_ORDER = [
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("Adam", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5)),
    ("Adadelta", dict(lr=1.0)),
]


class _Lazy(torch.nn.Module):
    """A lazy layer (materialized by the first forward), and one the forward never uses."""

    def __init__(self, dtype=torch.float64):
        super().__init__()
        self.lazy = torch.nn.LazyLinear(3, dtype=dtype)
        self.head = torch.nn.Linear(3, 1, dtype=dtype)
        self.unused = torch.nn.LazyLinear(2, dtype=dtype)

    def forward(self, x):
        return self.head(torch.tanh(self.lazy(x)))


def _train_lazy(make, dtype=torch.float64, steps=5):
    torch.manual_seed(0)
    model = _Lazy(dtype)
    opt = make(model.parameters())  # before the dry run: torch.optim takes uninitialized params
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 4, generator=g, dtype=dtype), torch.randn(8, 1, generator=g, dtype=dtype)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).float().mean().backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("name,kw", FIRST_ORDER)
def test_optimizer_built_before_a_lazy_modules_dry_run_steps_as_torch(name, kw):
    # optkern.torch's constructors read every param (dtype, layout) and a lazy module's raised torch's
    # "Attempted to use an uninitialized parameter in is_neg" (naming no argument), where torch.optim
    # steps the params its first forward materializes in place
    ref, _ = _train_lazy(lambda ps: getattr(torch.optim, name)(ps, **kw))
    ours, opt = _train_lazy(lambda ps: getattr(ot, name)(ps, **kw))
    for (n, a), b in zip(ref.named_parameters(), ours.parameters()):
        if torch.nn.parameter.is_lazy(a):
            assert torch.nn.parameter.is_lazy(b), n
            continue
        assert torch.allclose(a, b, rtol=1e-12, atol=0), n
    assert len(opt.state) == len([p for p in ours.parameters() if p.grad is not None])


def test_adagrad_norm_takes_a_lazy_param():
    model, opt = _train_lazy(lambda ps: ot.AdagradNorm(ps, lr=0.1))
    assert opt.state[model.lazy.weight]["step"].item() == 5
    assert torch.nn.parameter.is_lazy(model.unused.weight)


def test_master_weights_step_with_a_lazy_param_left_uninitialized():
    # the stochastic-rounding counters number every param's elements: an uninitialized one (no shape
    # yet) raised torch's RuntimeError at the step; it counts none

    def make(ps):
        return ot.AdamW(ps, lr=0.01, master_weights=True, stochastic_rounding=True, seed=3)

    model, opt = _train_lazy(make, dtype=torch.bfloat16, steps=0)
    before = model.head.weight.detach().clone()
    model.zero_grad()
    model(torch.ones(2, 4, dtype=torch.bfloat16)).float().sum().backward()
    opt.step()
    assert not torch.equal(model.head.weight.detach(), before)
    assert opt.state[model.lazy.weight]["master_param"].dtype == torch.float32
    assert torch.nn.parameter.is_lazy(model.unused.weight) and model.unused.weight not in opt.state


@pytest.mark.parametrize(
    "make",
    [lambda ps: ot.Adagrad(ps, lr=0.1), lambda ps: ot.LBFGS(ps)],
    ids=["Adagrad", "LBFGS"],
)
def test_a_lazy_param_where_state_is_made_at_construction_is_refused_by_name(make):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LazyLinear(2))
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[2\]: .*uninitialized parameter"):
        make(model.parameters())
