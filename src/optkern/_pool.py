"""NumPy temporaries of optkern's calls from a caching pool (cpp/pool.cpp), not fresh pages.

The MLP's products and training steps allocate and free the same large temporaries on every
call, and the C library hands such blocks back to the system each time, so every call
page-faulted them in again: 30-40% of a Gauss-Newton product or a training step of a
784-256-10 MLP at batch 512 (bench/RESULTS.md, 21st session). Inside :func:`pooled` calls,
NumPy allocates array data from optkern's pool instead, which keeps freed blocks for reuse, as
CuPy's memory pool does on the GPU. The allocator is NumPy's per-context handler: threads and
code outside these calls are unaffected, and arrays made inside (results included) are ordinary
arrays that return their memory to the pool when freed.

``OPTKERN_POOL_BYTES`` sets the most bytes of freed blocks the pool keeps (default 256 MiB;
0 turns the pool off); :func:`release` frees them; ``optkern.info()["pool"]`` reports them.
"""

from __future__ import annotations

import contextlib
import functools

from . import _backend, _env

DEFAULT_LIMIT = 256 << 20

_cpu = _backend.cpu


def _limit_from_env() -> int:
    limit = _env.pool_bytes()
    return DEFAULT_LIMIT if limit is None else limit


_on = False  # limit > 0: with 0, optkern's calls use NumPy's own allocator


def set_limit(nbytes: int) -> None:
    """The most bytes of freed blocks the pool keeps; 0 turns the pool off (NumPy's allocator is
    left in place) and frees what it held."""
    global _on
    nbytes = _backend.integer("nbytes", nbytes, lo=0, hi=_backend.INT64_MAX)  # (the native call's int64)
    _cpu.pool_set_limit(nbytes)
    _on = nbytes > 0


set_limit(_limit_from_env())


@contextlib.contextmanager
def scope():
    """NumPy allocates from the pool inside the ``with`` block (in this thread / context)."""
    prev = _cpu.pool_install() if _on else None
    try:
        yield
    finally:
        if prev is not None:
            _cpu.pool_restore(prev)


def pooled(fn):
    """Decorator: ``fn`` runs with NumPy allocating from the pool (inside :func:`scope`)."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with scope():
            return fn(*args, **kwargs)

    return call


def release() -> None:
    """Frees every block the pool holds (arrays in use keep theirs)."""
    _cpu.pool_release()


def stats() -> dict:
    """``limit`` and ``cached`` (bytes), ``hits`` and ``misses`` (allocations of pooled sizes)."""
    return dict(_cpu.pool_stats())
