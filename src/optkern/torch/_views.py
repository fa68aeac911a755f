"""Zero-copy NumPy / CuPy views of torch tensors, and the stream the CUDA ones run on.

CPU tensors become NumPy arrays over the same memory (``Tensor.numpy()``); CUDA
tensors become CuPy arrays through DLPack capsules, and optkern's CUDA calls are
enqueued on torch's current stream of that device (CuPy's current stream is
set to it for the call), so nothing is copied and nothing synchronizes.

A complex64 / complex128 tensor is viewed as its float32 / float64 ``torch.view_as_real``
(re, im interleaved), as torch.optim steps complex params: every element-wise rule runs on
the real view, grads and state alike (complex like the param); dtype checks and run grouping
compare the views' real dtypes (``real_dtype``).
"""

from __future__ import annotations

import contextlib

import torch
import torch.utils.dlpack

_FLOATS = (torch.float32, torch.float64)
_C64, _C128 = torch.complex64, torch.complex128
#: what the steps take by default: float32/float64, and complex64/complex128 as their real views
TYPES = _FLOATS + (_C64, _C128)
_REAL = {_C64: torch.float32, _C128: torch.float64}
_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_NAMES.update({_C64: "complex64", _C128: "complex128"})
_BF16 = torch.bfloat16
_STRIDED = torch.strided
_NO_STREAM = contextlib.nullcontext()  # (reusable: it holds nothing)
#: why a tensor with torch's lazy negation bit (``torch._neg_view``, ``z.conj().imag``) is refused
NEG_VIEW = "a negated view (its sign is a lazy bit that optkern's views cannot carry): pass t.resolve_neg()"
#: why a tensor with torch's lazy conjugation bit (``z.conj()``) is refused (torch.optim's
#: ``view_as_real`` refuses it too)
CONJ_VIEW = "a conjugated view (a lazy bit that its real view cannot carry): pass t.resolve_conj()"
#: why a lazy module's param before its first forward (``torch.nn.UninitializedParameter``) is refused
#: where it would be read or given state now (torch's own error names no argument)
LAZY = (
    "an uninitialized parameter (a lazy module's, before its first forward): run the model once on a "
    "batch before constructing this (torch's lazy-module docs do the same)"
)
is_lazy = torch.nn.parameter.is_lazy
_to_dlpack = torch.utils.dlpack.to_dlpack
# (the references to a storage: its tensors' and Python's. torch's private API, present since 2.0:
# without it a state's live views go undetected, as memory shared outside torch does)
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)
_view_as_real = torch.view_as_real
_is_contiguous = torch.Tensor.is_contiguous
_is_complex = torch.Tensor.is_complex


def check_tensor(t, name: str, dtypes: tuple = TYPES, complex_why: str = "", half_hint: str = "") -> None:
    """TypeError / ValueError naming ``name`` unless ``t`` is a dense tensor of one of ``dtypes``
    (float32/float64, complex64/complex128 by default) that optkern can update; ``complex_why``:
    why a complex one is refused where ``dtypes`` has none; ``half_hint``: what to do with a
    float16 / bfloat16 one that ``dtypes`` lacks."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if is_lazy(t):  # (every method but a few raises torch's ValueError, which names no argument)
        raise ValueError(f"{name}: {LAZY}")
    if t.layout is not torch.strided:
        raise TypeError(f"{name}: sparse tensors are not supported (layout {t.layout})")
    if t.dtype not in dtypes:
        names = " or ".join(_NAMES[d] for d in dtypes)
        if t.is_complex():
            raise TypeError(f"{name}: complex tensors are not supported {complex_why or 'here'} (expected {names})")
        hint = f" ({half_hint})" if half_hint and t.dtype in (torch.float16, torch.bfloat16) else ""
        raise TypeError(f"{name}: expected {names}, got {t.dtype}{hint}")
    if t.is_neg():  # (NumPy refuses it; DLPack hands over its memory without the sign)
        raise ValueError(f"{name}: {NEG_VIEW}")
    if t.is_conj():
        raise ValueError(f"{name}: {CONJ_VIEW}")
    if not t.is_contiguous() and dense_order(t) is None:
        raise ValueError(
            f"{name}: tensor must be contiguous (in some order of its dims: channels_last is), got strides {t.stride()}"
        )
    if t.device.type not in ("cpu", "cuda"):
        raise TypeError(f"{name}: tensors on {t.device.type} are not supported (cpu or cuda)")


def dense_order(t: torch.Tensor) -> list | None:
    """``t``'s dims from outermost to innermost in memory, where ``t.permute`` of them is contiguous
    (channels_last: N, H, W, C), else None (gaps, overlaps, negative strides)."""
    strides = t.stride()
    order = sorted(range(t.dim()), key=lambda d: -strides[d])
    return order if t.permute(order).is_contiguous() else None


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the view ``view`` makes of a tensor of ``dtype`` (a complex one's real view)."""
    return _REAL.get(dtype, dtype)


def flat_real(tensors: list) -> bool:
    """Whether every tensor is contiguous and real: its own flat NumPy view (``Tensor.numpy()``)."""
    return all(map(_is_contiguous, tensors)) and not any(map(_is_complex, tensors))


def check_one_kind(tensors: list, names: list, why: str) -> None:
    """TypeError naming the first of ``tensors`` (``names``: how errors name them) of another dtype
    (of its real view: ``real_dtype``) or device than the first: ``why`` says what needs them alike
    (one flat vector, one call)."""
    if not tensors:
        return
    t0 = tensors[0]
    r0 = real_dtype(t0.dtype)
    for t, name in zip(tensors, names):
        if real_dtype(t.dtype) is not r0 or t.device != t0.device:
            raise TypeError(f"{name}: {t.dtype} on {t.device}, {names[0]} is {t0.dtype} on {t0.device} ({why})")


def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` (of one shape) put every element at the same place in memory
    (the strides of dims of size 1 do not matter)."""
    return a.shape == b.shape and all(n == 1 or x == y for n, x, y in zip(a.shape, a.stride(), b.stride()))


def check_paired(t: torch.Tensor, p: torch.Tensor, name: str) -> None:
    """ValueError naming ``t`` (a grad or state of param ``p``, which a step pairs with ``p``
    element by element in memory order) unless both are contiguous or both have one layout."""
    if differs(t, p):
        raise ValueError(
            f"{name}: tensor must be contiguous like its param (strides {tuple(t.stride())}, its param's "
            f"{tuple(p.stride())}): the step pairs them element by element in memory order"
        )


class GradLayout(ValueError):
    """A grad of its param's dtype, shape and device in another memory layout than its param's (set
    by hand; accumulated in place before ``p.data`` got another layout): torch.optim reads it element
    by element in logical order, the native calls pair it with its param in memory order. Raised by
    the step's checks (``check_grad``) before anything is written: ``_Fused._step`` then steps with
    copies in the params' layouts (``_relaid.relaid_grads``; a grad is only read)."""


def differs(t: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether ``t`` (a grad or state tensor of ``p``'s shape) is not laid out like ``p`` in memory:
    the pairing in memory order would not be element by element (``check_paired``)."""
    return not (t.is_contiguous() and p.is_contiguous()) and not same_layout(t, p)


def relayable(t: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether ``t`` (a grad or state tensor of param ``p``) differs from ``p`` in its memory layout
    only: laid out unlike ``p`` (``differs``) and ``dense_like`` it. Such a ``t`` is stepped through
    (a grad) or put into (a state tensor) ``p``'s layout, as torch.optim steps it, reading elements
    by index."""
    return differs(t, p) and dense_like(t, p)


def dense_like(t: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether ``t`` is of ``p``'s shape and dense in some order of its dims (no gaps, overlaps or
    negated bit), and ``p`` dense too: a copy can put it in ``p``'s layout (``in_layout_of``)."""
    return (
        t.layout is _STRIDED
        and t.shape == p.shape
        and not t.is_neg()
        and dense_order(t) is not None
        and (p.is_contiguous() or dense_order(p) is not None)
    )


def in_layout_of(p: torch.Tensor, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A new tensor in ``p``'s memory layout (channels_last too; contiguous where ``p`` has gaps) holding
    the values ``t`` shows (a negated or conjugated view resolved), of ``dtype`` (``t``'s by default)
    on ``t``'s device."""
    return torch.empty_like(p, dtype=dtype or t.dtype, device=t.device).copy_(t)


def relay_state(t: torch.Tensor, p: torch.Tensor, name: str) -> None:
    """State tensor ``t`` (named ``name``, of ``p``'s shape) put in its param's memory layout in
    place, the same tensor object holding the same values (``t.set_``: a reference to it, such as
    ``opt.state[p]["exp_avg"]``, stays live, as torch.optim's state stays its tensor): a param given
    another layout after its state was made (``p.data = p.data.to(memory_format=channels_last)``,
    ``model.to(memory_format=...)``), which torch.optim steps on, its element-wise ops reading each
    element by index. Refused instead (ValueError naming it), as re-laid out it would stop sharing
    memory that torch's in-place step keeps writing: a view of another tensor's memory (``_base``), a
    tensor whose storage holds more than itself (``.set_`` onto a larger one: its other bytes may be
    another tensor's), and one with views of its own that are alive (``m.view(-1)`` a user holds:
    its storage's reference count, ``_shares_storage``). Not detectable, so not refused: memory
    shared outside torch's storage (a NumPy array from ``t.numpy()`` whose tensor was dropped, a
    DLPack consumer such as CuPy holding it): such an alias keeps the state's old values."""
    if t._base is not None or _shares_storage(t):
        raise ValueError(
            f"{name}: laid out unlike its param (strides {tuple(t.stride())}, its param's {tuple(p.stride())}) "
            "and its memory shared (a view of another tensor's, a larger storage, or views of it alive), "
            "which it would stop sharing if re-laid out: give it its param's layout"
        )
    new = in_layout_of(p, t)
    t.set_(new.untyped_storage(), 0, new.size(), new.stride())


def _shares_storage(t: torch.Tensor) -> bool:
    """Whether ``t``'s storage holds more bytes than ``t``, or is held by another tensor too (a live
    view of ``t``: each tensor over a storage holds one reference to it; the Python storage object
    made here holds one more). ``t`` itself not a view (``_base``: checked first)."""
    st = t.untyped_storage()
    if st.nbytes() != t.numel() * t.element_size():
        return True
    return _storage_use_count is not None and _storage_use_count(st._cdata) > 2


def view(t: torch.Tensor):
    """The NumPy (CPU) or CuPy (CUDA) array over ``t``'s memory; writes go to ``t``.

    A tensor contiguous in another order of its dims (channels_last) comes as a flat array in
    memory order: element-wise steps pair it with tensors of the same layout (a param's grad and
    state; ``same_layout``), so the order does not matter.

    A CUDA tensor is handed over as a DLPack capsule, not through ``cupy.from_dlpack(t)``:
    that would call ``t.__dlpack__(stream=<CuPy's current stream>)``, which makes that stream
    wait on torch's current one (an event per tensor, per step, whenever the two differ) and
    costs a device switch and torch's stream look-ups per tensor. No ordering is needed: every
    optkern call on these views runs on torch's current stream (``on_stream``).

    bfloat16 (which neither NumPy nor CuPy has) comes as its raw bits, a uint16 array; complex64 /
    complex128 as its real view (``torch.view_as_real``: shape + (2,), or flat in memory order)."""
    if t.requires_grad:
        t = t.detach()
    dt = t.dtype
    if dt is _BF16:
        t = t.view(torch.uint16)
    elif dt is _C64 or dt is _C128:
        t = _view_as_real(t)
    if not t.is_contiguous():
        order = dense_order(t)
        if order is None:  # (check_tensor refuses it first)
            raise ValueError(f"tensor must be contiguous (in some order of its dims), got strides {t.stride()}")
        t = t.permute(order).view(-1)
    if t.is_cpu:
        return t.numpy()
    import cupy

    return cupy.from_dlpack(_to_dlpack(t))


def views(tensors) -> list:
    return [view(t) for t in tensors]


#: CuPy stream objects over torch's streams, by (device index, cudaStream_t): one per stream
#: torch hands out, not a new wrapper (and, on CuPy >= 14, a DeprecationWarning) per call
_STREAMS: dict = {}


def _cupy_stream(cupy, stream, index: int):
    """A CuPy stream over torch stream ``stream`` of device ``index`` (the current device)."""
    key = (index, stream.cuda_stream)
    s = _STREAMS.get(key)
    if s is None:
        from_external = getattr(cupy.cuda.Stream, "from_external", None)
        if from_external is not None and hasattr(stream, "__cuda_stream__"):
            s = from_external(stream)  # CuPy >= 14 (ExternalStream is deprecated there); device: the current one
        else:
            s = cupy.cuda.ExternalStream(stream.cuda_stream, index)
        _STREAMS[key] = s
    return s


def on_stream(like: torch.Tensor):
    """Context running optkern's CUDA calls on torch's current stream of ``like``'s device."""
    if not like.is_cuda:
        return _NO_STREAM
    import cupy

    index = like.device.index
    stack = contextlib.ExitStack()
    stack.enter_context(cupy.cuda.Device(index))  # first: a CuPy stream belongs to the current device
    try:
        stack.enter_context(_cupy_stream(cupy, torch.cuda.current_stream(like.device), index))
    except BaseException:
        stack.close()
        raise
    return stack
