"""The plain-data encoding of ``optkern.save``: a tree of dicts, lists, tuples, numbers, strings and
arrays as JSON with its arrays beside it (torch tensors, CuPy arrays and the dtypes NumPy lacks --
bfloat16, float8_* -- as tagged host arrays), and back. ``optkern.save`` and
``optkern.regularize.save_state`` both write it."""

from __future__ import annotations

import hashlib
import importlib
import numbers
import sys
from typing import Any

import numpy as np

from . import _backend
from ._words import article


def _torch():
    """The torch module if it is imported already (optkern never imports it for a checkpoint)."""
    return sys.modules.get("torch")


def _is_torch_tensor(obj) -> bool:
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


#: the most decimal digits an int in the JSON may have: what ``int()`` converts under Python's default
#: limit (``sys.int_info.default_max_str_digits``), so that any reader loads what was saved
_MAX_DIGITS = getattr(sys.int_info, "default_max_str_digits", 4300)
_TOO_MANY_DIGITS = 10**_MAX_DIGITS


def _encode(obj, arrays: list, where: str, _open: set | None = None):
    """JSON-able structure of ``obj``; its arrays (host copies) appended to ``arrays``.

    ``_open``: ids of the containers being encoded around ``obj`` (a container holding itself
    is a reference cycle, refused naming where it closes)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        n = int(obj)
        # (JSON writes an int in decimal: past Python's default int-string limit json.dumps raised int()'s
        # ValueError naming nothing, and a file written under a raised limit could not be read elsewhere)
        if abs(n) >= _TOO_MANY_DIGITS:
            raise ValueError(
                f"{where}: cannot save an integer of more than {_MAX_DIGITS} decimal digits "
                f"({n.bit_length()} bits); save it as a string or an array of words"
            )
        return n
    if isinstance(obj, numbers.Real):
        f = float(obj)
        if f == obj or f != f:  # (NaN: unequal to itself)
            return f if np.isfinite(f) else {"__float__": repr(f)}
        # a float cannot hold it (np.longdouble's extra bits, a Fraction): it was rounded silently.
        # A NumPy scalar is saved as the 0-d array of its dtype, anything else refused
        if not isinstance(obj, np.generic):
            raise TypeError(
                f"{where}: cannot save the {type(obj).__name__} {obj} exactly (a float would hold {f!r}); "
                "convert it first"
            )
    if _is_torch_tensor(obj):
        return _encode_tensor(obj, arrays, where)
    if _backend.is_foreign(obj):  # (a DLPack-only array has no __array__: its view, as every call takes it)
        obj = _backend.as_array(obj, where)
    if isinstance(obj, np.ma.MaskedArray):  # np.asarray drops the mask: hidden values saved as data
        raise TypeError(f"{where}: cannot save a masked array (its mask would be lost); save .data and .mask")
    if _backend.is_cupy(obj) or isinstance(obj, np.ndarray) or (hasattr(obj, "__array__") and hasattr(obj, "shape")):
        cupy = _backend.is_cupy(obj)
        a = obj.get() if cupy else np.asarray(obj)
        tag = {"cupy": True} if cupy else {}  # (for a load as saved: CuPy again)
        if a.dtype.type.__module__ == "ml_dtypes":  # bfloat16, float8_*: its bits, tagged, so no pickle is needed
            if not a.dtype.isnative:  # (the bits are read in native order: a swapped array's values first)
                a = a.astype(a.dtype.newbyteorder("="))
            arrays.append(np.ascontiguousarray(a).reshape(a.shape).view(f"u{a.dtype.itemsize}"))
            return {"__array__": len(arrays) - 1, "dtype": a.dtype.name, **tag}
        if a.dtype.kind not in "biufc":
            raise TypeError(f"{where}: cannot save an array of dtype {a.dtype}")
        # reshape: ascontiguousarray makes a 0-d array (a capturable run's step) 1-d
        arrays.append(np.ascontiguousarray(a).reshape(a.shape))
        return {"__array__": len(arrays) - 1, **tag}
    if not isinstance(obj, (tuple, list, dict)):
        raise TypeError(
            f"{where}: cannot save {article(type(obj).__name__)} (arrays, numbers, strings, None, lists, tuples, "
            "dicts, or objects with state_dict / load_state_dict)"
        )
    _open = set() if _open is None else _open
    if id(obj) in _open:
        raise ValueError(f"{where}: contains itself (a reference cycle cannot be saved)")
    _open.add(id(obj))
    try:
        if isinstance(obj, tuple):
            return {"__tuple__": [_encode(v, arrays, f"{where}[{k}]", _open) for k, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [_encode(v, arrays, f"{where}[{k}]", _open) for k, v in enumerate(obj)]
        for key in obj:
            if isinstance(key, bool) or not isinstance(key, (str, numbers.Integral)):
                raise TypeError(f"{where}: cannot save a dict key of type {type(key).__name__} (str or int only)")
        items = [
            (k if isinstance(k, str) else int(k), _encode(v, arrays, f"{where}[{k!r}]", _open)) for k, v in obj.items()
        ]
        if all(isinstance(k, str) and not k.startswith("__") for k, _ in items):
            return dict(items)
        return {"__items__": [list(kv) for kv in items]}
    finally:
        _open.discard(id(obj))


#: the torch floating and complex dtypes whose tensors ``.numpy()`` converts (by name)
_NUMPY_KNOWS = ("float16", "float32", "float64", "complex64", "complex128")


def _encode_tensor(t, arrays: list, where: str):
    """A torch tensor saved as a host array (detached, bfloat16, float8_* and complex32 as their tagged bits), so
    that it loads as a NumPy array, and as a tensor again into a torch optimizer or module."""
    torch = _torch()
    try:
        t = t.detach().resolve_conj().resolve_neg()
        if t.device.type != "cpu":
            t = t.cpu()
        name = str(t.dtype).removeprefix("torch.")
        if name not in _NUMPY_KNOWS and (t.is_floating_point() or t.is_complex()):
            # a dtype NumPy lacks (bfloat16, float8_*, complex32): its bits, tagged with the name torch
            # (and ml_dtypes) give it; complex32 was refused ("unsupported ScalarType ComplexHalf"),
            # and with it the state dict of a model holding one, where torch.save takes it
            bits = getattr(torch, f"uint{8 * t.element_size()}")
            arrays.append(np.ascontiguousarray(t.view(bits).numpy()).reshape(tuple(t.shape)))
            return {"__array__": len(arrays) - 1, "dtype": name, "torch": True}
        a = t.numpy()
    except (TypeError, RuntimeError, NotImplementedError) as e:
        raise TypeError(f"{where}: cannot save this torch.Tensor ({t.dtype}, {t.layout}, on {t.device}): {e}") from None
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{where}: cannot save a torch.Tensor of dtype {t.dtype}")
    arrays.append(np.ascontiguousarray(a).reshape(a.shape))
    return {"__array__": len(arrays) - 1, "torch": True}  # (for a load as saved: a tensor again)


def _decode(node, arrays: list, to_torch: bool = False, as_saved: bool = False):
    """Plain data from ``_encode``'s structure: NumPy arrays, or with ``to_torch`` torch tensors
    (copies: the loader of a torch optimizer may keep them as its state); with ``as_saved`` each
    array as it was saved (a torch tensor a tensor, a CuPy array a CuPy array, others NumPy).

    An array index that is not one of ``arrays`` (a forged file whose checksums were recomputed:
    -1, ``True``, 1.0) is a ValueError, not another array taken silently."""
    if isinstance(node, list):
        return [_decode(v, arrays, to_torch, as_saved) for v in node]
    if not isinstance(node, dict):
        return node
    if "__array__" in node:
        k = node["__array__"]
        if type(k) is not int or not 0 <= k < len(arrays):  # (type: bool is an int)
            raise ValueError(f"array index {k!r} is not one of the file's {len(arrays)} arrays")
        a = _array(arrays[k], node.get("dtype"), to_torch or (as_saved and bool(node.get("torch"))))
        if as_saved and node.get("cupy"):
            import cupy

            return cupy.asarray(a)
        return a
    if "__float__" in node:
        return float(node["__float__"])
    if "__tuple__" in node:
        return tuple(_decode(v, arrays, to_torch, as_saved) for v in node["__tuple__"])
    if "__items__" in node:
        return {k: _decode(v, arrays, to_torch, as_saved) for k, v in node["__items__"]}
    return {k: _decode(v, arrays, to_torch, as_saved) for k, v in node.items()}


def _where_array(node, k: int, where: str) -> str:
    """Where array ``k`` sits in ``_encode``'s structure ``node`` (``where`` the root's name), named
    as ``_encode`` names places (``state['w'][0]``); ``where`` itself if no node holds it."""
    return next((w for w, i in _array_places(node, where) if i == k), where)


def _array_places(node, where: str):
    """(place, array index) of every array node in ``_encode``'s structure ``node``."""
    if isinstance(node, list):
        items: Any = enumerate(node)
    elif not isinstance(node, dict):
        return
    elif "__array__" in node:
        yield where, node["__array__"]
        return
    elif "__tuple__" in node:
        items = enumerate(node["__tuple__"])
    elif "__items__" in node:
        items = node["__items__"]
    else:
        items = node.items()
    for key, v in items:
        yield from _array_places(v, f"{where}[{key!r}]")


def _array(a: np.ndarray, dtype: str | None, to_torch: bool):
    """A saved array: ``a`` itself, or the values of the bits ``a`` holds where ``dtype`` names a
    type NumPy lacks (the ml_dtypes type; its bits without ml_dtypes or where ml_dtypes has no such
    type; complex32 as complex64); a torch tensor (a copy) with ``to_torch``."""
    if to_torch:
        torch = _torch() or importlib.import_module("torch")
        t = torch.from_numpy(np.array(a))  # (np.array, not ascontiguousarray: that makes 0-d 1-d)
        if dtype is None:
            return t
        want = getattr(torch, dtype, None)
        if not isinstance(want, torch.dtype):
            raise TypeError(f"cannot load an array of dtype {dtype} as a torch.Tensor")
        return t.view(want)
    if dtype is None:
        return a
    if dtype == "complex32":  # (NumPy has no such type: the same values as complex64, exactly)
        return _complex32_values(a)
    try:
        import ml_dtypes
    except ImportError:
        return a  # (the bits)
    want = getattr(ml_dtypes, dtype, None)
    if want is None:
        # a type ml_dtypes lacks (torch's packed float4_e2m1fn_x2, one of a newer ml_dtypes): its bits,
        # as without ml_dtypes. Refused, the file optkern.save had written could not be read at all,
        # none of its entries ("damaged checkpoint"), not even into the torch tensor it came from
        return a
    if not isinstance(want, type) or not issubclass(want, np.generic) or np.dtype(want).itemsize != a.itemsize:
        raise TypeError(f"unknown dtype {dtype!r} of {a.itemsize}-byte elements")
    return a.view(want)


def _complex32_values(bits: np.ndarray) -> np.ndarray:
    """complex64 of a torch complex32 tensor's saved bits (each element a float16 real part, then
    the imaginary one, as torch lays them out); every float16 is a float32 exactly (NaN payloads,
    -0.0)."""
    if bits.dtype.itemsize != 4:
        raise TypeError(f"complex32 is saved as 4-byte elements, the file holds {bits.dtype}")
    parts = np.ascontiguousarray(bits).view(np.float16).reshape((*bits.shape, 2))
    out = np.empty(bits.shape, np.complex64)
    out.real, out.imag = parts[..., 0], parts[..., 1]
    return out


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


def _host_copy(data, name: str, to_torch: bool = False):
    """``data`` with every array replaced by a host copy (the live arrays may change); torch
    tensors with ``to_torch``."""
    arrays: list = []
    tree = _encode(data, arrays, name)
    return _decode(tree, [a.copy() for a in arrays], to_torch)
