"""Each optimizer's hyper-parameter defaults are written in three signatures (optkern.optim's class,
its functional form, optkern.torch's class) and must equal torch.optim's: a default changed in one
place only would make ``optkern.torch.X(params)`` and ``torch.optim.X(params)`` train differently
without any error. This compares every default by name, and the defaults a constructed optimizer
actually holds."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from optkern import functional as F
from optkern import optim
from optkern.optim._lowp_config import LOWP_KEYWORDS

NAMES = {
    "SGD": "sgd_",
    "Adagrad": "adagrad_",
    "AdagradNorm": "adagrad_norm_",
    "RMSprop": "rmsprop_",
    "Adadelta": "adadelta_",
    "Adam": "adam_",
    "AdamW": "adamw_",
    "NAdam": "nadam_",
}

#: keywords only optkern.optim's classes take (how a step runs, not what it computes)
OPTKERN_ONLY = {"capturable"}


def defaults(fn) -> dict:
    """The hyper-parameter defaults in ``fn``'s signature (the low-precision keywords: ``lowp``)."""
    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if p.default is not p.empty and k not in LOWP_KEYWORDS
    }


def lowp(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if k in LOWP_KEYWORDS}


def functional_as_class(fn) -> dict:
    """The functional form's defaults under the class's names (``beta1``, ``beta2`` -> ``betas``)."""
    d = defaults(fn)
    if "beta1" in d:
        d["betas"] = (d.pop("beta1"), d.pop("beta2"))
    return d


@pytest.mark.parametrize("name", NAMES)
def test_optim_class_and_functional_defaults_agree(name):
    cls, fn = defaults(getattr(optim, name)), functional_as_class(getattr(F, NAMES[name]))
    shared = set(cls) & set(fn)
    assert {"lr", "weight_decay"} <= shared, shared
    assert {k: cls[k] for k in shared} == {k: fn[k] for k in shared}


@pytest.mark.parametrize("name", NAMES)
def test_optkern_torch_defaults_are_optims_and_torchs(name):
    torch = pytest.importorskip("torch")
    import optkern.torch as ot
    from optkern.torch._impl_keywords import TORCH_IMPL_KEYWORDS

    ours, adapter = defaults(getattr(optim, name)), defaults(getattr(ot, name))
    # torch's implementation keywords (foreach, fused, ...): torch's defaults where torch has them
    impl = {k: adapter.pop(k) for k in TORCH_IMPL_KEYWORDS if k in adapter}
    assert impl == {k: TORCH_IMPL_KEYWORDS[k] for k in impl}
    if hasattr(torch.optim, name):
        sig = inspect.signature(getattr(torch.optim, name)).parameters
        assert {k: sig[k].default for k in impl if k in sig} == {k: v for k, v in impl.items() if k in sig}
    assert set(ours) - OPTKERN_ONLY == set(adapter)
    assert lowp(getattr(optim, name)) == lowp(getattr(ot, name))
    # decoupled_weight_decay=None in the adapter means "the class's own" (Adam False, AdamW True)
    params = [torch.zeros(3)]
    held = getattr(ot, name)(params).param_groups[0]
    for k, v in ours.items():
        if k in OPTKERN_ONLY:
            continue
        assert held[k] == v, (k, held[k], v)
        if adapter[k] is not None:
            assert adapter[k] == v, (k, adapter[k], v)
    if hasattr(torch.optim, name):
        theirs = torch.optim.__dict__[name]([torch.zeros(3)]).param_groups[0]
        for k in set(ours) & set(theirs):
            assert theirs[k] == ours[k], (k, theirs[k], ours[k])


@pytest.mark.parametrize("name", NAMES)
def test_optim_class_holds_its_signature_defaults(name):
    p = np.zeros(3)
    held = getattr(optim, name)([p]).param_groups[0]
    for k, v in defaults(getattr(optim, name)).items():
        assert held[k] == v, (k, held[k], v)


def test_lbfgs_defaults_are_torchs_in_both_classes():
    """optkern.optim.LBFGS and optkern.torch.LBFGS: torch.optim.LBFGS's defaults, in the signature
    and in the group a constructed optimizer holds (max_eval=None resolved as torch resolves it)."""
    torch = pytest.importorskip("torch")
    import optkern.torch as ot

    theirs = defaults(torch.optim.LBFGS)
    assert defaults(optim.LBFGS) == defaults(ot.LBFGS) == theirs
    held = torch.optim.LBFGS([torch.zeros(3)]).param_groups[0]
    for ours in (optim.LBFGS([np.zeros(3)]), ot.LBFGS([torch.zeros(3)])):
        assert {k: v for k, v in ours.param_groups[0].items() if k != "params"} == {
            k: v for k, v in held.items() if k != "params"
        }
