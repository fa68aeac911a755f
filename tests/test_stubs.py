"""The native modules' stubs (src/optkern/_cpu.pyi, _cuda.pyi) list every function the built module
has, with its parameters in order.

``mypy.stubtest`` cannot read a pybind11 function's signature and does not report a function missing
from the stub, so it passed while _cpu.pyi lacked 23 functions and showed channel_stats without two
of its parameters. Here each function's signature line (pybind11 writes it first in ``__doc__``) is
compared with the stub's ``def``. Regenerate with ``pybind11-stubgen optkern._cpu -o src`` (CONTRIBUTING.md).
"""

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "optkern"


def _split_params(text: str) -> list[str]:
    """Top-level comma-separated items of a parameter list (brackets nest)."""
    items, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur)
    return [i.split(":")[0].split("=")[0].strip() for i in items]


def _classes(mod) -> set[str]:
    """The module's classes (``_cpu.HeldCapsules``): no signature line, listed as classes in the stub."""
    return {n for n in dir(mod) if not n.startswith("__") and isinstance(getattr(mod, n), type)}


def _constants(mod) -> set[str]:
    """The module's data (``FLOAT32_LR_OPERANDS``): no signature line, annotated names in the stub."""
    return {n for n in dir(mod) if not n.startswith("__") and not callable(getattr(mod, n))}


def _runtime(mod) -> dict:
    out = {}
    for name in sorted(set(dir(mod)) - _classes(mod) - _constants(mod)):
        if name.startswith("__"):
            continue
        first = (getattr(mod, name).__doc__ or "").splitlines()[:1]
        assert first and first[0].startswith(name + "("), f"{name}: no pybind11 signature line: {first}"
        out[name] = _split_params(first[0][len(name) + 1 : first[0].rindex(") ->")])
    return out


def _stub(path: Path) -> dict:
    tree = ast.parse(path.read_text())
    return {
        f.name: [a.arg for a in (*f.args.posonlyargs, *f.args.args, *f.args.kwonlyargs)]
        for f in tree.body
        if isinstance(f, ast.FunctionDef)
    }


def _module(name: str):
    try:
        return importlib.import_module(f"optkern.{name}")
    except ImportError as e:  # the CUDA module is built only where nvcc is (CI: CPU only)
        pytest.skip(f"optkern.{name} is not built here: {e}")


@pytest.mark.parametrize("name", ["_cpu", "_cuda"])
def test_stub_lists_every_class(name):
    tree = ast.parse((SRC / f"{name}.pyi").read_text())
    assert _classes(_module(name)) == {c.name for c in tree.body if isinstance(c, ast.ClassDef)}


@pytest.mark.parametrize("name", ["_cpu", "_cuda"])
def test_stub_lists_every_constant(name):
    tree = ast.parse((SRC / f"{name}.pyi").read_text())
    stub = {a.target.id for a in tree.body if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)}
    stub.discard("__all__")  # (the stub's export list, not the module's data)
    assert _constants(_module(name)) == stub


@pytest.mark.parametrize("name", ["_cpu", "_cuda"])
def test_stub_lists_every_function_with_its_parameters(name):
    runtime, stub = _runtime(_module(name)), _stub(SRC / f"{name}.pyi")
    assert sorted(set(runtime) - set(stub)) == [], "in the module, not in the stub"
    assert sorted(set(stub) - set(runtime)) == [], "in the stub, not in the module"
    wrong = {n: (stub[n], p) for n, p in runtime.items() if stub[n] != p}
    assert not wrong, f"parameters differ (stub, module): {wrong}"


def test_the_splitter_keeps_nested_types_whole():
    text = "x: list[typing.SupportsFloat], y: dict[str, int] = {}, *, z: object = None"
    assert _split_params(text) == ["x", "y", "*", "z"]
