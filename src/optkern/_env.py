"""optkern's own environment variables, read once, when the package is imported.

A bad value raises a ValueError naming the variable. When the process is the ``optkern`` command
(the console script, ``python -m optkern`` or ``python -m optkern.cli``) that error comes before
``cli.main`` can catch anything (a submodule's import runs this package's ``__init__`` first), so
``__init__`` turns it into the command's one-line error and exit status 2 there (:func:`cli_exit`);
anywhere else (a program that imports optkern) the ValueError is raised on.
This module imports nothing of optkern's: it runs before the native module loads.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

# the names the ``optkern`` command runs under (pip writes optkern / optkern.exe / optkern-script.py)
_SCRIPTS = ("optkern", "optkern.exe", "optkern-script.py")
_MODULES = ("optkern", "optkern.cli", "optkern.__main__")
_OPTS_WITH_VALUE = ("-X", "-W", "-Q")


def _count(name: str, unit: str) -> int | None:
    raw = os.environ.get(name, "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"{name}: expected a non-negative integer ({unit}), got {raw!r}")
    return int(raw)


def serial_below() -> int | None:
    """OPTKERN_SERIAL_BELOW (work units; read again by cpp/parallel_cost.cpp), None when unset."""
    return _count("OPTKERN_SERIAL_BELOW", "work units")


def pool_bytes() -> int | None:
    """OPTKERN_POOL_BYTES (the pool's limit, optkern._pool), None when unset."""
    return _count("OPTKERN_POOL_BYTES", "bytes")


def check() -> None:
    """Every variable at once, before anything is loaded."""
    serial_below()
    pool_bytes()


def _run_as_module() -> str | None:
    """The module of ``python [options] -m MODULE``, else None. While ``-m``'s package imports,
    sys.argv[0] is just "-m"; sys.orig_argv (Python 3.10+) still has the command line."""
    argv = getattr(sys, "orig_argv", None) or []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "-m":
            return argv[i + 1] if i + 1 < len(argv) else None
        if a.startswith("-m"):
            return a[2:]
        if a in _OPTS_WITH_VALUE:
            i += 2
            continue
        if a == "-c" or not a.startswith("-") or a == "-":
            return None  # a script, -c or stdin: Python reads no option past it
        i += 1
    return None


def is_cli() -> bool:
    """Whether this process is the ``optkern`` command (not a program that imports optkern)."""
    if sys.argv and (os.path.basename(sys.argv[0]) in _SCRIPTS or sys.argv[0] in _MODULES):
        return True  # (the console script; or ``python -m mpi4py -m optkern``: argv[0] is the module)
    return _run_as_module() in _MODULES


def cli_exit(error: ValueError) -> NoReturn:
    """The command's answer to a bad variable: one line on stderr, exit status 2 (as the CLI's other
    usage errors, argparse's convention)."""
    print(f"optkern: error: {error}", file=sys.stderr)
    raise SystemExit(2)
