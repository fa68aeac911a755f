"""The ``optkern`` command's numbers, read strictly: the one reader of every numeric option.

Python's ``int()`` and ``float()`` take what no one typing an option means: underscores
(``--lr sgd=1_0`` trained at 10, ``--epochs 1_0`` ran 10 epochs), digits of other scripts
(``--seed ١`` seeded 1), and ``float()``'s "nan", "inf", "infinity". An option's number is ASCII
digits with an optional sign (for a real also a point and an exponent), spaces around it allowed;
anything else is refused, naming the option (exit 2)."""

from __future__ import annotations

import argparse
import math
import re

_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_REAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def is_whole(text: str) -> bool:
    """Whether ``text`` is an integer as an option writes one (``-1``, ``10``; not ``1_0``)."""
    return _WHOLE.fullmatch(text.strip()) is not None


def whole(text: str) -> int:
    """``text`` as an integer; ValueError saying what was expected."""
    if not is_whole(text):
        raise ValueError(f"{text!r} is not an integer (digits, no '_')")
    return int(text)


def is_real(text: str) -> bool:
    """Whether ``text`` is a number as an option writes one (``-1.5e3``; not ``1_0``, ``nan`` or ``١``)."""
    return _REAL.fullmatch(text.strip()) is not None


def real(text: str) -> float:
    """``text`` as a finite float; ValueError saying what was expected (``1e999`` too: inf)."""
    t = text.strip()
    value = float(t) if is_real(t) else math.nan
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a number (a finite one in digits, no '_': like 1e-3)")
    return value


def whole_option(text: str) -> int:
    """``whole`` as an argparse ``type``: its error names the option (``argument --epochs: ...``)."""
    try:
        return whole(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
