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
from types import FrameType
from typing import NoReturn

# the names the ``optkern`` command runs under (pip writes optkern / optkern.exe / optkern-script.py)
_SCRIPTS = ("optkern", "optkern.exe", "optkern-script.py")
_MODULES = ("optkern", "optkern.cli", "optkern.__main__")
#: runpy's functions running a module by name (``-m``'s, and the one ``python -m mpi4py -m`` calls)
_RUNPY_RUNNERS = ("_run_module_as_main", "run_module")


#: int64's max: what the native code reads these variables into (``strtoll`` saturates there)
_INT64_MAX = 2**63 - 1  # (_scalars.INT64_MAX; not imported: this module imports nothing of optkern's)


def _count(name: str, unit: str, hi: int | None = None) -> int | None:
    """``name``'s value, None when unset; above ``hi`` refused, else past int64 read as int64's max (as
    ``strtoll`` reads it). Digit strings are compared by length first: ``int()`` refuses one of over 4300
    digits (leading zeros included) with its own ValueError, which named no variable."""
    raw = os.environ.get(name, "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"{name}: expected a non-negative integer ({unit}), got {raw!r}")
    digits = raw.lstrip("0") or "0"
    value = int(digits) if len(digits) <= len(str(_INT64_MAX)) else _INT64_MAX + 1  # (past int64 either way)
    if hi is not None and value > hi:
        shown = raw if len(raw) <= 40 else f"{raw[:20]}... ({len(raw)} digits)"
        raise ValueError(f"{name}: must be <= {hi} ({unit}), got {shown}")
    return min(value, _INT64_MAX)


def serial_below() -> int | None:
    """OPTKERN_SERIAL_BELOW (work units; read again by cpp/parallel_cost.cpp), None when unset."""
    return _count("OPTKERN_SERIAL_BELOW", "work units")


def pool_bytes() -> int | None:
    """OPTKERN_POOL_BYTES (the pool's limit, optkern._pool), None when unset. At most int64's max, as
    the native pool takes it (beyond, its binding's TypeError came with a traceback: no one-line error)."""
    return _count("OPTKERN_POOL_BYTES", "bytes", hi=_INT64_MAX)


def check() -> None:
    """Every variable at once, before anything is loaded."""
    serial_below()
    pool_bytes()


def _run_as_module() -> str | None:
    """The module of ``python [options] -m MODULE`` (or of ``runpy.run_module``, as ``python -m
    mpi4py -m MODULE`` runs it), else None: the ``mod_name`` of the innermost runpy frame running
    one. While ``-m``'s package imports, ``sys.argv[0]`` is just "-m"; the command line
    (``sys.orig_argv``) exists from Python 3.10 only: on 3.9 ``python -m optkern`` printed the
    ValueError's traceback. The frames say it on every version (and need no parsing of the
    interpreter's options)."""
    f: FrameType | None = sys._getframe(1)
    while f is not None:
        # (by module name: runpy is frozen from 3.11 on, its code's file "<frozen runpy>")
        if f.f_globals.get("__name__") == "runpy" and f.f_code.co_name in _RUNPY_RUNNERS:
            name = f.f_locals.get("mod_name")
            return name if isinstance(name, str) else None
        f = f.f_back
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
