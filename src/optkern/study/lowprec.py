"""The study's low-precision runs (``optkern study --low-precision``, issue 16): what differs
from a float32 run, kept out of the training loop.

- ``adam-bf16``: the model computes with bfloat16 weights. The optimizer holds them (and a
  float32 master copy, ``master_weights=True``) and takes each gradient rounded to bfloat16;
  after every step the float32 array the model reads is refreshed from the bfloat16 weights.
- ``adam-fp16``: the same with float16 weights and gradients and dynamic loss scaling
  (``optkern.amp.GradScaler``): the gradients are stored in float16 times the loss scale, the
  optimizer's step unscales them in float32, and an overflowed step is skipped.
- ``adam-8bit``: nothing here (``state_dtype="int8"`` is a constructor argument).
- ``swalp``: ``optkern.swalp.SWALP`` averages once per epoch over the last quarter of the
  epochs; at the end the averaged weights are measured like a checkpoint (loss, accuracy, top
  Hessian eigenvalues), beside the last iterate's.
"""

from __future__ import annotations

import math

import numpy as np

from .. import lowp
from .._words import plural
from ..amp import GradScaler
from .methods import OPTIMIZERS
from .summary import curvature_rows, epoch_rows, failed, fixed, measured_at, run_row


class HalfWeights:
    """Half-precision weights that the optimizer updates and the model reads as float32 ``params``:
    bfloat16, or float16 with dynamic loss scaling (``optkern.amp.GradScaler``, torch's defaults).
    The model's float32 gradients are stored in the half format -- for float16 times the loss
    scale, as the backward pass of a scaled loss would store them (the backward pass is linear in
    the loss) -- and the scaler skips a step whose gradients overflowed, then backs the scale off."""

    def __init__(self, params: np.ndarray, fmt: str):
        if fmt == "bfloat16" and lowp.bfloat16_dtype() is None:
            raise ValueError('--low-precision: the bfloat16 run needs ml_dtypes (pip install "optkern[study]")')
        self.params, self.fmt = params, fmt
        self.half = lowp.to_half(params, fmt)  # round to nearest even
        self.scaler = GradScaler() if fmt == "float16" else None
        self.skipped = 0  # steps the scaler skipped (float16 gradients that overflowed)
        self.sync()

    def sync(self) -> None:
        """The model's float32 weights := the half weights (exactly)."""
        self.params[...] = lowp.from_half(self.half)

    def grads(self, grads: list) -> list:
        """The gradients as the half-precision backward pass stores them (float16: scaled)."""
        if self.scaler is None:
            return [lowp.to_half(g, self.fmt) for g in grads]
        scale = np.float32(self.scaler.get_scale())
        with np.errstate(over="ignore"):
            return [lowp.to_half(g * scale, self.fmt) for g in grads]

    def step(self, opt, grads: list) -> None:
        """One optimizer step on the half gradients (through the scaler for float16), then the
        model's weights refreshed."""
        if self.scaler is None:
            opt.step(self.grads(grads))
        else:
            self.scaler.step(opt, self.grads(grads))
            # the step's own flag: the scale going down missed the skips at the backoff's floor
            self.skipped += int(self.scaler.found_inf(opt))
            self.scaler.update()
        self.sync()


def extra_hyperparameters(name: str, epochs: int, steps_per_epoch: int, seed: int) -> dict:
    """Per-run settings of a method that depend on the run's length: SWALP's averaging window
    (the last quarter of the epochs, once per epoch, as the paper averages) and its seed."""
    if OPTIMIZERS[name].optimizer != "SWALP":
        return {}
    first = max(1, math.ceil(0.75 * epochs))
    return {"swa_start": first * steps_per_epoch, "cycle": steps_per_epoch, "seed": seed}


def table_hyperparameters(name: str, cfg, steps_per_epoch: int) -> dict:
    """The hyper-parameters set on every run of ``name`` (``cfg.hyperparameters`` and
    ``extra_hyperparameters``), for the report's optimizer table, which otherwise gave SWALP's
    class defaults (swa_start=0, cycle=1, seed=0) for what the runs were built with. SWALP's seed
    is each run's: with several seeds, their range."""
    extra = extra_hyperparameters(name, cfg.epochs, steps_per_epoch, cfg.seed)
    if "seed" in extra and cfg.seeds > 1:
        extra["seed"] = f"{cfg.seed}..{cfg.seed + cfg.seeds - 1} (the run's)"
    return {**cfg.hyperparameters(name), **extra}


def swa_measurement(opt, evaluate, curvature, train_loss_of) -> dict | None:
    """The SWA average's loss, accuracy and top eigenvalues (``evaluate(p)`` -> (val loss, val
    acc), ``curvature(p)`` -> a checkpoint dict or None, ``train_loss_of(p)``), or None when
    nothing was averaged."""
    if not hasattr(opt, "swa") or opt.swa.n_averaged == 0:
        return None
    (avg,) = opt.averages
    avg = np.ascontiguousarray(avg, dtype=np.float32)
    vl, va = evaluate(avg)
    c = curvature(avg)
    return {
        "averaged_iterates": int(opt.swa.n_averaged),
        "train_loss": float(train_loss_of(avg)),
        "val_loss": float(vl),
        "val_acc": float(va),
        "top_eigenvalues": None if c is None else c["top_eigenvalues"],
        "trace": None if c is None else c["trace"],
    }


def state_bytes(opt) -> int:
    """Bytes the optimizer holds besides the weights the model reads: its state arrays (and a
    master copy), or SWALP's momentum buffers and SWA average."""
    if hasattr(opt, "swa"):
        return int(sum(a.nbytes for a in list(opt.buffers or []) + list(opt.averages)))
    return _nbytes(getattr(opt, "state", {}))


def _nbytes(obj) -> int:
    """The bytes of every array in a state (per-param dicts, L-BFGS's history lists, ...)."""
    if hasattr(obj, "nbytes") and hasattr(obj, "dtype"):
        return int(obj.nbytes)
    if hasattr(obj, "values"):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def _mean(values) -> float | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return sum(v) / len(v) if v else None


def _f(v, spec: str) -> str:
    return "—" if v is None else fixed(v, spec)


def _live(rs: list) -> list:
    """The ``run_row`` of each run in ``rs`` but those that collapsed to chance: a dead network's
    loss, accuracy and Hessian, which the summary says every mean leaves out (as the results table
    does; a diverged run's row stays, its top eigenvalue its last one, marked with its epoch)."""
    return [row for row in map(run_row, rs) if not (row["collapsed"] or row["stuck"])]


def _final(rs: list, key: str) -> float | None:
    """Mean over ``rs`` of ``run_row``'s ``key`` ("final_train_loss", "final_val_acc"): None for a
    diverged run, whose history ends at the epoch before it diverged (epoch 0 when it diverged in
    epoch 1) and was reported as its final loss and accuracy; of the runs that reached the latest
    epoch (``epoch_rows``: an interrupted seed's last epoch is an earlier one), not collapsed to
    chance (``_live``)."""
    return _mean(row[key] for row in epoch_rows(_live(rs)))


def _top(rs: list) -> float | None:
    """Mean top eigenvalue of the runs' last Hessian measurements of one epoch (``curvature_rows``)."""
    return _mean(row["top_eigenvalue"] for row in curvature_rows(_live(rs)))


def _diverged(rs: list) -> str:
    """' (diverged at epoch N)', ' (collapsed to chance)', ' (k of n seeds diverged; j of n seeds
    collapsed to chance)' or '': the runs the row's means leave out (``failed``)."""
    what = [failed(run_row(r)) for r in rs]
    if len(rs) == 1 and what[0] is not None:
        return (
            f" (diverged at epoch {rs[0].get('diverged_epoch')})"
            if what[0] == "diverged"
            else " (no step accepted)"
            if what[0] == "stuck"
            else " (collapsed to chance)"
        )
    parts = [
        f"{what.count(w)} of {plural(len(rs), 'seed')} {said}"
        for w, said in (("diverged", "diverged"), ("stuck", "accepted no step"), ("collapsed", "collapsed to chance"))
        if what.count(w)
    ]
    return f" ({'; '.join(parts)})" if parts else ""


def report_section(results: dict) -> list:
    """report.md's "Low precision" section: each low-precision run beside its float32 baseline
    (means over seeds), SWALP's SWA average beside its last iterate, and what the numbers say."""
    from .methods import LOW_PRECISION

    runs = [r for r in results.get("runs", []) if r.get("status") in ("done", "diverged")]
    if not any(r.get("optimizer") in LOW_PRECISION for r in runs):
        return []
    out = [
        "## Low precision",
        "",
        "Each low-precision run beside the float32 run it replaces (means over seeds): `adam-bf16` computes "
        "with bfloat16 weights and gradients (float32 master copy in the optimizer), `adam-fp16` the same in "
        "float16 with dynamic loss scaling (`optkern.amp.GradScaler`), `adam-8bit` keeps "
        "Adam's m and v in 8 bits, `swalp` trains with 8-bit weights, gradients and momentum (values on "
        "the 8-bit grid, held in float32 arrays as the paper's code does) and averages its iterates in "
        "float32 (constant learning rate, where `momentum` follows the warm-up + cosine schedule). Optimizer "
        "memory: bytes per parameter the optimizer holds besides the model's weights. A run's final train "
        "loss is the mean over its last epoch's batches; the SWA average's is its loss over the whole "
        "training set (the text compares it with the last iterate's loss over the whole training set). A run "
        "that diverged has no final loss or accuracy (—; its top eigenvalue is its last one, marked with its "
        "epoch), and is left out of the comparisons; so is one that collapsed to chance (its row says so).",
        "",
        "| run | norm | final train loss | val accuracy | top eigenvalue | optimizer bytes/param |",
        "|---|---|---:|---:|---:|---:|",
    ]
    said = []
    for norm in dict.fromkeys(r["norm"] for r in runs):
        by: dict = {}
        for r in runs:
            if r["norm"] == norm:
                by.setdefault(r["optimizer"], []).append(r)
        where = "without normalization" if norm == "none" else f"with {norm} norm"
        shown = [n for base in dict.fromkeys(LOW_PRECISION.values()) for n in (base, *_lows(base)) if n in by]
        for name in shown:
            rs = by[name]
            out.append(
                f"| {name}{_diverged(rs)} | {norm} | {_f(_final(rs, 'final_train_loss'), '.4f')} | "
                f"{_f(_final(rs, 'final_val_acc'), '.3f')} | {_f(_top(rs), '.3g')}"
                f"{measured_at(_live(rs))} | "
                f"{_f(_mean(r.get('state_bytes_per_param') for r in rs), '.2f')} |"
            )
            swa = [r["swa"] for r in rs if r.get("swa")]
            if swa:
                top = _mean(s["top_eigenvalues"][0] if s.get("top_eigenvalues") else None for s in swa)
                k = swa[0]["averaged_iterates"]
                out.append(
                    f"| {name} (SWA average of {k} iterate{'' if k == 1 else 's'}) | {norm} | "
                    f"{_f(_mean(s['train_loss'] for s in swa), '.4f')} | "
                    f"{_f(_mean(s['val_acc'] for s in swa), '.3f')} | {_f(top, '.3g')} | |"
                )
                said += _swa_sentences(rs, name, where, results.get("config", {}).get("lanczos_tol", 0.0))
            scaled = [r for r in rs if r.get("loss_scale") is not None]
            if scaled:
                said.append(
                    f"{name} {where}: {_mean(r['skipped_steps'] for r in scaled):.3g} of "
                    f"{_mean(r['steps'] for r in scaled):.0f} steps skipped (float16 gradients that overflowed), "
                    f"final loss scale {_mean(r['loss_scale'] for r in scaled):.4g}."
                )
            if _diverged(rs):  # (a baseline's too: its comparisons below leave it out)
                said.append(f"{name} {where}: {_diverged(rs)[2:-1]}.")
            base = LOW_PRECISION.get(name)
            # (the runs that finished: a diverged run has no final accuracy)
            acc_low = _final(rs, "final_val_acc")
            acc_base = _final(by.get(base, []), "final_val_acc") if base else None
            if acc_low is not None and acc_base is not None:
                said.append(
                    f"{name} {where}: validation accuracy {acc_low:.3f} against {acc_base:.3f} for {base} "
                    f"({100 * (acc_low - acc_base):+.1f} points)."
                )
            elif base and base not in by:  # (--optimizers without it: the comparison promised is not there)
                said.append(f"{name} {where}: no float32 {base} run to compare with (add {base} to --optimizers).")
    return out + ["", " ".join(said), ""] if said else out + [""]


def _swa_sentences(rs: list, name: str, where: str, tol: float) -> list:
    """The SWA average against the last iterate of the same runs, each measured the same way: top
    eigenvalue at the last epoch (runs with both), loss over the whole training set. ``tol``: the
    eigensolver's relative tolerance, within which neither is called flatter."""
    pairs = []
    for r in rs:
        swa = r.get("swa") or {}
        end = next((c for c in r.get("curvature") or [] if c["epoch"] == r["history"]["epoch"][-1]), None)
        if swa.get("top_eigenvalues") and end is not None:
            pairs.append((swa["top_eigenvalues"][0], end["top_eigenvalues"][0]))
    out = []
    if pairs:
        top, last = _mean(p[0] for p in pairs), _mean(p[1] for p in pairs)
        if top is not None and last is not None:
            runs = f"; {plural(len(pairs), 'run')}" if len(pairs) != len(rs) else ""
            if abs(top - last) <= tol * max(abs(top), abs(last)):  # (each known to about tol: no order)
                word, runs = "as sharp as", f"{runs}; within the eigensolver's relative tolerance {tol:g}"
            else:
                word = "flatter than" if top < last else "sharper than"
            out.append(
                f"{where.capitalize()}, the SWA average of {name}'s iterates is {word} its last iterate "
                f"(top eigenvalue {top:.3g} vs {last:.3g}{runs})."
            )
    losses = [
        (s["train_loss"], s["last_train_loss"]) for s in (r.get("swa") or {} for r in rs) if "last_train_loss" in s
    ]
    avg, last = _mean(p[0] for p in losses), _mean(p[1] for p in losses)
    if avg is not None and last is not None:
        out.append(f"Its loss over the whole training set: {avg:.4f} at the average, {last:.4f} at the last iterate.")
    return out


def _lows(base: str) -> list:
    from .methods import LOW_PRECISION

    return [low for low, b in LOW_PRECISION.items() if b == base]
