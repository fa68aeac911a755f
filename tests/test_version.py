"""The version is written once, in pyproject.toml; Python and the native module report it."""

import pathlib
import re

import optkern
from optkern import _backend

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


def _declared():
    return re.search(r'^version = "([^"]+)"', PYPROJECT.read_text(), re.M).group(1)


def test_python_and_native_versions_are_the_pyproject_one():
    assert optkern.__version__ == _declared()
    assert _backend.cpu.build_info()["version"] == _declared()
    assert optkern.info()["version"] == _declared()
