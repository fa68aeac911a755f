"""Foreign arrays (torch tensors, JAX arrays, any DLPack, ``__cuda_array_interface__`` or
``__array_interface__`` exporter) seen as NumPy or CuPy arrays over their own memory, zero-copy.

``_backend`` re-exports these; ``as_array`` is what its argument layer (``as_list``,
``on_array_device``) calls on every argument that is not already a NumPy or CuPy array.
"""

from __future__ import annotations

import sys

import numpy as np

from ._array_checks import _UNVERSIONED_DLPACK, is_cupy
from ._words import article

#: DLPack device types: host memory (NumPy) and CUDA memory (CuPy; managed memory too)
_DL_CPU, _DL_CUDA, _DL_CUDA_MANAGED = 1, 2, 13


#: Exact types that export no array interface: NumPy's array, and built-ins whose instances take no
#: attributes of their own (a list of arrays, a number, None: the other arguments of a call), for
#: which the attribute tests below cost three failed look-ups (~1.5 us) to say False.
_NEVER_FOREIGN = frozenset({np.ndarray, list, tuple, dict, int, float, bool, str, type(None)})


def is_foreign(a) -> bool:
    """Whether ``a`` is an array from another library (not NumPy, not CuPy) that optkern can view:
    one exporting ``__dlpack__``, ``__cuda_array_interface__`` or ``__array_interface__``."""
    t = type(a)
    if t in _NEVER_FOREIGN or isinstance(a, np.ndarray) or is_cupy(a):
        return False
    if hasattr(t, "__dlpack__") or hasattr(a, "__cuda_array_interface__"):
        return True
    # NumPy's array interface (PIL images, buffers of other libraries); not NumPy's scalars, which
    # export one too (a number is not an array to write in place), nor their types (a dtype=np.float16
    # argument: the class has the attribute)
    return hasattr(a, "__array_interface__") and not isinstance(a, (np.generic, type))


def is_array(a) -> bool:
    """A NumPy, CuPy or foreign (DLPack / CUDA array interface) array, as opposed to a list of them."""
    return isinstance(a, np.ndarray) or is_cupy(a) or is_foreign(a)


def as_array(a, name: str):
    """``a`` itself if it is a NumPy or CuPy array; a foreign array as a NumPy (host memory) or
    CuPy (CUDA memory) array over the same memory, so writes land in ``a``. Anything else is
    returned unchanged (the caller's checks name it).

    A read-only export (DLPack's read-only flag, e.g. a read-only NumPy array seen through
    another library) stays read-only: the checks of an array written in place refuse it,
    naming the argument. torch tensors that require grad are viewed through ``detach()``
    (optkern writes outside autograd, like ``torch.no_grad``); any ``torch.Tensor`` subclass
    takes torch's path (``_torch_view``). A NumPy masked array is refused (its mask would be
    ignored); a ``np.matrix`` is its plain ndarray view (the steps flatten and multiply arrays
    elementwise). CUDA arrays need CuPy.
    """
    if not is_foreign(a):
        refuse_masked(a, name)
        if isinstance(a, np.matrix):  # (stays 2-D through ravel, multiplies as matrices: its plain view)
            return a.view(np.ndarray)
        return a
    t = type(a)
    torch = sys.modules.get("torch")  # (a tensor exists: torch is imported; subclasses defined elsewhere too)
    if torch is not None and isinstance(a, torch.Tensor):
        return _torch_view(a, name)
    if not hasattr(t, "__dlpack__"):
        if hasattr(a, "__cuda_array_interface__"):  # (Numba, PyCUDA...)
            return _cupy(name, a).asarray(a)
        try:  # __array_interface__ only: NumPy views the exporter's memory (read-only if it says so)
            return np.asarray(a)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name}: cannot view {article(t.__name__)} through its __array_interface__: {e}") from None
    try:
        dev = int(a.__dlpack_device__()[0])
    except Exception as e:
        raise TypeError(f"{name}: cannot read the device of {article(t.__name__)} through DLPack: {e}") from None
    try:
        if dev == _DL_CPU:
            v = np.from_dlpack(a)
            if not v.flags.writeable and _unversioned(a):
                _UNVERSIONED_DLPACK[id(v)] = v  # (a refusal to write it says why: read_only)
            return v
        if dev in (_DL_CUDA, _DL_CUDA_MANAGED):
            return _cupy(name, a).from_dlpack(a)
    except (BufferError, TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name}: cannot view {article(t.__name__)} through DLPack: {e}") from None
    raise TypeError(
        f"{name}: {t.__name__} lives on DLPack device type {dev}; optkern runs on the host (1) and CUDA (2)"
    )


def _unversioned(a) -> bool:
    """Whether DLPack exporter ``a`` speaks only the unversioned protocol (its ``__dlpack__`` takes
    no ``max_version``: NumPy's fallback, which views the memory read-only, flag or not). Asked
    only of a read-only view (the capsule made here is freed unused)."""
    try:
        a.__dlpack__(max_version=(1, 0))
    except TypeError:
        return True
    except Exception:  # (a versioned exporter refusing for another reason)
        return False
    return False


def _torch_view(a, name: str):
    """A torch tensor's NumPy / CuPy view: ``Tensor.numpy()`` for host tensors (2 us where
    ``np.from_dlpack`` takes 30 us -- per gradient, per step), DLPack for CUDA tensors.
    bfloat16 host tensors come as ``ml_dtypes.bfloat16`` arrays over the same memory. A tensor
    with the neg / conj bit set is a lazy view whose memory does not hold its values: refused
    (``numpy()`` refuses it; torch's DLPack export drops the bit, so CUDA tensors are asked)."""
    if a.requires_grad:
        a = a.detach()
    try:
        if a.device.type == "cpu":
            try:
                return a.numpy()
            except TypeError:
                if a.dtype is not sys.modules["torch"].bfloat16:
                    raise
            return _bfloat16_numpy(a)
        if a.device.type == "cuda":
            if a.is_neg() or a.is_conj():
                bit = "neg" if a.is_neg() else "conj"
                raise TypeError(f"its {bit} bit is set (a lazy view): pass tensor.resolve_{bit}()")
            return _cupy(name, a).from_dlpack(a)
    except (BufferError, TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name}: cannot view this torch.Tensor as an array: {e}") from None
    raise TypeError(f"{name}: torch tensors on {a.device.type} are not supported (cpu or cuda)")


def _bfloat16_numpy(t):
    """A host torch.bfloat16 tensor's NumPy view, as ``ml_dtypes.bfloat16`` (``Tensor.numpy()`` and
    ``np.asarray`` refuse torch's bfloat16)."""
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("a torch.bfloat16 tensor needs ml_dtypes (pip install ml_dtypes)") from None
    return t.view(sys.modules["torch"].int16).numpy().view(ml_dtypes.bfloat16)


def host_values(v) -> np.ndarray:
    """``np.asarray`` of the values ``v`` shows (``shown_values``), for a loader that copies them: a
    host bfloat16 tensor (torch.optim's state of a bfloat16 model) as an ``ml_dtypes.bfloat16``
    array, which ``np.asarray`` refused ("Got unsupported ScalarType BFloat16")."""
    v = shown_values(v)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(v, torch.Tensor) and v.dtype is torch.bfloat16 and v.device.type == "cpu":
        return _bfloat16_numpy(v.contiguous())
    return np.asarray(v)


def shown_values(v):
    """A torch tensor as the plain tensor of the values it shows, for a loader that copies them
    (``np.asarray`` of a state entry): detached (NumPy refuses a tensor that requires grad) and
    its neg / conj bit resolved (a lazy view whose memory does not hold its values). Anything else
    is returned as it is."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(v, torch.Tensor):
        return v
    return v.detach().resolve_neg().resolve_conj()


def refuse_meta(v, name: str) -> None:
    """TypeError naming ``name`` where ``v`` is a torch tensor on the "meta" device: a shape and a
    dtype without memory (a checkpoint loaded under ``torch.device("meta")``, a model not yet
    materialized), whose values cannot be read; torch's own error from the read ("Cannot copy out
    of meta tensor", "Tensor.item() cannot be called on meta tensors") named no argument."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(v, torch.Tensor) and v.is_meta:
        raise TypeError(f"{name}: is a tensor on the meta device (a shape without values: nothing to read)")


def zero_d_real(v) -> bool:
    """Whether ``v`` is a 0-d NumPy array (exactly: not a masked one) of a real, non-bool dtype: a
    number as NumPy code holds one, which torch's Python-number arguments take (``float()`` reads it,
    NumPy 2 promotes it as the scalar it holds: ``v[()]``)."""
    return type(v) is np.ndarray and v.ndim == 0 and v.dtype.kind in "fiu"


def array_pair(v) -> bool:
    """Whether ``v`` is ``betas`` as a 1-D NumPy array (exactly: not a masked one) of two floating
    elements, which torch.optim's Adam family takes: its step unpacks ``beta1, beta2 = betas``, NumPy
    scalars it computes with as with the Python floats they hold (float64 ones are floats; a float32
    pair, which Adam's constructor refuses, NAdam's step computes with in float32)."""
    return type(v) is np.ndarray and v.ndim == 1 and v.shape[0] == 2 and v.dtype.kind == "f"


def host_number(v, name: str, pair: bool = False):
    """A hyper-parameter as the host reads it: torch takes ``lr``, ``betas`` (and saves them) as
    tensors, which an LR scheduler fills in place, so read at every call, never cached. A torch tensor
    of one real element as a Python float (read on the host: one sync for a CUDA one); where ``pair``
    (``betas``), also a 1-D tensor of two real floating elements as a tuple of floats (torch.optim's
    Adam reads ``betas[0]`` and ``betas[1]``); tuples and lists element-wise (their elements never
    pairs); anything else as it is, for the checks that follow to name. A meta tensor (no values to
    read) is refused naming ``name``. The one reader of both optkern.optim's loader and optkern.torch.
    Where ``pair``, a 1-D NumPy array of two floating elements is a tuple of floats too
    (:func:`array_pair`)."""
    if pair and array_pair(v):
        return tuple(map(float, v))
    torch = sys.modules.get("torch")
    if torch is None:
        return v
    if isinstance(v, torch.Tensor):
        if v.is_complex() or v.dtype is torch.bool:
            return v
        if v.numel() == 1:
            refuse_meta(v, name)
            return float(shown_values(v))
        if pair and v.dim() == 1 and v.numel() == 2 and v.is_floating_point():
            refuse_meta(v, name)
            return tuple(map(float, shown_values(v).cpu()))
        return v
    if isinstance(v, (tuple, list)) and any(isinstance(x, torch.Tensor) for x in v):
        return type(v)(host_number(x, f"{name}[{i}]") for i, x in enumerate(v))
    return v


def _is_masked(a) -> bool:
    """A NumPy masked array (``numpy.ma``: none exists unless it was imported)."""
    ma = sys.modules.get("numpy.ma")
    return ma is not None and isinstance(a, ma.MaskedArray)


def refuse_masked(a, name: str) -> None:
    """TypeError naming ``name`` where ``a`` is a NumPy masked array: optkern's kernels and fills
    read and write the whole data, so its mask would be ignored (masked entries updated, and an
    in-place fill through MaskedArray's own assignment cleared the mask)."""
    if _is_masked(a):
        raise TypeError(
            f"{name}: expected a numpy.ndarray, got a masked array (optkern would ignore its mask): "
            "pass a.filled(value) or a.data"
        )


def _cupy(name: str, a):
    try:
        import cupy
    except ImportError:
        raise TypeError(f"{name}: a CUDA {type(a).__name__} needs CuPy (pip install cupy-cuda12x)") from None
    return cupy
