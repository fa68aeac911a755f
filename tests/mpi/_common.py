"""Shared pieces of the MPI check scripts (run by tests/test_distributed.py under mpiexec).

A synthetic least-squares problem over many arrays of odd sizes: row ``i`` of the data has
scales ``S_i`` and targets ``X_i`` (one value per parameter element) and the loss
``0.5 ||p * S_i - X_i||^2``; its gradient is ``S_i * (p * S_i - X_i)``. Every rank can
regenerate every rank's rows, so the single-process reference on the concatenated batch
is computed on each rank without communication.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from optkern import optim

SIZES = [(7,), (1,), (0,), (3, 5), (1023,), (2, 2, 3)]  # 1046 elements: not a multiple of 4 (or 3)

OPTIMIZERS = [
    ("sgd", optim.SGD, dict(lr=0.05)),
    ("sgd-nesterov-wd", optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("adagrad", optim.Adagrad, dict(lr=0.05, lr_decay=1e-2, weight_decay=1e-3)),
    ("adagrad-norm", optim.AdagradNorm, dict(lr=0.5, b0=0.1, weight_decay=1e-2)),
    ("rmsprop-centered-mom", optim.RMSprop, dict(lr=1e-2, centered=True, momentum=0.5)),
    ("adadelta", optim.Adadelta, dict(lr=1.0, weight_decay=1e-3)),
    ("adam-amsgrad", optim.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=1e-3)),
    ("adamw", optim.AdamW, dict(lr=1e-2)),
    ("nadam", optim.NAdam, dict(lr=1e-2)),
]


def rows_of(world: int, total: int = 23) -> list:
    """Uneven row counts per rank, the last rank with none (world > 1)."""
    if world == 1:
        return [total]
    w = np.arange(1, world, dtype=float)
    counts = np.floor(total * w / w.sum()).astype(int)
    counts[0] += total - counts.sum()
    return [int(c) for c in counts] + [0]


def data(total_rows: int, dtype, seed: int = 1):
    n = sum(int(np.prod(s)) for s in SIZES)
    rng = np.random.default_rng(seed)
    S = rng.uniform(0.5, 1.5, (total_rows, n)).astype(dtype)
    X = rng.standard_normal((total_rows, n)).astype(dtype)
    return S, X


def init_params(dtype, seed: int = 2) -> list:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SIZES]


def split(flat, like) -> list:
    out, at = [], 0
    for p in like:
        out.append(np.ascontiguousarray(flat[at : at + p.size].reshape(p.shape)))
        at += p.size
    return out


def grads(params, S, X) -> list:
    """Mean gradient over the rows of S, X (zeros for no rows), one array per parameter."""
    p = np.concatenate([a.reshape(-1) for a in params])
    if S.shape[0] == 0:
        return split(np.zeros_like(p), params)
    g = (S * (p * S - X)).mean(axis=0, dtype=p.dtype).astype(p.dtype)
    return split(g, params)


def flat(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a).reshape(-1) for a in arrays])


def numbers(obj) -> np.ndarray:
    """Every number in an estimator's result (dataclass / tuple / array / float), flat float64."""
    if dataclasses.is_dataclass(obj):
        obj = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    if isinstance(obj, (list, tuple)):
        parts = [numbers(o) for o in obj if o is not None and not isinstance(o, (str, bool))]
        return np.concatenate(parts) if parts else np.zeros(0)
    if isinstance(obj, dict):
        return numbers(list(obj.values()))
    a = np.asarray(obj)
    return a.astype(np.float64).reshape(-1) if a.dtype.kind in "fiu" else np.zeros(0)


class Checks:
    """Named checks; every rank runs them all, a failure raises (and, under -m mpi4py, aborts)."""

    def __init__(self, comm):
        self.comm = comm
        self.names = []

    def __call__(self, fn):
        fn(self.comm)
        self.comm.barrier()
        self.names.append(fn.__name__)
        if self.comm.rank == 0:
            print(f"ok {fn.__name__}", flush=True)
        return fn

    def done(self, tag: str) -> None:
        if self.comm.rank == 0:
            print(f"{tag}: {len(self.names)} checks passed on {self.comm.size} ranks", flush=True)
        sys.stdout.flush()


def same_on_all_ranks(comm, a, what: str) -> None:
    """Bitwise: every rank holds exactly rank 0's bytes."""
    mine = np.ascontiguousarray(a).tobytes()
    theirs = comm.allgather_object(mine)
    for r, b in enumerate(theirs):
        assert b == theirs[0], f"{what}: rank {r} differs from rank 0"
