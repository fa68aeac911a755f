"""pickle and copies of a ``CurvatureOperator``.

An operator is its product functions. ``hessian.from_mlp``'s are fixed by picklable data (the
model, the params, the batches and the options), and ``as_operator``'s of a dense or sparse matrix by
that matrix, so such an operator pickles as that recipe and is
rebuilt in the receiving process: what a ``multiprocessing`` user expects of an object sent to a
worker (a copy, as a NumPy view arrives as a copy). An operator over functions defined inside
another function or lambdas (``from_hvp(lambda v: ...)``, ``from_grad``, ``compose``, a distributed
operator) cannot be pickled by reference: it is refused with a TypeError that says what to send
instead, where pickle raised a PicklingError about a class or a local object from deep inside.
``from_hvp`` over module-level functions pickles them by reference, as pickle does any function.

``copy.copy`` / ``copy.deepcopy`` keep working for every operator: a shallow copy shares the
functions; a deep copy of a recipe operator is rebuilt from copied data (detached from the
caller's arrays, as deepcopy promises), of another shares its functions (Python's deepcopy
treats functions as atomic) and copies its other attributes.

A recipe describes the functions only, not the operator it was made for: a shallow copy shares it,
and a recipe bound to the original gave a pickle (or deep copy) of the copy the original's
``num_matvecs``. The operator's own attributes (``name``, ``num_matvecs``, ``trusted_symmetric``,
any the user set) travel beside the recipe, as pickle's state, from the operator pickled."""

from __future__ import annotations

import copy
import functools

from .._serial import unlocked

# the attributes holding an operator's functions (their names: the operator's own, from_hvp's "fn")
_FUNCTIONS = ("_mv", "_mm", "_into")
# what a recipe builds again (functions over the operator's data, and the recipe itself); every other
# attribute is the operator's own and is carried by its pickle and deep copy
_REBUILT = (*_FUNCTIONS, "_quad", "_quad_then", "_avoid", "_recipe")


def _local(fn) -> bool:
    """Whether pickle cannot find ``fn`` by its name: a lambda or a function defined inside another
    (bound methods and partials are looked through, a partial's arguments too), or a callable object
    of a class defined inside a function (pickle finds an object by its class: such an ``fn`` raised
    pickle's own AttributeError, "Can't pickle local object", a lambda among a partial's arguments its
    PicklingError)."""
    if isinstance(fn, functools.partial):
        parts = (fn.func, *fn.args, *fn.keywords.values())
        return any(_local(a) for a in parts if callable(a))
    fn = getattr(fn, "__func__", fn)  # (a bound method: its function)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str):  # (a callable object: pickled by its class's name)
        qualname = type(fn).__qualname__
    return "<locals>" in qualname or "<lambda>" in qualname


def refuse_local(what: str, fn) -> None:
    """TypeError unless ``fn`` (named ``what``) is None or pickles by name."""
    if fn is not None and _local(fn):
        raise TypeError(
            f"cannot pickle this CurvatureOperator: its {what} is {getattr(fn, '__qualname__', fn)!r}, a "
            "lambda or a function (or class) defined inside another, which pickle cannot send. Build the operator in "
            "the process that uses it: send what it is made of (hessian.from_mlp's operators pickle as their "
            "model, params and batches), or give from_hvp module-level functions"
        )


def operator_reduce(self, protocol):
    """pickle's hook: the recipe's ``(callable, args)``, or the instance's state when its functions
    pickle by name (``from_hvp`` over module-level functions); else the TypeError of :func:`refuse_local`."""
    recipe = vars(self).get("_recipe")
    if recipe is not None:  # (the state set once the operator is rebuilt: pickle memoizes it first)
        return (*recipe(pickling=True), _own_state(self))
    names = vars(self).get("_check") or ("matvec", "matmat", "into")
    for attr, what in zip(_FUNCTIONS, names):
        refuse_local(what, vars(self).get(attr))
    refuse_local("avoid", vars(self).get("_avoid"))
    for attr in ("_quad", "_quad_then"):  # (set by library constructors only: with a recipe)
        refuse_local("product", vars(self).get(attr))
    return (_unpickled, (type(self), self.__getstate__()))  # (NativeByName's: modules by name, no lock)


def _own_state(self) -> dict:
    """``self``'s attributes a recipe does not rebuild (modules by name, no lock: ``__getstate__``'s)."""
    return {k: v for k, v in self.__getstate__().items() if k not in _REBUILT}


def _unpickled(cls, state: dict):
    op = cls.__new__(cls)
    op.__setstate__(state)
    return op


def operator_copy(self):
    """A shallow copy: the same functions and data, its own counters."""
    new = type(self).__new__(type(self))
    vars(new).update(unlocked(vars(self)))
    return new


def operator_deepcopy(self, memo):
    recipe = vars(self).get("_recipe")
    if recipe is not None:
        fn, args = recipe(pickling=False)
        new = fn(*copy.deepcopy(args, memo))
        memo[id(self)] = new  # (before the state: an attribute referring to the operator gets the copy)
        new.__setstate__(copy.deepcopy(_own_state(self), memo))
    else:  # (the functions are shared: deepcopy copies no function; the native modules kept by name)
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
    memo[id(self)] = new
    return new
