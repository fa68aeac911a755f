"""What the documentation promises against what the code gives (45th session's docs hunt, g).

- Public callables without a docstring: ``help()`` showed nothing for ``optkern.cuda_built``,
  ``Communicator.barrier`` / ``allgather_object`` / ``gather_object`` / ``bcast_object``,
  ``DistributedOptimizer.zero_grad_buffers``, ``SAM.step``, ``NewtonCG.state_dict``,
  ``AveragedParams.state_dict``, GradScaler's ``get_*`` getters, ``Schedule.value``; and every
  first-order optimizer's ``state_dict`` (the low-precision mixin's override had none, hiding
  ``Optimizer.state_dict``'s). ``regularize.soft_targets`` did not say what ``n`` is.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

# the modules the README's API table names (their public names: ``__all__``)
PUBLIC = [
    "optkern",
    "optkern.optim",
    "optkern.functional",
    "optkern.amp",
    "optkern.swa",
    "optkern.swalp",
    "optkern.lowp",
    "optkern.schedules",
    "optkern.norm",
    "optkern.distributed",
    "optkern.nn",
    "optkern.hessian",
    "optkern.regularize",
    "optkern.random",
    "optkern.data",
    "optkern.checkpoint",
]


def _undocumented(modname: str) -> list[str]:
    mod = importlib.import_module(modname)
    missing = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if not (getattr(obj, "__module__", "") or "").startswith("optkern"):
            continue
        own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        if not own:
            missing.append(name)
        if not inspect.isclass(obj):
            continue
        for attr in dir(obj):
            if attr.startswith("_"):
                continue
            raw = inspect.getattr_static(obj, attr)
            fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if inspect.isfunction(fn) and (fn.__module__ or "").startswith("optkern"):
                if not inspect.getdoc(getattr(obj, attr)):  # (inherited docstrings count: help() shows them)
                    missing.append(f"{name}.{attr}")
    return missing


@pytest.mark.parametrize("modname", PUBLIC)
def test_every_public_callable_has_a_docstring(modname):
    assert _undocumented(modname) == []


def test_every_public_callable_of_the_torch_adapter_has_a_docstring():
    pytest.importorskip("torch")  # (an optional dependency: optkern.torch does not import without it)
    assert _undocumented("optkern.torch") == []


def test_soft_targets_documents_n():
    from optkern.regularize import soft_targets

    assert "``n``" in soft_targets.__doc__


def _subparser(name: str):
    from optkern.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command")
    return sub.choices[name]


def test_bench_help_says_what_the_default_suite_runs():
    """``optkern bench`` alone runs ``all`` (optim, norm, hvp): its --help did not say so."""
    from optkern.benchmarks.suite import ALL

    suite = next(a for a in _subparser("bench")._actions if a.dest == "suite")
    assert suite.default == "all"
    assert f"default all: {', '.join(ALL)}" in suite.help


def test_info_has_a_description():
    assert "optkern.info()" in (_subparser("info").description or "")
