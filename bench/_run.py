"""Shared by the bench/*.py wrappers: run ``optkern bench <suite>`` from a source checkout.

Uses the checkout's src/ when it holds a built extension (``cmake --build``
writes it there), else the installed optkern.
"""
from __future__ import annotations

import sys
from pathlib import Path


def bench(suite: str, argv: list, extra: tuple = ()) -> int:
    """``optkern bench suite *extra *argv`` (``--device``, ``--quick``, ``--json``, ``--threads``)."""
    src = Path(__file__).resolve().parents[1] / "src"
    if any((src / "optkern").glob("_cpu*")):
        sys.path.insert(0, str(src))
    from optkern.cli import main

    return main(["bench", suite, *extra, *argv])
