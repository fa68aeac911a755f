"""What ``help()`` / ``python -m pydoc`` show of the public API (54th session's docs hunt, e).

- ``optkern.init``, ``optkern.datasets`` and ``optkern.threads`` had no ``__all__``: pydoc then
  lists only what a module defines itself, so ``help(optkern.init)`` left out ``orthogonal_``,
  ``trunc_normal_``, ``constant_``, ``ones_``, ``eye_``, ``dirac_``, ``sparse_``, ``lsuv_``,
  ``lsuv_mlp_`` and ``make_rng`` (the README's API table names most of them), ``help(optkern.datasets)``
  listed the split's helper ``untrained_classes`` and not ``DataError``, and ``import *`` brought
  ``math``, ``np``, ``os``, ``ctypes``... along.
- ``optkern.init``'s new-array forms (``normal(shape, ...)``) showed ``(shape, *args, dtype, xp,
  **kw)``: their signatures now name the in-place form's arguments. The module docstring said
  "every initializer comes twice"; the fixed fills come only in place.
- ``StudyConfig.quick`` / ``validate`` / ``checkpoint_epochs`` and ``BlockKrylov.eig`` (public
  names of public modules) had no docstring.
- Every ``Args:`` section of a public function names only its parameters (checked over every
  module the README's API table names: none named another at this commit).
"""

from __future__ import annotations

import importlib
import inspect
import pydoc
import re

import numpy as np
import pytest

from test_hunt45g_docs import PUBLIC, _undocumented

# public modules the README names, beyond test_hunt45g_docs' list
MORE = ["optkern.init", "optkern.datasets", "optkern.threads", "optkern.clip", "optkern.study", "optkern.torch"]
MODULES = PUBLIC + MORE


def _module(name: str):
    if name == "optkern.torch":
        pytest.importorskip("torch")  # (an optional dependency: optkern.torch does not import without it)
    return importlib.import_module(name)


@pytest.mark.parametrize("name", MODULES)
def test_pydoc_lists_every_public_name(name):
    mod = _module(name)
    assert isinstance(getattr(mod, "__all__", None), list), f"{name} has no __all__"
    text = pydoc.plain(pydoc.render_doc(mod))
    shown = set(re.findall(r"^ {4}(?:class )?([A-Za-z_]\w*)(?:\(| = )", text, re.M))
    # (a subpackage is listed under PACKAGE CONTENTS, __version__ apart)
    names = [n for n in mod.__all__ if not n.startswith("__") and not inspect.ismodule(getattr(mod, n))]
    missing = [n for n in names if n not in shown]
    assert not missing, f"help({name}) does not show {missing}"
    assert "untrained_classes" not in shown  # (a helper of optkern.datasets' Dataset.split)


def test_the_readme_init_names_are_public():
    import optkern.init as init

    for n in ["orthogonal_", "lsuv_", "lsuv_mlp_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_"]:
        assert n in init.__all__, n
    for n in ["dirac_", "sparse_", "make_rng", "calculate_gain", "calculate_fan_in_and_fan_out"]:
        assert n in init.__all__, n


@pytest.mark.parametrize("name", MODULES)
def test_star_import_brings_no_modules(name):
    _module(name)
    ns: dict = {}
    exec(f"from {name} import *", ns)
    # (a package may export its own subpackages: optkern's __all__ names optim, norm, ...)
    modules = sorted(k for k, v in ns.items() if inspect.ismodule(v) and not v.__name__.startswith(name + "."))
    assert not modules, f"from {name} import * brings {modules}"
    assert "annotations" not in ns


NEW_FORMS = ["normal", "uniform", "lecun_normal", "xavier_uniform", "kaiming_normal", "geometric_uniform"]
NEW_FORMS += ["orthogonal", "trunc_normal", "sparse"]


@pytest.mark.parametrize("name", NEW_FORMS)
def test_new_array_forms_show_their_arguments(name):
    import optkern.init as init

    new, fill_ = getattr(init, name), getattr(init, name + "_")
    params = inspect.signature(new).parameters
    want = ["shape"] + list(inspect.signature(fill_).parameters)[1:] + ["dtype", "xp"]
    assert list(params) == want
    assert params["dtype"].default is np.float32 and params["xp"].default is np
    for k, p in inspect.signature(fill_).parameters.items():
        if k != "w":
            assert (params[k].kind, params[k].default) == (p.kind, p.default), k


def test_new_array_forms_take_the_arguments_they_show():
    import optkern.init as init

    a = init.normal((3, 5), mean=2.0, std=0.5, rng=7, dtype=np.float64)
    b = init.normal_(np.empty((3, 5)), 2.0, 0.5, rng=7)
    np.testing.assert_array_equal(a, b)
    s = init.sparse(shape=(7, 4), sparsity=0.5, rng=1)
    assert s.dtype == np.float32 and ((s == 0).sum(axis=0) == 4).all()
    with pytest.raises(TypeError):
        inspect.signature(init.uniform).bind((2,), 0.0, 1.0, 5)  # (rng is keyword-only, as in uniform_)
    with pytest.raises(TypeError):
        init.uniform((2,), 0.0, 1.0, 5)


@pytest.mark.parametrize("name", MORE)
def test_every_public_callable_has_a_docstring(name):
    _module(name)
    if not hasattr(importlib.import_module(name), "__all__"):
        pytest.fail(f"{name} has no __all__")
    assert _undocumented(name) == []


def test_block_krylov_eig_has_a_docstring():
    from optkern.hessian.krylov import BlockKrylov

    assert inspect.getdoc(BlockKrylov.eig)


# -- Args sections name real parameters --------------------------------------------------------------

_SECTION = re.compile(r"^(Args|Arguments|Parameters)\s*:\s*$")


def _args_names(doc: str) -> list[str]:
    """The names an ``Args:`` section documents (``a, b: text`` documents both)."""
    names: list[str] = []
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if not _SECTION.match(line):
            continue
        base, pending = None, ""
        for item in lines[i + 1 :]:
            if not item.strip():
                continue
            indent = len(item) - len(item.lstrip())
            if indent == 0:
                break
            base = indent if base is None else base
            if pending:  # (a list of names wrapped after a comma)
                item, pending = pending + " " + item.strip(), ""
            elif indent != base:
                continue
            if re.fullmatch(r"\s*[\w*][\w*, ]*,", item):
                pending = item
                continue
            head = re.match(r"\s*([\w*][\w*, ]*?)\s*(?:\([^)]*\))?\s*:", item)
            assert head, f"an Args line that names nothing: {item!r}"
            names += [n.strip().lstrip("*") for n in head.group(1).split(",")]
    return names


def _callables(mod):
    for name in mod.__all__:
        obj = getattr(mod, name)
        if not (getattr(obj, "__module__", "") or "").startswith("optkern"):
            continue
        if inspect.isfunction(obj):
            yield name, obj, inspect.getdoc(obj) or ""
        elif inspect.isclass(obj):
            init = obj.__init__
            own = inspect.cleandoc(vars(obj).get("__doc__") or "")
            if inspect.isfunction(init) and (init.__module__ or "").startswith("optkern"):
                own += "\n" + (inspect.getdoc(init) or "")
            yield name, obj, own
            for attr, raw in vars(obj).items():
                fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
                if not attr.startswith("_") and inspect.isfunction(fn):
                    yield f"{name}.{attr}", fn, inspect.getdoc(fn) or ""


@pytest.mark.parametrize("name", MODULES)
def test_args_sections_name_only_parameters(name):
    mod = _module(name)
    wrong = []
    for qual, obj, doc in _callables(mod):
        try:
            params = set(inspect.signature(obj).parameters)
        except (TypeError, ValueError):  # (no signature to compare with)
            continue
        extra = [n for n in _args_names(doc) if n not in params]
        if extra:
            wrong.append(f"{qual}: {extra} not in {sorted(params)}")
    assert not wrong, wrong


def test_args_parser_reads_a_section():
    doc = "Title.\n\nArgs:\n  a, b: first\n    more text: not a name\n  c (int): third\n  d,\n    e: wrapped\n"
    assert _args_names(doc + "\nReturns:\n  x: no\n") == ["a", "b", "c", "d", "e"]


def test_bench_threads_help_counts_logical_cpus_as_the_default_does():
    """``optkern bench --help`` said optkern's default was "all cores": it is one per logical CPU of
    the process (the README, ``study --threads`` and ``optkern.threads`` say so since the 53rd)."""
    from test_hunt45g_docs import _subparser

    action = next(a for a in _subparser("bench")._actions if a.dest == "threads")
    text = " ".join(action.help.split())
    assert "logical CPU" in text and "cores" not in text, text


@pytest.mark.spawns
def test_every_subpackage_the_package_docstring_lists_is_an_attribute_after_import_optkern():
    """optkern's docstring lists its subpackages, saying of ``torch`` alone to import it explicitly;
    after a plain ``import optkern``, ``optkern.amp`` / ``swa`` / ``swalp`` / ``distributed`` raised
    AttributeError (``lowp``, ``threads`` worked). A fresh process: this one imported them all."""
    import subprocess
    import sys

    import optkern

    doc = " ".join((optkern.__doc__ or "").split()).split("Subpackages:", 1)[1].split(".", 1)[0]
    names = [n for n in re.findall(r"``(\w+)`` \(", doc) if n != "torch"]
    assert {"optim", "amp", "swa", "swalp", "distributed", "lowp"} <= set(names), names
    code = (
        f"import sys, optkern; print([n for n in {names!r} if not hasattr(optkern, n)]); print('mpi4py' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["[]", "False"], res.stdout  # (and mpi4py still not imported)
    assert set(names) <= set(optkern.__all__)


@pytest.mark.parametrize("name, dtype", [("to_bfloat16", "bfloat16"), ("to_float16", "float16")])
def test_lowp_fixed_dtype_forms_show_to_halfs_keywords(name, dtype):
    """``help(optkern.lowp.to_float16)`` showed ``(x, **kw)``: now to_half's keywords, less ``dtype``."""
    from optkern import lowp

    fn = getattr(lowp, name)
    params = inspect.signature(fn).parameters
    want = {k: p for k, p in inspect.signature(lowp.to_half).parameters.items() if k != "dtype"}
    assert list(params) == list(want) and all(params[k].default == p.default for k, p in want.items())
    x = np.linspace(-3, 3, 11, dtype=np.float32)
    kw = {"rounding": "stochastic", "seed": 5, "step": 2, "offset": 7, "raw": True}
    inspect.signature(fn).bind(x, **kw)
    np.testing.assert_array_equal(fn(x, **kw), lowp.to_half(x, dtype, **kw))
    with pytest.raises(TypeError):
        fn(x, dtype)  # (keyword-only, as to_half's)
