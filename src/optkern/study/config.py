"""The study's settings: every knob of a run (``StudyConfig``) and its checks."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import methods
from .methods import DEFAULT_OPTIMIZERS, OPTIMIZERS


class ConfigError(ValueError):
    """A bad study setting; ``field`` names the StudyConfig field (the CLI
    turns it into its flag)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


#: The integer settings and the ranges a study accepts: beyond them one would not finish in any
#: sensible time or memory (``--seeds 10**20`` was accepted and ran forever).
_INT_RANGES = {
    "epochs": (1, 100_000),
    "batch_size": (1, 2**31 - 1),
    "large_batch": (1, 2**31 - 1),
    "checkpoints": (1, 10_000),
    "curvature_batch": (1, 2**31 - 1),
    "top_k": (1, 10_000),
    "concentration_k": (1, 10_000),
    "trace_matvecs": (1, 1_000_000),
    "density_probes": (1, 10_000),
    "density_steps": (1, 100_000),
    "density_grid": (1, 1_000_000),
    "lanczos_steps": (1, 100_000),
    "threads": (1, 4096),
    "jobs": (0, 4096),
    "seed": (0, 2**63 - 1),  # plus seeds and epochs: still a 64-bit Philox key
    "seeds": (1, 10_000),
}
_INT_RANGES_HIDDEN = (1, 65_536)
#: The largest learning rate: the study's weights are float32, whose optimizers refuse a scale above
#: float32's max ** (1/4) (4.3e9; optkern.optim._hyper) when they are built, after earlier runs.
_LR_MAX = float(np.finfo(np.float32).max) ** 0.25


@dataclass
class StudyConfig:
    """Every knob of a study; the defaults are the full study."""

    optimizers: list = field(default_factory=lambda: list(DEFAULT_OPTIMIZERS))
    norms: list = field(default_factory=lambda: ["none", "batch"])
    hidden: tuple = (128, 128)
    activation: str = "tanh"
    epochs: int = 30
    batch_size: int = 64
    large_batch: int = 512  # rows per step of the "large batch" methods (Newton-CG)
    warmup_fraction: float = 0.05
    checkpoints: int = 4  # curvature measured at this many epochs (first and last included)
    curvature_batch: int = 512  # training samples the Hessian is measured on (at most all of them)
    top_k: int = 5  # top eigenvalues reported
    concentration_k: int = 10  # gradient concentration in the top-k eigenspace
    trace_matvecs: int = 60  # Hutch++ budget
    density_probes: int = 2  # SLQ probes
    density_steps: int = 60  # Lanczos steps per probe
    density_grid: int = 256
    lanczos_steps: int = 80  # cap on Lanczos steps for the top eigenpairs
    lanczos_tol: float = 1e-3  # relative residual at which they count as converged
    threads: int = 1  # optkern and OpenBLAS threads (see optkern/threads.py)
    low_precision: bool = False  # the report compares the LOW_PRECISION runs with their fp32 ones
    jobs: int = 1  # runs trained at once in worker processes; 0: one per logical CPU (study/pool.py; CLI default)
    seed: int = 0
    seeds: int = 1  # runs per configuration, with seeds seed, seed+1, ...
    overrides: dict = field(default_factory=dict)  # {optimizer: {hyper-parameter: value}}, e.g. from --lr
    device: str = "cpu"

    @classmethod
    def quick(cls, **kw) -> StudyConfig:
        """The ``--quick`` smoke study's configuration (fewer epochs and checkpoints, a smaller
        network and curvature budget); ``kw`` sets any field on top of it."""
        base: dict[str, Any] = dict(
            epochs=4,
            checkpoints=3,
            hidden=(64, 64),
            curvature_batch=256,
            top_k=3,
            concentration_k=5,
            trace_matvecs=24,
            density_probes=1,
            density_steps=30,
        )
        base.update(kw)
        return cls(**base)

    def validate(self) -> None:
        """Check every field (optimizer and norm names, ranges, ``--lr`` overrides); raise
        ``ConfigError`` (a ValueError naming the field) on the first bad one."""
        if not self.optimizers:
            raise ConfigError("optimizers", f"no optimizer given; choose from {', '.join(OPTIMIZERS)}")
        unknown = [o for o in self.optimizers if o not in OPTIMIZERS]
        if unknown:
            raise ConfigError("optimizers", f"unknown {unknown}; choose from {', '.join(OPTIMIZERS)}")
        if not self.norms:
            raise ConfigError("norms", "no normalization given; choose from none, batch, layer")
        bad = [n for n in self.norms if n not in ("none", "batch", "layer")]
        if bad:
            raise ConfigError("norms", f"unknown {bad}; choose from none, batch, layer")
        # A name listed twice would train the same run twice and the report would take the copies
        # for seeds ("done (2 seeds)", a standard deviation of 0): refused, as argparse would.
        for name, given in (("optimizers", self.optimizers), ("norms", self.norms)):
            twice = sorted({v for v in given if list(given).count(v) > 1})
            if twice:
                raise ConfigError(name, f"{', '.join(twice)} listed more than once")
        for name, (lo, hi) in _INT_RANGES.items():
            given = getattr(self, name)
            if isinstance(given, bool) or not isinstance(given, numbers.Integral):
                raise ConfigError(name, f"expected an integer, got {type(given).__name__}")
            v = int(given)
            if v < lo:
                hint = " (0: one per logical CPU)" if name == "jobs" else ""
                raise ConfigError(name, f"must be >= {lo}{hint}, got {v}")
            if v > hi:
                raise ConfigError(name, f"must be <= {hi}, got {v}")
        lo, hi = _INT_RANGES_HIDDEN
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, numbers.Integral) for h in self.hidden):
            raise ConfigError("hidden", f"expected positive layer widths, got {list(self.hidden)}")
        if not all(lo <= h <= hi for h in self.hidden):
            raise ConfigError("hidden", f"expected layer widths in [{lo}, {hi}], got {list(self.hidden)}")
        if "batch" in self.norms and min(self.batch_size, self.curvature_batch) < 2:  # batch norm needs 2 rows
            name = "batch_size" if self.batch_size < 2 else "curvature_batch"
            raise ConfigError(name, f"batch norm needs at least 2 samples, got {getattr(self, name)}")
        # (so do the batches of large_batch rows: Newton-CG's steps on single rows ended the study
        # with the model's traceback at its first step)
        large = [o for o in self.optimizers if o in OPTIMIZERS and OPTIMIZERS[o].batch == "large"]
        if "batch" in self.norms and large and self.large_batch < 2:
            raise ConfigError(
                "large_batch", f"batch norm needs at least 2 samples ({', '.join(large)}), got {self.large_batch}"
            )
        if self.device not in ("cpu", "cuda"):
            raise ConfigError("device", f"expected 'cpu' or 'cuda', got {self.device!r}")
        lowp_runs = [o for o in self.optimizers if o in methods.LOW_PRECISION]
        if lowp_runs and self.device != "cpu":
            field = "low_precision" if self.low_precision else "optimizers"
            raise ConfigError(field, f"{', '.join(lowp_runs)}: low-precision runs are CPU only (NumPy arrays)")
        for name, hp in self.overrides.items():
            if name not in OPTIMIZERS:
                raise ConfigError("overrides", f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
            lr = hp.get("lr", 1.0)
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                raise ConfigError("overrides", f"{name}: the learning rate must be a positive number, got {lr!r}")
            if lr > _LR_MAX:  # (the optimizers refuse it only when built, mid-study, with a traceback)
                raise ConfigError(
                    "overrides",
                    f"{name}: the learning rate must be at most {_LR_MAX:.4g} (float32's max ** (1/4)), got {lr!r}",
                )

    def checkpoint_epochs(self) -> list:
        """The epochs at which the Hessian is measured: ``checkpoints`` of them, evenly spread from 0
        to ``epochs`` (at most one per epoch; a single checkpoint is the last epoch)."""
        c = min(self.checkpoints, self.epochs + 1)
        if c == 1:
            return [self.epochs]
        return sorted({int(round(i * self.epochs / (c - 1))) for i in range(c)})

    def hyperparameters(self, name: str) -> dict:
        """The keyword arguments ``name``'s optimizer is built with. A low-precision run takes its
        float32 baseline's learning rate (``methods.LOW_PRECISION``: their defaults are equal) unless
        it has its own: the report sets the two side by side and words the difference as the
        precision's, which ``--lr adam=1e-3`` alone made a difference of learning rates."""
        base = methods.LOW_PRECISION.get(name)
        inherited = {"lr": self.overrides[base]["lr"]} if "lr" in self.overrides.get(base, {}) else {}
        return {**OPTIMIZERS[name].hyperparameters, **inherited, **self.overrides.get(name, {})}


def all_hyperparameters(name: str, cfg: StudyConfig) -> dict:
    """Every hyper-parameter of ``name``'s run: the ones set, then the class's
    defaults for the rest (read from its signature), for the report."""
    return methods.all_hyperparameters(name, cfg.hyperparameters(name))


#: float32 arrays of the model's size one run holds at least besides its Hessian measurements: the
#: weights, their gradient and two optimizer states (Adam's moments)
_COPIES = 4


def model_weights(cfg: StudyConfig, n_features: int, n_classes: int) -> int:
    """The MLP's weight and bias count for ``cfg.hidden`` between the data's features and classes
    (Python integers: exact for any widths)."""
    sizes = [int(n_features), *map(int, cfg.hidden), int(n_classes)]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


#: The measured peak of a checkpoint's Hessian measurements over ``_curvature_copies``' floor, rounded
#: up: tracemalloc, NumPy's allocations, optkern's pool off (55th session, digits, curvature batch 8,
#: widths 256x256 and 512x512, each measured after a first call): --quick 87 copies of the weights (1.08x
#: its floor of 81), the default config 142 (1.75x: Hutch++ holds ~2 trace_matvecs vectors, 119 of them, and
#: the density's 2 probes ~2 (density_steps + 1), 130; the top eigenvectors stay meanwhile); h321 saw 158
#: (1.95x) in a process's first call. Tests: test_hunt54c_study_memory, test_hunt55c_study_memory.
MEASURED_FACTOR = 2
#: floats of the curvature batch's activations per sample and unit of width that a block product holds
#: (forward, R-forward and backward of ``block_size`` 16 directions): 59-81 measured at batch 512, widths
#: 64x64, 256x256 and 1024 (the same measurement), rounded up
_ACTIVATION_FLOATS = 96


def _curvature_copies(cfg: StudyConfig) -> int:
    """Vectors of the model's size a checkpoint's Hessian measurements hold at once, at least (a floor:
    :data:`MEASURED_FACTOR` says by how much the measured peak exceeds it): the Lanczos basis of the
    top eigenpairs (a vector per step and the start), the SLQ basis of the density
    (``density_steps + 1``), Hutch++'s sketch and its products (``2 (trace_matvecs // 3)``). They run
    one after the other: the largest counts; the estimators' own work arrays come on top."""
    k = max(cfg.top_k, cfg.concentration_k)
    return max(max(cfg.lanczos_steps, k) + 1, cfg.density_steps + 1, 2 * (cfg.trace_matvecs // 3))


def run_bytes(cfg: StudyConfig, n_features: int, n_classes: int) -> int:
    """Bytes one run holds at least (a floor: what ``check_memory`` refuses by never fits):
    ``_COPIES`` float32 copies of the model's weights while it trains and the Hessian measurements'
    vectors (``_curvature_copies``) at its checkpoints. Measured peaks exceed it by up to
    :data:`MEASURED_FACTOR` in its Hessian part, plus activations and optkern's pool: :func:`run_bytes_high`."""
    return 4 * (_COPIES + _curvature_copies(cfg)) * model_weights(cfg, n_features, n_classes)


def run_bytes_high(cfg: StudyConfig, n_features: int, n_classes: int) -> int:
    """Bytes one run may hold at its peak, from above (the default ``--jobs`` cap's estimate, where
    too high only starts fewer workers): the Hessian part of :func:`run_bytes` times
    :data:`MEASURED_FACTOR`, the curvature batch's activations (:data:`_ACTIVATION_FLOATS`), and the
    freed temporaries optkern's pool keeps for reuse (``OPTKERN_POOL_BYTES``, default 256 MiB, each
    worker its own; at most what the measurements allocate)."""
    from .. import _pool

    n = model_weights(cfg, n_features, n_classes)
    hessian = 4 * MEASURED_FACTOR * _curvature_copies(cfg) * n
    widths = sum(map(int, cfg.hidden)) + int(n_classes)
    activations = 4 * _ACTIVATION_FLOATS * int(cfg.curvature_batch) * widths
    pool = min(int(_pool.stats()["limit"]), hessian + activations)
    return 4 * _COPIES * n + hessian + activations + pool


def _memory_bytes(device: str) -> int | None:
    """The memory a run may use: the host's physical memory, or the GPU's; None when unknown."""
    try:
        if device == "cuda":
            import cupy

            return int(cupy.cuda.runtime.memGetInfo()[1])
        import os

        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except Exception:  # (no sysconf names, no CUDA runtime: the study finds out as it allocates)
        return None


def runs_that_fit(cfg: StudyConfig, n_features: int, n_classes: int, available: int | None = -1) -> int | None:
    """How many runs fit in ``available`` bytes at once by :func:`run_bytes_high` (default: this
    machine's memory; None where it is unknown): the cap on the default ``--jobs``, which must not
    start more workers than the memory holds where the user asked for no number. By the floor
    (``run_bytes``: 81 copies of the weights where 142-158 were measured) the default started up to
    twice as many workers as the memory held."""
    avail = _memory_bytes(cfg.device) if available == -1 else available
    return None if avail is None else int(avail // run_bytes_high(cfg, n_features, n_classes))


def check_memory(
    cfg: StudyConfig, n_features: int, n_classes: int, available: int | None = -1, at_once: int = 1
) -> None:
    """ConfigError when ``at_once`` runs (``--jobs``' worker processes, each holding its own) need
    more than ``available`` bytes (default: this machine's; None: not checked), by ``run_bytes``'
    lower bound: naming ``hidden`` when one run does not fit, else ``jobs`` (with the count that
    fits). Arithmetic only, before anything is allocated: ``--hidden 65536,65536`` (4.3e9 weights,
    64 GiB) started the study and failed in NumPy's allocation, or was killed by the system
    part-way (and a sanitizer's allocator aborts on such a request); ``--hidden 16384,16384`` (1 GiB
    of weights) passed a bound of 4 copies and needed over 80 at its first Hessian."""
    avail = _memory_bytes(cfg.device) if available == -1 else available
    if avail is None:
        return
    one = run_bytes(cfg, n_features, n_classes)
    n = model_weights(cfg, n_features, n_classes)
    where = "GPU memory" if cfg.device == "cuda" else "memory"
    if one > avail:
        sizes = [int(n_features), *map(int, cfg.hidden), int(n_classes)]
        raise ConfigError(
            "hidden",
            f"an MLP of layer sizes {sizes} has {n:,} weights: a run holds at least {one / 2**30:.1f} GiB "
            f"({_COPIES} float32 copies while it trains -- weights, gradient, optimizer state -- and "
            f"{_curvature_copies(cfg)} more for the Hessian measurements), more than the {avail / 2**30:.0f} GiB "
            f"of {where} here; choose smaller widths",
        )
    if at_once > 1 and at_once * one > avail:
        fit = avail // one
        raise ConfigError(
            "jobs",
            f"{at_once} runs at once hold at least {at_once * one / 2**30:.1f} GiB ({one / 2**30:.1f} GiB each: "
            f"{n:,} weights, {_COPIES + _curvature_copies(cfg)} float32 copies with the Hessian measurements), "
            f"more than the {avail / 2**30:.0f} GiB of {where} here; use --jobs {fit}",
        )
