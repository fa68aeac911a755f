"""The stand-in's ``cupy.ndarray`` and the wrapping of NumPy's functions around it (see the
package's docstring for what it emulates and why)."""

from __future__ import annotations

import functools
import operator
import types

import numpy as _np

from . import cuda

_NO_IMPLICIT = (
    "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array explicitly."
)


class _Memory:
    """cupy.cuda.MemoryPointer: ``ptr``, ``device_id``, ``device``."""

    __slots__ = ("ptr", "device_id")

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr
        self.device_id = 0

    @property
    def device(self):
        return cuda.Device(self.device_id)


class _Flags:
    """cupy._core.flags.Flags: three read-only flags, nothing else."""

    __slots__ = ("_c", "_f", "_own")

    def __init__(self, c: bool, f: bool, own: bool) -> None:
        self._c, self._f, self._own = c, f, own

    c_contiguous = property(lambda self: self._c)
    f_contiguous = property(lambda self: self._f)
    owndata = property(lambda self: self._own)

    def __getitem__(self, name):
        keys = {"C_CONTIGUOUS": self._c, "F_CONTIGUOUS": self._f, "OWNDATA": self._own}
        if name not in keys:
            raise KeyError(f"{name} is not defined for cupy.ndarray.flags")
        return keys[name]


#: The public methods and attributes of CuPy's ndarray that come from the held NumPy array
#: (core.pyx); any other NumPy attribute raises AttributeError as on CuPy.
_FORWARDED = frozenset(
    "all any argmax argmin argpartition argsort astype byteswap choose clip compress conj conjugate copy "
    "cumprod cumsum diagonal dot dtype flatten imag itemsize max mean min nbytes ndim nonzero partition "
    "prod ptp put ravel real repeat reshape round searchsorted shape size sort squeeze std strides sum swapaxes "
    "take tobytes tolist trace transpose var view".split()
)


#: The ufuncs given a 0-d host array as its number (core.pyx __richcmp__, __array_ufunc__).
_COMPARISONS = frozenset({"less", "less_equal", "equal", "not_equal", "greater", "greater_equal"})


def _check_operand(x, compare: bool = False) -> None:
    # cupy/_core/_kernel.pyx _preprocess_arg -> _scalar.CScalar: a host array is no kernel argument,
    # not even a 0-d one (NumPy scalars are), but a comparison takes a 0-d one's item
    if isinstance(x, _np.ndarray) and (x.ndim > 0 or not compare):
        raise TypeError(f"Unsupported type {type(x)}")


class ndarray:  # noqa: N801 - CuPy's name
    """A CuPy array: a NumPy array held (its memory is the "device" memory), not exposed."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C") -> None:
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy stand-in: ndarray(memptr=, strides=) is not emulated")
        self._a = _np.empty(shape, dtype, order=order)

    @classmethod
    def _of(cls, a: _np.ndarray) -> ndarray:
        r = object.__new__(cls)
        r._a = a
        return r

    # ---- attributes -----------------------------------------------------------------------
    def __getattr__(self, name):
        if name not in _FORWARDED:
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")
        v = getattr(self._a, name)
        return _wrapped(v, self) if callable(v) and not isinstance(v, _np.dtype) else _wrap(v)

    @property
    def data(self) -> _Memory:
        return _Memory(self._a.__array_interface__["data"][0])

    @property
    def device(self):
        return cuda.Device(0)

    @property
    def base(self):
        return None if self._a.base is None else _wrap(self._a.base)

    @property
    def flags(self) -> _Flags:
        f = self._a.flags
        return _Flags(bool(f.c_contiguous), bool(f.f_contiguous), self._a.base is None)

    @property
    def _c_contiguous(self) -> bool:
        return bool(self._a.flags.c_contiguous)

    @property
    def _f_contiguous(self) -> bool:
        return bool(self._a.flags.f_contiguous)

    @property
    def T(self):
        return self if self._a.ndim < 2 else ndarray._of(self._a.T)

    @property
    def mT(self):
        return ndarray._of(self._a.mT)

    @property
    def __cuda_array_interface__(self) -> dict:
        d = dict(self._a.__array_interface__)
        d["version"] = 3
        d["stream"] = None
        return d

    def __dlpack__(self, *args, **kwargs):
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()

    # ---- to and from the host -------------------------------------------------------------
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            out[...] = self._a
            return out
        return _np.array(self._a, order=order)

    def set(self, arr, stream=None) -> None:
        # core.pyx ndarray.set: a host array of this dtype and shape, into a contiguous array
        if not isinstance(arr, _np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if self.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        if not (self._c_contiguous or self._f_contiguous):
            raise RuntimeError("Cannot set to non-contiguous array")
        self._a[...] = arr

    def fill(self, value) -> None:
        # core.pyx ndarray.fill: a scalar (a 0-d CuPy array, or what NumPy makes a 0-d array of)
        v = value._a if isinstance(value, ndarray) else _np.asarray(value, dtype=self.dtype)
        if v.shape != ():
            kind = "cupy" if isinstance(value, ndarray) else "numpy"
            raise ValueError(f"non-scalar {kind}.ndarray cannot be used for fill")
        self._a.fill(v[()])

    def item(self):
        if self._a.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._a.item()

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_NO_IMPLICIT)

    def __int__(self) -> int:
        return int(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __complex__(self) -> complex:
        return complex(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __len__(self) -> int:
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __getitem__(self, key):
        # CuPy's integer indexing gives 0-d arrays (device memory), not scalars.
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value) -> None:
        # _routines_indexing.pyx _scatter_op: a view (basic indexing) takes a CuPy array or a
        # scalar (ndarray.fill: "Refuse assignment from CPU arrays", CuPy's gh-2079); integer or
        # boolean array indices take host values too
        if not isinstance(value, ndarray) and not _advanced(key) and _np.shape(value) != ():
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._a[_unwrap(key)] = _unwrap(value)

    def __copy__(self):
        return ndarray._of(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray._of(self._a.copy())

    def __reduce__(self):
        from . import array  # (cupy.array, by reference; defined in the package)

        return array, (self.get(order="A"),)

    def __repr__(self) -> str:
        return repr(self._a).replace("array(", "cupy_emulated(", 1)

    def __str__(self) -> str:
        return str(self._a)

    def __format__(self, spec: str) -> str:
        return format(self._a, spec)

    # ---- NumPy's protocols: NumPy ufuncs and functions given CuPy arrays dispatch to CuPy ----
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        for x in inputs + (out if isinstance(out, tuple) else ()):
            _check_operand(x, ufunc.__name__ in _COMPARISONS)
        return _call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ not in _HOST_OK:  # (CuPy calls its own function of that name)
            for a in args:
                for x in a if isinstance(a, list | tuple) else (a,):
                    _check_operand(x)
        return _call(func, args, kwargs)


ndarray.__module__ = "cupy"


def _binary(op, reflected=False, compare=False):
    def method(self, other):
        _check_operand(other, compare)
        o = _unwrap(other)
        return _wrap(op(o, self._a) if reflected else op(self._a, o))

    return method


def _inplace(op):
    def method(self, other):
        _check_operand(other)
        op(self._a, _unwrap(other))
        return self

    return method


def _unary(op):
    return lambda self: _wrap(op(self._a))


for _name, _op in {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "matmul": operator.matmul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "divmod": divmod,
    "pow": operator.pow,
    "lshift": operator.lshift,
    "rshift": operator.rshift,
    "and": operator.and_,
    "or": operator.or_,
    "xor": operator.xor,
}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _binary(_op, reflected=True))
    if _name != "divmod":
        setattr(ndarray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name.rstrip('_')}")))
for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(ndarray, f"__{_name}__", _binary(getattr(operator, _name), compare=True))
for _name, _op in {"neg": operator.neg, "pos": operator.pos, "abs": abs, "invert": operator.invert}.items():
    setattr(ndarray, f"__{_name}__", _unary(_op))


def _advanced(key) -> bool:
    """Whether an index holds an index array (or list): advanced indexing, CuPy's scatter."""
    return any(
        isinstance(k, ndarray | list) or (isinstance(k, _np.ndarray) and k.ndim > 0)
        for k in (key if isinstance(key, tuple) else (key,))
    )


def _unwrap(x):
    """The NumPy arrays held by this module's arrays (inside tuples, lists and slices too)."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, tuple):
        return tuple(_unwrap(v) for v in x)
    if isinstance(x, list):
        return [_unwrap(v) for v in x]
    return x


def _wrap(x, given=None):
    """NumPy results as this module's arrays (inside tuples and lists too); a result that is the
    array held by one of ``given`` is that array, as CuPy returns its argument unchanged."""
    if isinstance(x, _np.ndarray):
        for g in given or ():
            if isinstance(g, ndarray) and g._a is x:
                return g
        return ndarray._of(x)
    if isinstance(x, _np.generic):  # a NumPy scalar result: CuPy gives a 0-d array
        return ndarray._of(_np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v, given) for v in x)
    if isinstance(x, list):
        return [_wrap(v, given) for v in x]
    return x


def _call(fn, args, kwargs, self=None):
    given = (self, *args, *kwargs.values())
    out = kwargs.get("out")
    r = fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
    if out is not None and isinstance(r, _np.ndarray):
        return _wrap(r, out if isinstance(out, tuple) else (out,))
    return _wrap(r, given)


def _wrapped(fn, self=None):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        return _call(fn, args, kwargs, self)

    return call


def _ufunc(uf):
    @functools.wraps(uf)
    def call(*args, **kwargs):
        for x in args:
            _check_operand(x)
        return _call(uf, args, kwargs)

    return call


class _Proxy:
    """A NumPy module or object whose callables take and return this module's arrays."""

    def __init__(self, target) -> None:
        self._target = target

    def __getattr__(self, name):
        v = getattr(self._target, name)
        if isinstance(v, types.ModuleType):
            return _Proxy(v)
        if isinstance(v, _np.ufunc):
            return _ufunc(v)
        if callable(v) and not isinstance(v, type):
            fn = _wrapped(v)
            if isinstance(v, types.FunctionType | types.BuiltinFunctionType):
                return fn
            return _proxy_result(fn)
        return v


def _proxy_result(fn):
    """Constructors (RandomState, default_rng...): their objects' methods wrap too."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        r = fn(*args, **kwargs)
        return r if isinstance(r, ndarray | _np.ndarray | int | float | tuple | list) else _Proxy(r)

    return call


#: NumPy functions whose CuPy twins take host arrays too: a shape and a dtype read from them, a shape
#: given as an array, ``take``'s indices uploaded (``_routines_indexing.pyx`` ``_take``).
_HOST_OK = frozenset(
    "empty_like zeros_like ones_like full_like empty zeros ones full arange linspace eye identity "
    "isscalar ndim shape size take".split()
)
