"""Each optkern.torch optimizer takes the implementation keywords its torch.optim namesake's signature
names, no others: torch 2.13's NAdam, RMSprop and Adadelta have no ``fused`` and its SGD and Adagrad
no ``capturable`` (``NAdam(ps, fused=True)`` is torch's TypeError), where optkern.torch took all four
for every class. A param group's key the namesake never reads is kept and ignored, as torch's."""

from __future__ import annotations

import inspect

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402
from optkern.torch._impl_keywords import TORCH_IMPL_KEYWORDS  # noqa: E402

NAMES = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]


def _torch_names(name: str) -> set:
    return set(inspect.signature(getattr(torch.optim, name)).parameters) & set(TORCH_IMPL_KEYWORDS)


@pytest.mark.parametrize("name", NAMES)
def test_signature_names_the_namesakes_keywords(name):
    ours = set(inspect.signature(getattr(ot, name)).parameters) & set(TORCH_IMPL_KEYWORDS)
    assert ours == _torch_names(name)


@pytest.mark.parametrize("name, key", [(n, k) for n in NAMES for k in TORCH_IMPL_KEYWORDS if k not in _torch_names(n)])
@pytest.mark.parametrize("value", [None, False, True])
def test_a_keyword_the_namesake_lacks_is_torchs_type_error(name, key, value):
    with pytest.raises(TypeError) as theirs:
        getattr(torch.optim, name)([torch.zeros(3, requires_grad=True)], lr=1e-2, **{key: value})
    with pytest.raises(TypeError) as ours:
        getattr(ot, name)([torch.zeros(3, requires_grad=True)], lr=1e-2, **{key: value})
    assert str(ours.value) == str(theirs.value)


def test_the_refused_pairs_are_torch_2_13s():
    """The pairs above are not empty (a torch whose classes all took all four would pass vacuously)."""
    lacking = {n: set(TORCH_IMPL_KEYWORDS) - _torch_names(n) for n in NAMES}
    assert {n for n, k in lacking.items() if "fused" in k} >= {"NAdam", "RMSprop", "Adadelta"}
    assert {n for n, k in lacking.items() if "capturable" in k} >= {"SGD", "Adagrad"}


@pytest.mark.parametrize("name, key", [(n, k) for n in NAMES for k in TORCH_IMPL_KEYWORDS if k not in _torch_names(n)])
def test_a_groups_key_the_namesake_never_reads_is_kept_and_ignored(name, key):
    runs = []
    for lib in (torch.optim, ot):
        torch.manual_seed(0)
        p, q = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(3))
        opt = getattr(lib, name)([p], lr=1e-2)
        opt.add_param_group({"params": [q], key: True})
        assert opt.param_groups[1][key] is True
        p.grad, q.grad = torch.ones(4), torch.full((3,), 2.0)
        opt.step()
        runs.append(q.detach().clone())
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-6, atol=1e-7)
