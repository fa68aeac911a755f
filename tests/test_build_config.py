"""Build configuration, through CMake configure runs (no compiling): which CUDA
architectures OPTKERN_CUDA=AUTO picks (cmake/optkern_cuda.cmake), that AUTO
with no visible GPU skips the CUDA module and says so in one line, and that
pip's moving pybind11 headers leave the compile lines unchanged.

A stand-in nvidia-smi plays the GPUs, so the results do not depend on the
machine's own."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAN = os.path.join(ROOT, "tests", "cmake", "cuda_plan")
CMAKE = shutil.which("cmake")
pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake is not on PATH")
NO_GPU_LINE = "optkern: no CUDA GPU visible: building the CPU module only"


def _fake_smi(tmp_path, out: str = "", rc: int = 0) -> str:
    """An nvidia-smi that prints ``out`` and exits with ``rc`` (9: the driver's "no devices")."""
    p = tmp_path / "nvidia-smi"
    p.write_text(f"#!/bin/sh\nprintf '{out}'\nexit {rc}\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def _configure(src, build, *defs, env=None, check=True):
    e = {k: v for k, v in os.environ.items() if k not in ("CUDAARCHS", "CUDA_VISIBLE_DEVICES")}
    e.update(env or {})
    r = subprocess.run(
        [CMAKE, "-S", str(src), "-B", str(build), *defs],
        capture_output=True,
        text=True,
        env=e,
        timeout=300,
        check=False,
    )
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def _plan(tmp_path, *defs, smi=None, env=None):
    r = _configure(PLAN, tmp_path / "b", f"-DOPTKERN_NVIDIA_SMI={smi or tmp_path / 'missing'}", *defs, env=env)
    m = re.search(r"plan: build=(\w+) archs=(\S*)", r.stdout)
    assert m, r.stdout
    return m.group(1) == "TRUE", m.group(2), r.stdout


@pytest.mark.spawns
def test_auto_builds_for_the_visible_gpus_only(tmp_path):
    build, archs, out = _plan(tmp_path, smi=_fake_smi(tmp_path, "8.6\\n8.6\\n9.0\\n"))
    assert build and archs == "86;90"
    assert "CUDA module for the visible GPU architecture(s) 86, 90" in out


@pytest.mark.spawns
@pytest.mark.parametrize(
    "how", ["no nvidia-smi", "driver reports no device", "prints nothing", "CUDA_VISIBLE_DEVICES empty"]
)
def test_auto_without_a_visible_gpu_skips_cuda_in_one_line(tmp_path, how):
    smi = {
        "no nvidia-smi": lambda: None,
        "driver reports no device": lambda: _fake_smi(tmp_path, "No devices\\n", 9),
        "prints nothing": lambda: _fake_smi(tmp_path),
        "CUDA_VISIBLE_DEVICES empty": lambda: _fake_smi(tmp_path, "9.0\\n"),
    }[how]()
    env = {"CUDA_VISIBLE_DEVICES": ""} if how == "CUDA_VISIBLE_DEVICES empty" else None
    build, archs, out = _plan(tmp_path, smi=smi, env=env)
    assert not build and archs == ""
    assert sum(NO_GPU_LINE in line for line in out.splitlines()) == 1


@pytest.mark.spawns
@pytest.mark.parametrize(
    "defs, env, archs",
    [
        (["-DOPTKERN_CUDA=ON"], None, ""),  # cuda/CMakeLists.txt's default list
        (["-DCMAKE_CUDA_ARCHITECTURES=80"], None, "80"),  # asked for: built although no GPU is visible
        ([], {"CUDAARCHS": "75"}, ""),  # read by enable_language(CUDA) itself
    ],
)
def test_on_or_chosen_architectures_build_without_a_gpu(tmp_path, defs, env, archs):
    build, got, out = _plan(tmp_path, *defs, env=env)
    assert build and got == archs and NO_GPU_LINE not in out


@pytest.mark.spawns
def test_off_never_builds_cuda_and_a_bad_value_is_an_error(tmp_path):
    build, _, out = _plan(tmp_path, "-DOPTKERN_CUDA=OFF", smi=_fake_smi(tmp_path, "9.0\\n"))
    assert not build and "optkern:" not in out
    r = _configure(PLAN, tmp_path / "c", "-DOPTKERN_CUDA=maybe", check=False)
    assert r.returncode != 0 and "OPTKERN_CUDA must be AUTO, ON or OFF" in r.stderr


# ---- the real project -----------------------------------------------------------


def _pybind11_dir():
    pybind11 = pytest.importorskip("pybind11", reason='pybind11 is not installed (pip install ".[test]")')
    return pybind11.get_cmake_dir()


def _compile_lines(build) -> list:
    """The include / flag / define lines of every compile command CMake generated."""
    text = "\n".join(
        Path(d, f).read_text() for d, _, fs in os.walk(build) for f in fs if f in ("build.ninja", "flags.make")
    )
    return [ln for ln in text.splitlines() if re.match(r"\s*(CXX_)?(INCLUDES|FLAGS|DEFINES)\s*=", ln)]


@pytest.mark.spawns
def test_project_configure_with_auto_and_no_gpu_has_no_cuda_target(tmp_path):
    pb = _pybind11_dir()
    smi = _fake_smi(tmp_path, "No devices were found\\n", 9)
    r = _configure(
        ROOT,
        tmp_path / "b",
        "-G",
        "Ninja" if shutil.which("ninja") else "Unix Makefiles",
        f"-Dpybind11_DIR={pb}",
        f"-DOPTKERN_NVIDIA_SMI={smi}",
        "-DOPTKERN_LTO=OFF",
    )
    assert not any("-flto" in ln for ln in _compile_lines(tmp_path / "b"))  # OPTKERN_LTO=OFF: no LTO
    assert sum(NO_GPU_LINE in line for line in r.stdout.splitlines()) == 1, r.stdout
    files = os.listdir(tmp_path / "b")
    assert "cuda" not in files and "CMakeFiles" in files
    r = subprocess.run(
        [CMAKE, "--build", str(tmp_path / "b"), "--target", "help"], capture_output=True, text=True, check=True
    )
    assert "_cpu" in r.stdout and "_cuda" not in r.stdout


@pytest.mark.spawns
def test_pip_builds_compile_against_a_stable_copy_of_pybind11(tmp_path):
    """Each `pip install` sees pybind11 and NumPy in a new temporary folder; the compile
    lines (and so ninja's and ccache's view) must not change with it."""
    import numpy as np

    pb = _pybind11_dir()
    root = os.path.dirname(os.path.dirname(os.path.dirname(pb)))  # .../site-packages/pybind11
    lines, mtimes = [], []
    for i in range(2):
        copy = tmp_path / f"env{i}" / "pybind11"
        shutil.copytree(root, copy)
        rel = os.path.relpath(pb, root)
        np_copy = tmp_path / f"env{i}" / "numpy-include"  # (NumPy's headers move with pip's environment too)
        shutil.copytree(np.get_include(), np_copy)
        _configure(
            ROOT,
            tmp_path / "b",
            "-G",
            "Ninja" if shutil.which("ninja") else "Unix Makefiles",
            f"-Dpybind11_DIR={copy / rel}",
            f"-DPython_NumPy_INCLUDE_DIR={np_copy}",
            "-DSKBUILD=ON",
            "-DOPTKERN_CUDA=OFF",
        )
        compile_lines = _compile_lines(tmp_path / "b")
        assert any("-flto" in ln for ln in compile_lines)  # OPTKERN_LTO's default: pybind11's LTO
        assert compile_lines and not any(str(tmp_path / f"env{i}") in ln for ln in compile_lines)
        lines.append(compile_lines)
        mtimes.append(os.stat(tmp_path / "b" / "pybind11-include" / "pybind11" / "pybind11.h").st_mtime_ns)
        shutil.rmtree(tmp_path / f"env{i}")  # as pip removes its build environment
    assert lines[0] == lines[1] and any(str(tmp_path / "b" / "pybind11-include") in ln for ln in lines[0])
    assert any(str(tmp_path / "b" / "numpy-include") in ln for ln in lines[0])
    assert mtimes[0] == mtimes[1]  # an unchanged header is not rewritten, so nothing recompiles
