"""The optimization study: train the built-in MLP with several optimizers, with
and without batch norm, and measure the loss Hessian along the way (top
eigenvalues, trace, spectral density, gradient concentration), the
measurements of Ghorbani, Krishnan & Xiao (ICML 2019)."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import numpy as np

from .. import schedules
from ..datasets import Dataset
from ..nn import MLP
from ..threads import limit_threads
from . import divergence, lowprec, methods
from .batching import batch_rows as batch_rows
from .batching import batches as batches
from .batching import evaluate as evaluate
from .batching import warmup_steps
from .config import ConfigError, StudyConfig, all_hyperparameters, check_memory, runs_that_fit

# (runner.curvature, not hessian_measures.curvature, is what _safe_curvature calls: tests patch it here)
from .hessian_measures import curvature
from .methods import DEFAULT_OPTIMIZERS, OPTIMIZERS, Method
from .parallel import Objective
from .progress import ProgressBar

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "OPTIMIZERS",
    "ConfigError",
    "Method",
    "StudyConfig",
    "all_hyperparameters",
    "run_study",
    "train_run",
]


# (LBFGS's, NewtonCG's and SAM's refusal of a closure's gradient: optim/lbfgs.py, newton_cg.py, sam.py)
_NONFINITE_GRAD = "closure: returned a gradient with NaN or Inf entries"


def _xp(device: str):
    if device == "cuda":
        import cupy

        return cupy
    return np


def make_optimizer(name: str, params, cfg: StudyConfig | None = None, curvature=None, extra=None):
    """``name``'s optimizer over ``params`` (public API: the class and its hyper-parameters);
    ``curvature``: a callable returning the current batch's operator (Newton-CG); ``extra``:
    per-run settings (lowprec.extra_hyperparameters)."""
    hp = {**(cfg or StudyConfig()).hyperparameters(name), **(extra or {})}
    return methods.build(name, [params], hp, curvature), dict(hp)


def _safe_curvature(model, params, xc, yc, cfg: StudyConfig, seed: int, epoch: int, record: dict, comm=None):
    """``curvature`` at a checkpoint, or None when a run near divergence makes
    the Hessian non-finite (noted in ``record["curvature_failed"]``)."""
    try:
        c = curvature(model, params, xc, yc, cfg, seed=seed + epoch, comm=comm)
        if not all(math.isfinite(v) for v in (*c["top_eigenvalues"], c["trace"], c["grad_concentration"])):
            raise FloatingPointError("non-finite Hessian estimates")
    except (np.linalg.LinAlgError, FloatingPointError, ValueError) as e:
        record.setdefault("curvature_failed", []).append({"epoch": epoch, "error": f"{type(e).__name__}: {e}"})
        return None
    c["epoch"] = epoch
    return c


def train_run(
    name: str,
    norm: str,
    train: Dataset,
    val: Dataset,
    cfg: StudyConfig,
    record: dict,
    progress: bool = True,
    cache: dict | None = None,
    seed: int | None = None,
    comm=None,
) -> dict:
    """One optimizer / normalization / seed run. ``record`` is filled as it
    goes, so an interrupted run leaves what it measured.

    ``comm`` (an ordered ``optkern.distributed.Communicator``): data-parallel over its
    ranks, each computing the loss and gradient of its shard of every batch (see
    parallel.py); every rank returns the same record.

    ``seed`` (default ``cfg.seed``) sets the initial weights, the batch order
    and the Hessian probes; the Hessian's sample subset depends on ``cfg.seed``
    only, so every run is measured on the same samples. Every run of one
    normalization and seed starts from the same weights (a half-precision run:
    rounded to its format), so the epoch-0 measurements are identical across
    optimizers of one precision: with a ``cache`` dict they are computed by the
    first run and copied by the others (``epoch0_key``), with a note of a
    Hessian that failed there.
    """
    seed = cfg.seed if seed is None else seed
    xp = _xp(cfg.device)
    sizes = [train.x.shape[1], *cfg.hidden, train.num_classes]
    model = MLP(sizes, activation=cfg.activation, norm=None if norm == "none" else norm, dtype=np.float32, xp=xp)
    params = model.init_params(seed=seed)  # same start for every optimizer (and every rank)
    method = OPTIMIZERS[name]
    objective = Objective(model, params, comm)
    n = train.x.shape[0]
    bsize = batch_rows(name, cfg, n)
    steps_per_epoch = len(batches(n, bsize))
    half = lowprec.HalfWeights(params, method.precision) if method.precision else None
    # (divergence.stuck: a run that never moved from here is no result; after HalfWeights, which
    # rounds params to the half-precision weights the model reads)
    initial = params.copy()
    opt, hp = make_optimizer(
        name,
        params if half is None else half.half,
        cfg,
        curvature=lambda: objective.curvature("ggn"),
        extra=lowprec.extra_hyperparameters(name, cfg.epochs, steps_per_epoch, seed),
    )
    objective.attach(opt)
    total = steps_per_epoch * cfg.epochs
    warm = warmup_steps(cfg.warmup_fraction, total)
    sched = (
        schedules.Scheduler(opt, schedules.warmup_cosine(1.0, warm, total), relative=True)
        if warm is not None and method.schedule
        else None
    )

    def step() -> float:
        """One optimizer step on the objective's batch; the batch's loss at the start."""
        if method.closure:
            try:
                return float(opt.step(objective.closure))
            except ValueError as e:
                # The closure optimizers refuse a non-finite loss or gradient from their closure: the
                # run diverged mid-epoch (reported as such, as a first-order run's is), where it ended
                # the whole study with a traceback. (SAM refuses a NaN gradient behind a finite loss
                # too, since session 34: it used to step to NaN params, refused at the next loss.)
                if math.isfinite(float(objective.last_loss)) and not str(e).startswith(_NONFINITE_GRAD):
                    raise
                return math.inf
        loss, grads = objective.closure()
        if half is None:
            opt.step(grads)
        else:  # half gradients in, half weights out
            half.step(opt, grads)
        return float(loss)

    xtr, ytr = xp.asarray(train.x), xp.asarray(train.y)
    xva, yva = xp.asarray(val.x), xp.asarray(val.y)
    # The Hessian's samples: one subset for every run; the batch order: one stream per seed.
    cidx = np.random.default_rng(cfg.seed + 1).choice(n, size=min(cfg.curvature_batch, n), replace=False)
    rng = np.random.default_rng((seed, 2))
    xc, yc = xtr[xp.asarray(cidx)], ytr[xp.asarray(cidx)]
    ckpts = set(cfg.checkpoint_epochs())
    hist = record.setdefault("history", {"epoch": [], "train_loss": [], "val_loss": [], "val_acc": []})
    curv = record.setdefault("curvature", [])
    record.update(
        optimizer=name,
        norm=norm,
        seed=seed,
        hyperparameters=hp,
        num_params=int(model.num_params),
        curvature_samples=int(len(cidx)),
        batch_size=int(bsize),
        steps=0,
        grad_evals=0,
        status="running",
    )
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
            c = _safe_curvature(model, params, xc, yc, cfg, seed, epoch, record, comm)
            timing["curvature_time_s"] += time.perf_counter() - t
        return train_loss, vl, va, c

    def log_epoch(epoch: int, train_loss) -> None:
        if epoch == 0 and cache is not None:
            key = epoch0_key(name, norm, seed)
            if key in cache:  # its measurement, and the note of a Hessian that failed there
                m, failed = copy.deepcopy(cache[key])
                if failed:
                    record.setdefault("curvature_failed", []).extend(failed)
            else:
                before = len(record.get("curvature_failed", []))
                m = measure(0, None)
                cache[key] = copy.deepcopy((m, record.get("curvature_failed", [])[before:]))
        else:
            m = measure(epoch, train_loss)
        for k, v in zip(("train_loss", "val_loss", "val_acc"), m[:3]):
            hist[k].append(v)
        hist["epoch"].append(epoch)
        if m[3] is not None:
            curv.append(m[3])

    label = f"{name}{'+' + norm if norm != 'none' else ''}" + (f" seed {seed}" if cfg.seeds > 1 else "")
    bar = None
    try:  # overflow in a diverging run is reported by its status, not by NumPy warnings
        with ProgressBar(cfg.epochs, label, enabled=progress) as bar, np.errstate(all="ignore"):
            log_epoch(0, None)
            losses = [hist["train_loss"][-1]]  # per epoch, for divergence.diverged_at
            for epoch in range(1, cfg.epochs + 1):
                t = time.perf_counter()
                perm = xp.asarray(rng.permutation(n))
                tot = 0.0
                for sl in batches(n, bsize):
                    idx = perm[sl]
                    objective.set_batch(xtr[idx], ytr[idx])
                    loss = step()
                    if sched is not None:
                        sched.step()
                    record["steps"] += 1
                    tot += loss * int(idx.shape[0])
                train_loss = tot / n
                if method.batch == "full" and math.isfinite(train_loss):  # one step per epoch: the loss it reached
                    train_loss = objective.loss()
                record["grad_evals"] = objective.evaluations
                timing["train_time_s"] += time.perf_counter() - t
                losses.append(train_loss)
                gone = divergence.diverged_at(losses, last=epoch == cfg.epochs)
                if gone is not None:
                    divergence.cut_at(record, gone)  # (a diverged run's history ends at the epoch before)
                    record.update(status="diverged", diverged_epoch=gone, diverged_loss=losses[gone])
                    # (else the run's last line, the only one in a log, kept its last step's note)
                    bar.update(0, f"diverged at epoch {gone} (loss {losses[gone]:.4g})")
                    break
                log_epoch(epoch, train_loss)
                bar.update(1, f"loss {train_loss:.4f} val acc {hist['val_acc'][-1]:.3f}")
        if record["status"] == "running":
            swa_failed: dict = {}  # (the average's Hessian failing is not the last iterate's)
            swa = lowprec.swa_measurement(
                opt,
                lambda p: evaluate(model, p, xva, yva),
                lambda p: _safe_curvature(model, p, xc, yc, cfg, seed, cfg.epochs, swa_failed, comm),
                lambda p: evaluate(model, p, xtr, ytr)[0],
            )
            if swa is not None:
                # the last iterate's loss measured as the average's is (the whole training set at the
                # end), beside the history's mean over the last epoch's batches
                swa["last_train_loss"] = float(evaluate(model, params, xtr, ytr)[0])
                if swa_failed:
                    swa["curvature_failed"] = swa_failed["curvature_failed"]
                record["swa"] = swa
        record["state_bytes_per_param"] = lowprec.state_bytes(opt) / max(int(model.num_params), 1)
        if half is not None and half.scaler is not None:
            record.update(loss_scale=half.scaler.get_scale(), skipped_steps=half.skipped)
    finally:  # also when interrupted: the partial run keeps its timings
        record.update(timing, time_s=time.perf_counter() - t0)
        if hasattr(opt, "num_hvps"):  # Newton-CG's curvature products (training, not measurement)
            record["train_hvps"] = int(opt.num_hvps)
    if record["status"] == "running":
        record["status"] = "done"
        # a dead network (loss ln C, chance accuracy) stays within the divergence bound: flagged
        shares = np.bincount(np.asarray(val.y), minlength=int(train.num_classes)) / len(val.y)
        record["stuck"] = divergence.stuck(initial, params)
        record["collapsed"] = divergence.collapsed(
            hist["train_loss"][-1], hist["val_acc"][-1], len(shares), len(val.y), shares
        )
    return record


def epoch0_key(name: str, norm: str, seed: int) -> tuple:
    """The epoch-0 cache's key of ``name``'s run: every run of one normalization and seed starts
    from the same weights, except that a half-precision run (``Method.precision``) starts from
    them rounded to its format (``lowprec.HalfWeights``), so it is measured there, by itself
    (runs of the same format share it)."""
    return ("epoch0", norm, seed, OPTIMIZERS[name].precision)


def study_jobs(cfg: StudyConfig, runs: int, comm=None, fit: int | None = None) -> int:
    """How many runs train at once: ``cfg.jobs``, or with 0 one per logical CPU (pool.py), at most
    ``fit`` (``config.runs_that_fit``: the default starts no more workers than the memory holds by
    ``run_bytes_high``'s estimate from above; an explicit ``--jobs`` past ``run_bytes``' floor is
    refused by ``check_memory``); always one on a GPU (one device)
    and under MPI (the ranks already share every run)."""
    if comm is not None or cfg.device != "cpu":
        return 1
    if cfg.jobs:
        return max(1, min(int(cfg.jobs), runs))
    from .pool import default_jobs

    jobs = default_jobs(cfg, runs)
    return jobs if fit is None else max(1, min(jobs, fit))


def run_study(
    train: Dataset, val: Dataset, cfg: StudyConfig, progress: bool = True, on_run_done=None, comm=None
) -> dict:
    """All runs of the study (every normalization x optimizer x seed). On
    KeyboardInterrupt the partial results are returned with ``interrupted=True``
    (the caller writes them). ``comm``: data-parallel over its ranks (see ``train_run``);
    every rank returns the same results, progress is drawn by rank 0 only."""
    cfg.validate()
    nf, nc = int(train.x.shape[1]), int(train.num_classes)
    runs = len(cfg.optimizers) * len(cfg.norms) * cfg.seeds
    jobs = study_jobs(cfg, runs, comm, runs_that_fit(cfg, nf, nc))
    # Before any run allocates its model: one run's widths, then the runs at once (each worker holds
    # its own). A library caller's cfg.jobs past the memory was never refused here (at once: 1).
    check_memory(cfg, nf, nc, at_once=jobs)
    from .. import info

    n = int(train.x.shape[0])
    results: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "info": info(),
        "dataset": train.name.removesuffix(":train"),  # (split() adds it; a file name may hold ":")
        "num_train": int(train.x.shape[0]),
        "num_val": int(val.x.shape[0]),
        "num_features": int(train.x.shape[1]),
        "num_classes": int(train.num_classes),
        "data_notes": list(train.notes),
        "curvature_samples": int(min(cfg.curvature_batch, train.x.shape[0])),
        "checkpoint_epochs": cfg.checkpoint_epochs(),
        "optimizers": {
            name: {
                "class": OPTIMIZERS[name].optimizer,
                "about": OPTIMIZERS[name].about,
                "batch_size": batch_rows(name, cfg, int(train.x.shape[0])),
                "hyperparameters": methods.all_hyperparameters(name, hp),
                "set": sorted(hp),
            }
            for name in cfg.optimizers
            for hp in [lowprec.table_hyperparameters(name, cfg, len(batches(n, batch_rows(name, cfg, n))))]
        },
        "runs": [],
        "interrupted": False,
        "ranks": 1 if comm is None else int(comm.size),
    }
    progress = progress and (comm is None or comm.rank == 0)
    tasks = [
        (name, norm, seed)
        for norm in cfg.norms
        for name in cfg.optimizers
        for seed in range(cfg.seed, cfg.seed + cfg.seeds)
    ]
    results["jobs"] = jobs
    t0 = time.perf_counter()
    records: list[dict] = [{} for _ in tasks]  # (the tasks' order)
    if jobs > 1:
        from concurrent.futures.process import BrokenProcessPool

        from .pool import run_pool

        def started() -> None:  # the runs that have a record so far, in the study's order
            results["runs"] = _started(records)
            if on_run_done is not None:
                on_run_done(results)

        try:
            results["interrupted"] = run_pool(tasks, records, train, val, cfg, jobs, progress, started)
        except BrokenProcessPool as e:
            # A worker died (the kernel's OOM killer, kill -9): the pool failed every run it had. The
            # runs that finished are kept and reported (they raised out of here, and the study
            # ended with no report); the others are named (``missing``).
            results["interrupted"] = True
            results["failure"] = f"a worker process died ({e})"
    else:
        cache: dict = {}
        try:
            with limit_threads(cfg.threads):
                for rec, (name, norm, seed) in zip(records, tasks):
                    train_run(name, norm, train, val, cfg, rec, progress=progress, cache=cache, seed=seed, comm=comm)
                    results["runs"] = _started(records)
                    if on_run_done is not None:
                        on_run_done(results)
        except KeyboardInterrupt:
            results["interrupted"] = True
            for r in records:
                if r.get("status") == "running":
                    r["status"] = "interrupted"
    results["runs"] = _started(records)
    results["missing"] = [_task(t) for t, r in zip(tasks, records) if "optimizer" not in r]
    results["elapsed_s"] = time.perf_counter() - t0
    return results


def _started(records: list) -> list:
    """The runs that have a record (train_run names its run first thing; one stopped before it
    left ``{}`` among the runs, which named no optimizer), in the study's order."""
    return [r for r in records if "optimizer" in r]


def _task(task: tuple) -> dict:
    """A run of the study that has no record (interrupted, or its worker died, before it began)."""
    name, norm, seed = task
    return {"optimizer": name, "norm": norm, "seed": seed}
