"""pytest plugin: optkern's CUDA module is the CPU-emulated build (tools/cuda_emu/build.py).

Loaded by tools/cuda_emu/run (``-p okemu_plugin``, with tools/cuda_emu/py and the CuPy
stand-in first on sys.path). OKEMU_BUILD names the build directory holding optkern/_cuda*.so.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import pytest


def pytest_configure(config) -> None:
    import optkern
    from optkern import _backend

    pkg = Path(os.environ["OKEMU_BUILD"]) / "optkern"
    optkern.__path__.insert(0, str(pkg))  # `from . import _cuda` finds the emulated one first
    cuda = _backend.cuda_module()
    assert Path(cuda.__file__).parent == pkg, f"optkern._cuda is {cuda.__file__}, not the emulated build"
    config._okemu_lib = ctypes.CDLL(cuda.__file__)
    config._okemu_lib.okemu_launch_count.restype = ctypes.c_ulonglong
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # build.py


# Tests whose claim is about the machine, not the kernels: skipped here, with the reason.
NOT_EMULATED = {
    "tests/test_cuda_backend.py::test_device_count_is_a_count": "asserts no device without /dev/nvidia0; "
    "the emulator is a device",
    "tests/test_cuda_large.py::test_clip_grad_norm_beyond_2_31_elements": "8.6 GB of host memory",
    "tests/test_cuda_large.py::test_adam_step_beyond_2_31_elements": "35 GB of host memory",
    "tests/test_cuda_large.py::test_quantize_blockwise_beyond_2_31_elements": "11 GB of host memory",
    "tests/test_cuda_capture_cold.py::test_first_call_of_a_process_inside_a_graph_capture": "graph capture "
    "(and its fresh process would not load the emulated module)",
    "tests/test_distributed.py::test_cupy_and_nccl": "its mpiexec ranks import the real optkern._cuda "
    "(the plugin is not loaded there), and NCCL is not emulated",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        reason = NOT_EMULATED.get(item.nodeid.split("[")[0])
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"not emulated: {reason}"))


def _sites_run(lib) -> dict[str, int]:
    lib.okemu_launch_sites.restype = ctypes.c_size_t
    n = lib.okemu_launch_sites(None, 0)
    buf = ctypes.create_string_buffer(n)
    lib.okemu_launch_sites(buf, n)
    return {k: int(v) for k, v in (ln.split("\t") for ln in buf.value.decode().splitlines())}


def pytest_sessionfinish(session, exitstatus) -> None:
    config = session.config
    if hasattr(config, "workeroutput"):  # a pytest-xdist worker: the controller reports its launches
        lib = config._okemu_lib
        config.workeroutput["okemu"] = {"launches": lib.okemu_launch_count(), "sites": _sites_run(lib)}


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: with -n the tests, and launches, run in workers
def pytest_testnodedown(node, error) -> None:
    got = getattr(node, "workeroutput", {}).get("okemu")
    if got:
        node.config._okemu_workers = [*getattr(node.config, "_okemu_workers", []), got]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    import build  # tools/cuda_emu/build.py: the launch sites of cuda/

    lib = config._okemu_lib
    here = {"launches": lib.okemu_launch_count(), "sites": _sites_run(lib)}
    ran = [here, *getattr(config, "_okemu_workers", [])]
    sites = build.launch_sites()
    never = [s for s in sites if not any(s in r["sites"] for r in ran)]
    w = terminalreporter.write_line
    w(
        f"cuda_emu: {sum(r['launches'] for r in ran)} kernel launches ran on the emulated device; "
        f"{len(sites) - len(never)} of {len(sites)} launch sites in cuda/ ran"
    )
    for s in never:
        w(f"cuda_emu: never launched: {s}")
