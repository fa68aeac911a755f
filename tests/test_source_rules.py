"""Rules on the C++ and CUDA sources that no compiler checks.

pybind11 converts Python sequences to std::vector / std::array / std::optional only in translation
units that include ``pybind11/stl.h``. A cast through it in a header that some units compile with
stl.h and others without is an ODR violation: the linker keeps one of the two instantiations, and the
units that needed the other fail at run time ("Unable to cast Python instance of type tuple").
That is how every CuPy ``activation_fwd`` failed on the first GPU run (``DeviceArrays::shape``).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADERS = sorted(p for d in ("cpp", "cuda") for p in (ROOT / d).rglob("*") if p.suffix in (".hpp", ".cuh", ".h"))
STL_CAST = re.compile(r"\.cast<\s*std::(vector|array|optional|map|set|tuple|pair)\b")


def test_the_headers_are_found():
    assert len(HEADERS) > 10, [p.name for p in HEADERS]


@pytest.mark.parametrize("path", HEADERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_header_casts_through_pybind11_stl(path):
    hits = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if STL_CAST.search(line)
    ]
    assert not hits, "a header converts through pybind11/stl.h (read element by element instead):\n" + "\n".join(hits)


def test_the_rule_catches_the_first_gpu_run_defect():
    assert STL_CAST.search('return h.attr("shape").cast<std::vector<int64_t>>();')
    assert not STL_CAST.search("s.push_back(d.cast<int64_t>());")
