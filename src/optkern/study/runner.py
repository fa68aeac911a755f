"""The optimization study: train the built-in MLP with several optimizers, with
and without batch norm, and measure the loss Hessian along the way (top
eigenvalues, trace, spectral density, gradient concentration), the
measurements of Ghorbani, Krishnan & Xiao (ICML 2019)."""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import hessian, optim, schedules
from ..datasets import Dataset
from ..nn import MLP
from ..threads import limit_threads
from .progress import ProgressBar

# name -> (optimizer class, hyper-parameters). Learning rates are each
# method's usual good value for a small tanh MLP on standardized inputs.
OPTIMIZERS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "momentum": ("SGD", dict(lr=0.02, momentum=0.9)),
    "nesterov": ("SGD", dict(lr=0.02, momentum=0.9, nesterov=True)),
    "adagrad": ("Adagrad", dict(lr=0.05)),
    "rmsprop": ("RMSprop", dict(lr=1e-3)),
    "adam": ("Adam", dict(lr=2e-3)),
    "adamw": ("AdamW", dict(lr=2e-3, weight_decay=1e-2)),
    "nadam": ("NAdam", dict(lr=2e-3)),
}


@dataclass
class StudyConfig:
    """Every knob of a study; the defaults are the full study."""
    optimizers: list = field(default_factory=lambda: list(OPTIMIZERS))
    norms: list = field(default_factory=lambda: ["none", "batch"])
    hidden: tuple = (128, 128)
    activation: str = "tanh"
    epochs: int = 30
    batch_size: int = 64
    warmup_fraction: float = 0.05
    checkpoints: int = 4            # curvature measured at this many epochs (first and last included)
    curvature_batch: int = 512      # training samples the Hessian is measured on
    top_k: int = 5                  # top eigenvalues reported
    concentration_k: int = 10       # gradient concentration in the top-k eigenspace
    trace_matvecs: int = 60         # Hutch++ budget
    density_probes: int = 2         # SLQ probes
    density_steps: int = 60         # Lanczos steps per probe
    density_grid: int = 256
    lanczos_steps: int = 80         # cap on Lanczos steps for the top eigenpairs
    lanczos_tol: float = 1e-3       # relative residual at which they count as converged
    threads: int = 1                # optkern and OpenBLAS threads (see optkern/threads.py)
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def quick(cls, **kw) -> StudyConfig:
        base: dict[str, Any] = dict(epochs=4, checkpoints=3, hidden=(64, 64), curvature_batch=256, top_k=3,
                                    concentration_k=5, trace_matvecs=24, density_probes=1, density_steps=30)
        base.update(kw)
        return cls(**base)

    def validate(self) -> None:
        unknown = [o for o in self.optimizers if o not in OPTIMIZERS]
        if unknown or not self.optimizers:
            raise ValueError(f"optimizers: unknown {unknown}; choose from {', '.join(OPTIMIZERS)}")
        bad = [n for n in self.norms if n not in ("none", "batch", "layer")]
        if bad or not self.norms:
            raise ValueError(f"norms: unknown {bad}; choose from none, batch, layer")
        for name in ("epochs", "batch_size", "checkpoints", "curvature_batch", "top_k", "concentration_k",
                     "trace_matvecs", "density_probes", "density_steps", "density_grid", "lanczos_steps",
                     "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer widths, got {list(self.hidden)}")
        if "batch" in self.norms and min(self.batch_size, self.curvature_batch) < 2:  # batch norm needs 2 rows
            name = "batch_size" if self.batch_size < 2 else "curvature_batch"
            raise ValueError(f"{name}: batch norm needs at least 2 samples, got {getattr(self, name)}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {self.device!r}")

    def checkpoint_epochs(self) -> list:
        c = min(self.checkpoints, self.epochs + 1)
        if c == 1:
            return [self.epochs]
        return sorted({int(round(i * self.epochs / (c - 1))) for i in range(c)})


def _xp(device: str):
    if device == "cuda":
        import cupy  # optional dependency, imported lazily

        return cupy
    return np


def make_optimizer(name: str, params):
    cls_name, hp = OPTIMIZERS[name]
    return getattr(optim, cls_name)([params], **hp), dict(hp)


def batches(n: int, size: int) -> list:
    """Slices of at most ``size`` rows covering ``range(n)``. A trailing batch
    of one row joins the one before it: batch norm cannot normalize a single
    row, and dropping it would lose a sample."""
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [n])]


def evaluate(model, params, x, y, batch: int = 1024):
    """Mean loss and accuracy over (x, y), in batches (eval-free: the model has
    no dropout and batch norm uses the batch's statistics)."""
    n = x.shape[0]
    tot_loss = 0.0
    correct = 0.0
    for sl in batches(n, batch):
        xb, yb = x[sl], y[sl]
        m = xb.shape[0]
        tot_loss += float(model.loss(params, xb, yb)) * m
        correct += float(model.accuracy(params, xb, yb)) * m
    return tot_loss / n, correct / n


def curvature(model, params, xc, yc, cfg: StudyConfig, seed: int) -> dict:
    """Ghorbani et al.'s measurements of the loss Hessian at ``params`` on the
    batch ``(xc, yc)``. One Lanczos run gives both the top eigenvalues and the
    eigenvectors the gradient concentration projects on."""
    t0 = time.perf_counter()
    op = hessian.from_mlp(model, params, xc, yc)
    k = max(cfg.top_k, cfg.concentration_k)
    top = hessian.top_eigenvalues(op, k=k, which="LA", tol=cfg.lanczos_tol, max_steps=max(cfg.lanczos_steps, k),
                                  seed=seed, return_eigenvectors=True)
    _, g = model.loss_and_grad(params, xc, yc)
    conc = hessian.gradient_concentration(op, g, cfg.concentration_k, eigenvectors=top.eigenvectors)
    tr = hessian.trace(op, method="hutch++", num_matvecs=cfg.trace_matvecs, seed=seed)
    dens = hessian.spectral_density(op, num_probes=cfg.density_probes, steps=cfg.density_steps,
                                    grid=cfg.density_grid, seed=seed)
    return {
        "top_eigenvalues": [float(v) for v in top.eigenvalues[:cfg.top_k]],
        "top_residuals": [float(v) for v in top.residuals[:cfg.top_k]],
        "lanczos_steps": int(top.steps),
        "lanczos_converged": bool(top.converged),
        "trace": float(tr.estimate),
        "trace_stderr": float(tr.stderr),
        "grad_concentration": float(conc),
        "grad_norm": math.sqrt(float(g @ g)),
        "density": {"grid": [float(v) for v in dens.grid], "density": [float(v) for v in dens.density],
                    "sigma": float(dens.sigma)},
        "hvps": int(op.num_matvecs),
        "time_s": time.perf_counter() - t0,
    }


def _safe_curvature(model, params, xc, yc, cfg: StudyConfig, epoch: int, record: dict):
    """``curvature`` at a checkpoint, or None when a run near divergence makes
    the Hessian non-finite (noted in ``record["curvature_failed"]``)."""
    try:
        c = curvature(model, params, xc, yc, cfg, seed=cfg.seed + epoch)
        if not all(math.isfinite(v) for v in (*c["top_eigenvalues"], c["trace"], c["grad_concentration"])):
            raise FloatingPointError("non-finite Hessian estimates")
    except (np.linalg.LinAlgError, FloatingPointError, ValueError) as e:
        record.setdefault("curvature_failed", []).append({"epoch": epoch, "error": f"{type(e).__name__}: {e}"})
        return None
    c["epoch"] = epoch
    return c


def train_run(name: str, norm: str, train: Dataset, val: Dataset, cfg: StudyConfig, record: dict,
              progress: bool = True, cache: dict | None = None) -> dict:
    """One optimizer / normalization run. ``record`` is filled as it goes, so
    an interrupted run leaves what it measured.

    Every run of one normalization starts from the same weights, so the
    epoch-0 measurements are identical across optimizers: with a ``cache``
    dict they are computed by the first run and copied by the others.
    """
    xp = _xp(cfg.device)
    sizes = [train.x.shape[1], *cfg.hidden, train.num_classes]
    model = MLP(sizes, activation=cfg.activation, norm=None if norm == "none" else norm, dtype=np.float32, xp=xp)
    params = model.init_params(seed=cfg.seed)  # same start for every optimizer
    opt, hp = make_optimizer(name, params)
    n = train.x.shape[0]
    steps_per_epoch = len(batches(n, cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    warm = min(max(1, int(cfg.warmup_fraction * total)), total - 1) if total > 1 else 0
    sched = schedules.Scheduler(opt, schedules.warmup_cosine(1.0, warm, max(total, 1))) if total > 1 else None
    xtr, ytr = xp.asarray(train.x), xp.asarray(train.y)
    xva, yva = xp.asarray(val.x), xp.asarray(val.y)
    rng = np.random.default_rng(cfg.seed + 1)
    cidx = rng.choice(n, size=min(cfg.curvature_batch, n), replace=False)
    xc, yc = xtr[xp.asarray(cidx)], ytr[xp.asarray(cidx)]
    ckpts = set(cfg.checkpoint_epochs())
    hist = record.setdefault("history", {"epoch": [], "train_loss": [], "val_loss": [], "val_acc": []})
    curv = record.setdefault("curvature", [])
    record.update(optimizer=name, norm=norm, hyperparameters=hp, num_params=int(model.num_params),
                  status="running")
    t0 = time.perf_counter()
    timing = {"train_time_s": 0.0, "eval_time_s": 0.0, "curvature_time_s": 0.0}

    def measure(epoch: int, train_loss) -> tuple:
        t = time.perf_counter()
        if train_loss is None:  # epoch 0: the loss over the whole training set
            train_loss = evaluate(model, params, xtr, ytr)[0]
        vl, va = evaluate(model, params, xva, yva)
        timing["eval_time_s"] += time.perf_counter() - t
        c = None
        if epoch in ckpts:
            if bar is not None:
                bar.update(0, f"measuring the Hessian at epoch {epoch}...")
            t = time.perf_counter()
            c = _safe_curvature(model, params, xc, yc, cfg, epoch, record)
            timing["curvature_time_s"] += time.perf_counter() - t
        return train_loss, vl, va, c

    def log_epoch(epoch: int, train_loss) -> None:
        if epoch == 0 and cache is not None:
            key = ("epoch0", norm)
            if key not in cache:
                cache[key] = measure(0, None)
            m = copy.deepcopy(cache[key])
        else:
            m = measure(epoch, train_loss)
        for k, v in zip(("train_loss", "val_loss", "val_acc"), m[:3]):
            hist[k].append(v)
        hist["epoch"].append(epoch)
        if m[3] is not None:
            curv.append(m[3])

    label = f"{name}{'+' + norm if norm != 'none' else ''}"
    bar = None
    try:  # overflow in a diverging run is reported by its status, not by NumPy warnings
        with ProgressBar(cfg.epochs, label, enabled=progress) as bar, np.errstate(all="ignore"):
            log_epoch(0, None)
            for epoch in range(1, cfg.epochs + 1):
                t = time.perf_counter()
                perm = xp.asarray(rng.permutation(n))
                tot = 0.0
                for sl in batches(n, cfg.batch_size):
                    idx = perm[sl]
                    loss, grad = model.loss_and_grad(params, xtr[idx], ytr[idx])
                    opt.step([grad])
                    if sched is not None:
                        sched.step()
                    tot += float(loss) * int(idx.shape[0])
                train_loss = tot / n
                timing["train_time_s"] += time.perf_counter() - t
                # Diverged: the loss overflowed or grew a thousandfold over the start's.
                if not math.isfinite(train_loss) or train_loss > 1e3 * hist["train_loss"][0]:
                    record.update(status="diverged", diverged_epoch=epoch, diverged_loss=train_loss)
                    break
                log_epoch(epoch, train_loss)
                bar.update(1, f"loss {train_loss:.4f} val acc {hist['val_acc'][-1]:.3f}")
    finally:  # also when interrupted: the partial run keeps its timings
        record.update(timing, time_s=time.perf_counter() - t0)
    if record["status"] == "running":
        record["status"] = "done"
    return record


def run_study(train: Dataset, val: Dataset, cfg: StudyConfig, progress: bool = True, on_run_done=None) -> dict:
    """All runs of the study. On KeyboardInterrupt the partial results are
    returned with ``interrupted=True`` (the caller writes them)."""
    cfg.validate()
    from .. import info

    results: dict[str, Any] = {"config": dataclasses.asdict(cfg), "info": info(), "dataset": train.name.split(":")[0],
               "num_train": int(train.x.shape[0]), "num_val": int(val.x.shape[0]),
               "checkpoint_epochs": cfg.checkpoint_epochs(), "runs": [],
               "interrupted": False}
    cache: dict = {}
    t0 = time.perf_counter()
    try:
        with limit_threads(cfg.threads):
            for norm in cfg.norms:
                for name in cfg.optimizers:
                    rec: dict = {}
                    results["runs"].append(rec)
                    train_run(name, norm, train, val, cfg, rec, progress=progress, cache=cache)
                    if on_run_done is not None:
                        on_run_done(results)
    except KeyboardInterrupt:
        results["interrupted"] = True
        for r in results["runs"]:
            if r.get("status") == "running":
                r["status"] = "interrupted"
    results["elapsed_s"] = time.perf_counter() - t0
    return results
