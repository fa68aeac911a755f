"""Which parameters of a function are annotated as an integer: ``int`` or an optional one, however
spelled (``int | None``, ``None | int``, ``Optional[int]``, ``Union[int, None]``, ``typing.Optional[int]``).
``_backend.on_array_device`` leaves those arguments as the caller passed them (no array view)."""

from __future__ import annotations

import types
import typing

_NONE = type(None)


def integer_parameters(fn) -> frozenset:
    """The names of ``fn``'s parameters annotated as an integer (:func:`_is_integer`). Each annotation
    is resolved on its own, in ``fn``'s module, as ``typing.get_type_hints`` resolves them (under
    ``from __future__ import annotations`` they are text): one that does not resolve (a name imported
    only under TYPE_CHECKING) makes get_type_hints refuse them all, here it loses only itself.
    Matching the text instead missed every spelling but ``int`` and ``int | None``."""
    namespace = getattr(typing.cast(typing.Any, fn), "__globals__", {})
    out = []
    for name, ann in getattr(fn, "__annotations__", {}).items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, namespace)  # (the function's own annotation, as get_type_hints evaluates it)
            except Exception:  # (any error of an annotation's text: not an integer one)
                continue
        if name != "return" and _is_integer(ann):
            out.append(name)
    return frozenset(out)


def _is_integer(hint) -> bool:
    """``int``, or a union of ``int`` and None."""
    if hint is int:
        return True
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return False
    args = typing.get_args(hint)
    return int in args and all(a is int or a is _NONE for a in args)
