"""dropout_, random_uniform_, random_rademacher_ and philox4x32_10 are declared once for both native
modules (cpp/include/optkern/signatures_random.hpp), as the other shared kernels are in signatures*.hpp.

They were bound twice -- cpp/dropout.cpp + cpp/random.cpp and cuda/dropout.cu each with its own argument
list, docstring and p check -- which is how a stale dropout_ docstring (the float32(p) rule) sat in both
modules. Here: no feature file binds these names itself, the header binds each exactly once, and the two
stubs give each the same signature and docstring (the built _cpu module's own docstring too).
"""

import re
from pathlib import Path

import pytest

from optkern import _cpu

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("dropout_", "random_uniform_", "random_rademacher_", "philox4x32_10")
HEADER = ROOT / "cpp" / "include" / "optkern" / "signatures_random.hpp"


def _defs(text: str, name: str) -> int:
    return len(re.findall(r'\.def\(\s*"' + re.escape(name) + '"', text))


@pytest.mark.parametrize("name", NAMES)
def test_bound_once_in_the_shared_header(name):
    assert _defs(HEADER.read_text(), name) == 1
    feature_files = [*(ROOT / "cpp").glob("*.[ch]pp"), *(ROOT / "cuda").glob("*.cu*"), *(ROOT / "cuda").glob("*.hpp")]
    own = [p.relative_to(ROOT).as_posix() for p in feature_files if _defs(p.read_text(), name)]
    assert own == [], f"{name} bound outside signatures_random.hpp"


def _stub_entry(stub: str, name: str) -> str:
    """The stub's def of `name`: signature and docstring, whitespace normalised."""
    text = (ROOT / "src" / "optkern" / stub).read_text()
    m = re.search(r"^def " + re.escape(name) + r"\(.*?\"\"\"(.*?)\"\"\"", text, re.S | re.M)
    assert m, f"no {name} in {stub}"
    return " ".join(m.group(0).split())


@pytest.mark.parametrize("name", NAMES)
def test_cpu_and_cuda_stubs_agree(name):
    assert _stub_entry("_cpu.pyi", name) == _stub_entry("_cuda.pyi", name)


@pytest.mark.parametrize("name", NAMES)
def test_cpu_module_doc_is_the_stubs(name):
    # The docstring below pybind11's signature line is the one the stubs were generated from.
    doc = " ".join(getattr(_cpu, name).__doc__.split("\n", 1)[1].split())
    stub = _stub_entry("_cpu.pyi", name)
    assert stub.endswith('""" ' + doc + ' """'), (doc, stub)


def test_dropout_p_checked_before_the_arrays():
    # The one p check (sig::check_dropout_p) runs before x is looked at: a bad p with a bad x names p.
    with pytest.raises(ValueError, match=r"^p: must be in \[0, 1\]"):
        _cpu.dropout_(None, None, 1.5, 0, 0)
    with pytest.raises(ValueError, match=r"^p: must be in \[0, 1\]"):
        _cpu.dropout_(None, None, float("nan"), 0, 0)
