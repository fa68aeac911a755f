"""``_backend.on_array_device`` leaves integer-annotated arguments as the caller passed them, however
the annotation is spelled (55th hunt, l).

It views foreign arrays (torch tensors...) as NumPy / CuPy before the call, except in parameters
annotated ``int`` (``seed``, ``offset``): a tensor given as a seed must reach the function's own check
as what the user passed (its view was refused as "seed: expected an integer, got ndarray"). Which
parameters those are was decided by matching the annotation's text against ``int``, ``"int"`` and
``"int | None"`` exactly: ``Optional[int]``, ``None | int``, ``Union[int, None]`` were not seen, and
their tensor arrived viewed."""

from __future__ import annotations

import typing
from typing import Optional, Union

import numpy as np
import pytest

from optkern import _backend

torch = pytest.importorskip("torch")


def _seen(x, seed):
    return type(x), type(seed)


def plain(x, seed: int = 0):
    return _seen(x, seed)


def pipe(x, seed: int | None = None):
    return _seen(x, seed)


def pipe_first(x, seed: None | int = None):  # noqa: RUF036 (the spelling under test)
    return _seen(x, seed)


def optional(x, seed: Optional[int] = None):  # noqa: UP045 (the spelling under test)
    return _seen(x, seed)


def union(x, seed: Union[int, None] = None):  # noqa: UP007
    return _seen(x, seed)


def qualified(x, seed: typing.Optional[int] = None):  # noqa: UP045
    return _seen(x, seed)


def not_integer(x, seed: int | float = 0):  # (a float, or an array holding one: viewed as before)
    return _seen(x, seed)


def unresolvable(x, seed: int | None = None, other: NotDefinedAnywhere = None):  # noqa: F821
    return _seen(x, seed)


INTEGER = [plain, pipe, pipe_first, optional, union, qualified, unresolvable]


@pytest.mark.parametrize("fn", INTEGER, ids=lambda f: f.__name__)
@pytest.mark.parametrize("by", ["keyword", "position"])
def test_an_integer_parameter_gets_the_tensor_as_passed(fn, by):
    wrapped = _backend.on_array_device(fn)
    x, seed = torch.ones(3), torch.tensor(5)
    got = wrapped(x, seed=seed) if by == "keyword" else wrapped(x, seed)
    assert got == (np.ndarray, torch.Tensor)  # (the array argument viewed, the seed not)


def test_other_parameters_are_viewed():
    wrapped = _backend.on_array_device(not_integer)
    assert wrapped(torch.ones(3), seed=torch.tensor(5.0)) == (np.ndarray, np.ndarray)


def test_numpy_arguments_pass_through():
    for fn in INTEGER:
        a = np.ones(3)
        assert _backend.on_array_device(fn)(a, seed=3) == (np.ndarray, int)
