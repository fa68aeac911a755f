"""tools/cuda_emu's Python modules for the tests that check the tools themselves, loaded from their
files under private names: putting tools/cuda_emu/py on sys.path would make its CuPy stand-in
``import cupy`` for every later test of the session (test_distributed's CuPy check then launched MPI
ranks that had none), and a module named ``build`` would shadow PyPA's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EMU = Path(__file__).resolve().parents[1] / "tools" / "cuda_emu"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # (dataclasses and pickling look a module up by its name)
    spec.loader.exec_module(mod)
    return mod


build = _load("okemu_tools_build", EMU / "build.py")
plugin = _load("okemu_tools_plugin", EMU / "py" / "okemu_plugin.py")
