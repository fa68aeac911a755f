"""dropout_, random_uniform_, random_rademacher_ and philox4x32_10 are declared once for both native
modules (cpp/include/optkern/signatures_random.hpp), as the other shared kernels are in signatures*.hpp;
so are the reductions and gradient transforms (grad_norm*, grad_sq_norm, clip_scale_, clamp_, all_finite,
penalty_*, precheck_step_: signatures_reduce.hpp), which were bound twice too, with drifted docstrings and a
penalty_value whose `out` was optional on the CPU only.

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
HEADERS = ROOT / "cpp" / "include" / "optkern"
SHARED = {
    **dict.fromkeys(("dropout_", "random_uniform_", "random_rademacher_", "philox4x32_10"), "signatures_random.hpp"),
    **dict.fromkeys(
        (
            "all_finite",
            "clamp_",
            "clip_scale_",
            "grad_norm",
            "grad_norm_chunk",
            "grad_norm_finish",
            "grad_norm_parts",
            "grad_sq_norm",
            "penalty_grad_",
            "penalty_value",
            "precheck_step_",
        ),
        "signatures_reduce.hpp",
    ),
}
NAMES = tuple(SHARED)
# The one part of a signature each module writes itself: what it returns. The CPU's hand the value
# back as well; the GPU's return None (or Any), the value staying on the device (no host sync).
RETURNS = {
    "grad_norm": ("float", "None"),
    "grad_norm_finish": ("float", "None"),
    "grad_sq_norm": ("float", "None"),
    "grad_norm_parts": ("numpy.typing.NDArray[numpy.float64]", "typing.Any"),
    "penalty_value": ("float", "typing.Any"),
}


def _defs(text: str, name: str) -> int:
    # (m.def, or def_named(m, ...): m.def with its reals converted by name, optkern/named_reals.hpp)
    return len(re.findall(r'(?:\.def\(|\bdef_named\(\s*m,)\s*"' + re.escape(name) + '"', text))


@pytest.mark.parametrize("name", NAMES)
def test_bound_once_in_the_shared_header(name):
    assert _defs((HEADERS / SHARED[name]).read_text(), name) == 1
    feature_files = [*(ROOT / "cpp").glob("*.[ch]pp"), *(ROOT / "cuda").glob("*.cu*"), *(ROOT / "cuda").glob("*.hpp")]
    own = [p.relative_to(ROOT).as_posix() for p in feature_files if _defs(p.read_text(), name)]
    assert own == [], f"{name} bound outside {SHARED[name]}"


def _stub_entry(stub: str, name: str) -> str:
    """The stub's def of `name`: signature and docstring, whitespace normalised."""
    text = (ROOT / "src" / "optkern" / stub).read_text()
    m = re.search(r"^def " + re.escape(name) + r"\(.*?\"\"\"(.*?)\"\"\"", text, re.S | re.M)
    assert m, f"no {name} in {stub}"
    return " ".join(m.group(0).split())


def _split_return(entry: str) -> tuple[str, str]:
    """(the entry with its return annotation cut out, that annotation)."""
    m = re.search(r"\) -> (.*?):( \"\"\")", entry)
    assert m, entry
    return entry[: m.start(1)] + entry[m.end(1) :], m.group(1)


@pytest.mark.parametrize("name", NAMES)
def test_cpu_and_cuda_stubs_agree(name):
    # names, parameters, their types and defaults, and docstrings the same; the returns as listed
    (cpu, cpu_ret), (cuda, cuda_ret) = (_split_return(_stub_entry(s, name)) for s in ("_cpu.pyi", "_cuda.pyi"))
    assert cpu == cuda
    assert (cpu_ret, cuda_ret) == RETURNS.get(name, (cpu_ret, cpu_ret))


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
