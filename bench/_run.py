"""Shared by the bench/*.py wrappers: run ``optkern bench <suite>`` from a source checkout.

Uses the checkout's src/ when it holds a built extension (``cmake --build``
writes it there), else the installed optkern.
"""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path


def default_json(suite: str, argv: list) -> list:
    """``--json bench/results-<suite>-<device>[-quick].json`` unless ``argv`` names a file."""
    if any(a == "--json" or a.startswith("--json=") for a in argv):
        return []
    device = "cpu"
    for i, a in enumerate(argv):
        if a == "--device" and i + 1 < len(argv):
            device = argv[i + 1]
        elif a.startswith("--device="):
            device = a.split("=", 1)[1]
    quick = "-quick" if "--quick" in argv else ""
    return ["--json", str(Path(__file__).resolve().parent / f"results-{suite}-{device}{quick}.json")]


def bench(suite: str, argv: list, extra: tuple = ()) -> int:
    """``optkern bench suite *extra *argv`` (``--device``, ``--quick``, ``--json``, ``--threads``);
    the results are also written as JSON (default: bench/results-<suite>-<device>.json)."""
    src = Path(__file__).resolve().parents[1] / "src"
    if any((src / "optkern" / f"_cpu{sfx}").exists() for sfx in EXTENSION_SUFFIXES):
        sys.path.insert(0, str(src))
    from optkern.cli import main

    return main(["bench", suite, *extra, *argv, *default_json(suite, argv)])
