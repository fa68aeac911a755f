"""The CPU-only native functions, listed in the README, and what a device array gets from them (hunt 52e).

``optkern._cpu`` exports 31 functions ``optkern._cuda`` does not; the README's "CPU only" list
names each, and this test keeps it equal to the modules' difference (the CUDA module read from its
stub, which tests/test_stubs.py compares with the module where it is built). A direct call with an
object exporting ``__cuda_array_interface__`` (CuPy, a torch CUDA tensor) is a TypeError naming the
argument, not a crash or a host copy.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

from optkern import _cpu

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _defs(stub: str) -> set:
    return set(re.findall(r"^def (\w+)\(", (ROOT / "src" / "optkern" / stub).read_text(), re.M))


def _readme_list() -> set:
    text = (ROOT / "README.md").read_text()
    start = text.index("CPU only: these native functions")
    block = text[start : text.index("\n\n", start)]
    return set(re.findall(r"`(\w+)`", block)) - {"optkern", "_cpu", "_cuda"}


def test_the_readme_lists_every_cpu_only_function():
    cpu_only = _defs("_cpu.pyi") - _defs("_cuda.pyi")
    assert {n for n in dir(_cpu) if callable(getattr(_cpu, n)) and not n.startswith("__")} >= cpu_only
    assert len(cpu_only) == 31
    assert _readme_list() - _defs("_cuda.pyi") == cpu_only  # (the twins it mentions aside)


class _DeviceArray:
    """What a CuPy array looks like to the CPU module: no buffer, a CUDA array interface."""

    def __init__(self):
        self.__cuda_array_interface__ = {"shape": (4,), "typestr": "<f8", "data": (0, False), "version": 3}
        self.shape, self.dtype, self.size, self.ndim = (4,), np.dtype(np.float64), 4, 1


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda d: _cpu.combine_rows_(d, np.ones((1, 4)), np.zeros((1, 4))), "C"),
        (lambda d: _cpu.orthonormalize_rows_(d, np.zeros(1)), "Q"),
        (lambda d: _cpu.lanczos_orthogonalize_rows_(np.ones((1, 4)), 1, d, np.zeros((1, 1)), np.zeros(1)), "W"),
        (lambda d: _cpu.cg_start_(d, np.zeros(4), np.zeros(4), np.zeros(4), 1.0), "b"),
        (lambda d: _cpu.lbfgs_two_loop(1, d, np.ones((1, 1)), np.ones(1), np.ones(1), np.ones(1), 1.0), "sy"),
        (lambda d: _cpu.first_readonly_([np.zeros(2), d]), "arrays"),
        (lambda d: _cpu.probe_read([d]), "arrays"),
    ],
)
def test_a_device_array_is_refused_by_name(call, name):
    with pytest.raises(TypeError, match=rf"^{name}(\[\d+\])?: expected"):
        call(_DeviceArray())
