"""tools/cuda_emu/build.py recompiles a unit when a file it includes changed, and only then.

Before, any change under cuda/ or cpp/include recompiled all twenty units (~30 minutes on a loaded
2-core VM) although most units include a fraction of the headers; now each object's own .d file
(the compiler's list of what it read) decides.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from emu_tools import build as emu_build

CXX = shutil.which("c++") or shutil.which("g++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler")
FLAGS = ["-std=c++17", "-O0"]


def _later(path: Path, than: Path) -> None:
    """Mark ``path`` as written after ``than`` (file systems with coarse timestamps included)."""
    t = than.stat().st_mtime + 2
    os.utime(path, (t, t))


@pytest.fixture
def units(tmp_path):
    (tmp_path / "a.h").write_text("inline int a() { return 1; }\n")
    (tmp_path / "b.h").write_text("inline int b() { return 2; }\n")
    (tmp_path / "ua.cpp").write_text('#include "a.h"\nint ua() { return a(); }\n')
    (tmp_path / "ub.cpp").write_text('#include "b.h"\nint ub() { return b(); }\n')
    for u in ("ua", "ub"):
        assert emu_build._compile(CXX, tmp_path / f"{u}.cpp", tmp_path / f"{u}.o", FLAGS) is None
    return tmp_path


def test_a_compiled_unit_is_fresh_and_lists_what_it_included(units):
    deps = emu_build._read_deps(units / "ua.d")
    assert {p.name for p in deps} == {"ua.cpp", "a.h"}
    assert not emu_build._stale(CXX, units / "ua.cpp", units / "ua.o", FLAGS)


def test_a_changed_header_recompiles_only_the_units_that_include_it(units):
    _later(units / "a.h", units / "ua.o")
    assert emu_build._stale(CXX, units / "ua.cpp", units / "ua.o", FLAGS)
    assert not emu_build._stale(CXX, units / "ub.cpp", units / "ub.o", FLAGS)
    _later(units / "ub.cpp", units / "ub.o")
    assert emu_build._stale(CXX, units / "ub.cpp", units / "ub.o", FLAGS)


def test_an_object_without_a_dep_file_gets_one_from_the_preprocessor(units):
    (units / "ua.d").unlink()
    assert not emu_build._stale(CXX, units / "ua.cpp", units / "ua.o", FLAGS)
    assert {p.name for p in emu_build._read_deps(units / "ua.d")} == {"ua.cpp", "a.h"}
    _later(units / "a.h", units / "ua.o")
    assert emu_build._stale(CXX, units / "ua.cpp", units / "ua.o", FLAGS)


def test_a_missing_object_or_a_vanished_header_or_a_forced_rebuild_is_stale(units, monkeypatch):
    (units / "ub.o").unlink()
    assert emu_build._stale(CXX, units / "ub.cpp", units / "ub.o", FLAGS)
    (units / "a.h").rename(units / "a2.h")
    assert emu_build._stale(CXX, units / "ua.cpp", units / "ua.o", FLAGS)
    (units / "a2.h").rename(units / "a.h")
    assert not emu_build._stale(CXX, units / "ua.cpp", units / "ua.o", FLAGS)
    monkeypatch.setenv("OKEMU_REBUILD", "1")
    assert emu_build._stale(CXX, units / "ua.cpp", units / "ua.o", FLAGS)
