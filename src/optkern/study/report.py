"""The study's outputs: results.json (everything) and report.md (what was run,
what it measured, and what those numbers say; see summary.py)."""

from __future__ import annotations

import json
import math
import os

from .._atomic import replace_atomically
from .._words import counted_list, plural
from . import divergence, lowprec
from . import summary as S
from .batching import batches, warmup_steps


def _scheduled(names) -> bool:
    """Whether any of the study's optimizers ``names`` follows the warm-up + cosine schedule."""
    from .methods import OPTIMIZERS

    return any(n not in OPTIMIZERS or OPTIMIZERS[n].schedule for n in names)


def _schedule(cfg: dict, results: dict | None = None) -> str:
    """The learning-rate schedule, said of the runs that follow it: L-BFGS and Newton-CG take
    none (a report of those alone told of a warm-up and cosine decay no run had), nor does a run
    of one step (``batching.warmup_steps``: it told of a warm-up and a decay too)."""
    from .methods import OPTIMIZERS

    names = list(cfg.get("optimizers") or [])
    free = [n for n in names if n in OPTIMIZERS and not OPTIMIZERS[n].schedule]
    if names and len(free) == len(names):
        verb = "sets its" if len(free) == 1 else "set their"
        return f"no learning-rate schedule ({' and '.join(free)} {verb} own steps)"
    frac = cfg["warmup_fraction"]
    share = f"{frac:.0%} of the steps"
    total = _scheduled_steps(cfg, results or {}, [n for n in names if n not in free])
    if total is not None:
        warm = warmup_steps(frac, total)
        if warm is None:
            return "a constant learning rate (one step per run: no warm-up or decay)"
        if warm != int(frac * total):  # (at least one step, short of the total)
            share = f"{warm} of the {total} steps"
    said = f"linear warm-up ({share}) to each optimizer's learning rate, then cosine decay to 0"
    return said + (f" ({', '.join(free)}: no schedule)" if free else "")


def _scheduled_steps(cfg: dict, results: dict, names: list) -> int | None:
    """The steps of each run of the scheduled optimizers ``names`` (one batch size: the mini-batch
    ones'), or None where results.json does not say (or they differ)."""
    sizes = {(results.get("optimizers") or {}).get(n, {}).get("batch_size") for n in names}
    n = results.get("num_train")
    if len(sizes) != 1 or None in sizes or not n:
        return None
    return len(batches(int(n), int(sizes.pop()))) * int(cfg["epochs"])


def _fmt(v, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return S.fixed(v, spec)


def _cell(st: S.Stat | None, spec: str) -> str:
    """'mean' for one seed, 'mean ± sd' for several."""
    if st is None:
        return "—"
    sd_spec = spec if spec.endswith("f") else ".2g"  # 116 ± 0.073, not 116 ± 0.0725
    return _fmt(st.mean, spec) + (f" ± {_fmt(st.sd, sd_spec)}" if st.n > 1 else "")


def _finite(obj):
    """``obj`` with NaN / Inf floats (a diverged run) replaced by None: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(results: dict, out_dir: str) -> str:
    """Write ``results`` to ``out_dir/results.json`` atomically (strict JSON, compact)."""
    path = os.path.join(out_dir, "results.json")
    # a reader never sees half a file; a Ctrl-C or SIGTERM while writing leaves no results.json.tmp
    with replace_atomically(path) as f:
        json.dump(_finite(results), f, separators=(",", ":"), allow_nan=False, default=str)
    return path


NO_MATPLOTLIB = 'matplotlib is not installed: `pip install "optkern[study]"`'


def write_markdown(
    results: dict, out_dir: str, figures: list, skipped: str = NO_MATPLOTLIB, captions: dict | None = None
) -> str:
    """Write ``out_dir/report.md``: summary (computed from the numbers), the
    comparison with the literature (marked), setup, hyper-parameters, the
    results table and the figures with their captions (or why there are
    none: ``skipped``); returns its path."""
    lines = ["# optkern study", ""]
    if results.get("failure"):
        lines += [f"**Stopped**: {results['failure']} — the tables hold the runs that finished before it.", ""]
    elif results.get("interrupted"):
        lines += ["**Interrupted** — the tables hold the runs measured before the interrupt.", ""]
    if results.get("missing"):
        lines += [f"Not measured (no record): {', '.join(map(run_label, results['missing']))}.", ""]
    found = S.summary(results)
    if found:
        lines += ["## Summary", "", " ".join(found), ""]
    lines += ["## Comparison with Ghorbani et al. 2019", "", *_paragraphs(S.ghorbani_comparison(results))]
    lines += _setup(results) + _hyperparameters(results) + _table(results) + lowprec.report_section(results)
    if figures:
        lines += [
            "## Figures",
            "",
            "Colours: optimizers; solid lines: no normalization, dashed: batch norm, dotted: layer norm.",
            "",
        ]
        for p in figures:
            name = os.path.basename(p)
            lines += [f"![{name}]({name})", ""]
            if captions and captions.get(name):
                lines += [f"*{captions[name]}*", ""]
    else:
        lines += [f"Figures were skipped ({skipped}).", ""]
    path = os.path.join(out_dir, "report.md")
    with replace_atomically(path) as f:  # (as results.json: a Ctrl-C or full disk leaves no half report)
        f.write("\n".join(lines))
    return path


def run_label(run: dict) -> str:
    """``adam+batch seed 1``: a run as the progress lines name it."""
    norm = run.get("norm")
    return f"{run.get('optimizer')}{'+' + str(norm) if norm not in (None, 'none') else ''} seed {run.get('seed')}"


def _paragraphs(texts) -> list:
    return [x for t in texts for x in (t, "")]


def _batch(asked: int, num_train) -> str:
    """The mini-batch size the runs used: at most the training set (as the Hessian's samples)."""
    if num_train is None or asked <= num_train:
        return str(asked)
    return f"{num_train} (asked for {asked}; the training set has {num_train})"


def _batches(results: dict) -> str:
    """The batch sizes the runs used: the mini-batch size, and that of each optimizer that takes
    other batches (L-BFGS the whole training set, Newton-CG its large batches). A study of
    L-BFGS alone said "batch 64", which no run used."""
    from .methods import OPTIMIZERS

    cfg, table, n = results["config"], results.get("optimizers") or {}, results.get("num_train")
    other = {k: t.get("batch_size") for k, t in table.items() if k in OPTIMIZERS and OPTIMIZERS[k].batch != "mini"}

    def whole(k) -> str:
        return ", the whole training set" if OPTIMIZERS[k].batch == "full" else ""

    if table and len(other) == len(table):
        return ", ".join(f"{b} for {k}" + (f" ({whole(k)[2:]})" if whole(k) else "") for k, b in other.items())
    said = "; ".join(f"{k}: {b}{whole(k)}" for k, b in other.items())
    return _batch(cfg["batch_size"], n) + (f" ({said})" if said else "")


def _setup(results: dict) -> list:
    cfg = results["config"]
    info = results["info"]
    seeds = cfg.get("seeds", 1)
    notes = results.get("data_notes") or []
    used = results.get("curvature_samples", cfg["curvature_batch"])
    asked = (
        ""
        if used == cfg["curvature_batch"]
        else f" (asked for {cfg['curvature_batch']}; the training set has {results['num_train']})"
    )
    return [
        "## Setup",
        "",
        f"Data: {results['dataset']}, {results['num_train']} training / "
        f"{plural(results['num_val'], 'validation sample')}"
        + (
            f", {plural(results['num_features'], 'feature')}, {plural(results['num_classes'], 'class', 'classes')}"
            if "num_features" in results
            else ""
        )
        + ". "
        + (f"Preprocessing: {'; '.join(notes)}." if notes else ""),
        "",
        f"Model: MLP, {cfg['activation']}, hidden layers {list(cfg['hidden'])}; {plural(cfg['epochs'], 'epoch')}, "
        "batch "
        f"{_batches(results)}, {_schedule(cfg, results)}. "
        + (
            f"Each configuration runs with seeds {cfg['seed']}..{cfg['seed'] + seeds - 1} (initial weights, batch "
            f"order, Hessian probes); tables show mean ± standard deviation over the seeds. "
            if seeds > 1
            else f"Seed {cfg['seed']}: every run starts from the same weights. "
        )
        + f"Device: {cfg['device']}, {plural(cfg.get('threads', '?'), 'thread')} per run, SIMD {info.get('simd')}."
        + _ranks(results)
        + (
            f" {results['jobs']} runs trained at a time (worker processes; step times include their "
            f"contention for memory bandwidth)."
            if results.get("jobs", 1) > 1
            else ""
        ),
        "",
        f"Curvature: the exact Hessian of the training loss (mean cross-entropy, no penalty terms; R-operator "
        f"products, batch norm in training mode with its statistics over that whole subset) on the same "
        f"{plural(used, 'training sample')} for every run{asked}, at {_epochs(results)}. Top eigenvalues and "
        f"the eigenvectors for the gradient concentration come from one Lanczos run (full reorthogonalization, at "
        f"most {plural(cfg.get('lanczos_steps', '?'), 'step')}, relative residual {cfg.get('lanczos_tol', '?')}); "
        f"trace by Hutch++ ({plural(cfg['trace_matvecs'], 'product')}, with its standard error); gradient "
        "concentration = fraction of "
        f"the squared norm of the same loss's gradient (on those {plural(used, 'sample')}) in the "
        f"top-{cfg['concentration_k']} eigenspace; density and the spectrum's ends "
        f"by stochastic Lanczos quadrature ({plural(cfg['density_probes'], 'probe')} x "
        f"{plural(cfg['density_steps'], 'step')}).",
        "",
    ]


def _ranks(results: dict) -> str:
    ranks = results.get("ranks", 1)
    if ranks <= 1:
        return ""
    return (
        f" Data-parallel over {ranks} MPI ranks: each rank computed the loss and gradient of its share of every "
        "batch and the gradients were summed in rank order (every rank held the same parameters); the Hessian "
        "products likewise"
        + (
            " (with batch norm, every rank measured the whole subset)"
            if "batch" in results["config"].get("norms", ())
            else ""
        )
        + "; timings are rank 0's."
    )


def _hyperparameters(results: dict) -> list:
    table = results.get("optimizers") or {}
    if not table:
        return []
    out = [
        "## Optimizers",
        "",
        "Every hyper-parameter of each run; **bold**: set by the study or by `--lr` "
        + ("(`lr` is the schedule's peak), " if _scheduled(table) else "")
        + "the rest are the class's defaults.",
        "",
        "| name | class | hyper-parameters | batch | notes |",
        "|---|---|---|---:|---|",
    ]
    for name, t in table.items():
        hp = ", ".join(
            (f"**{k}={v!r}**" if k in t.get("set", ()) else f"{k}={v!r}") for k, v in t["hyperparameters"].items()
        )
        batch = t.get("batch_size", results.get("config", {}).get("batch_size", "?"))
        module = "optkern.swalp" if t["class"] == "SWALP" else "optkern.optim"
        out.append(f"| {name} | `{module}.{t['class']}` | {hp} | {batch} | {t.get('about', '')} |")
    return out + [""]


def _table(results: dict) -> list:
    seeds = results.get("config", {}).get("seeds", 1)
    epochs = results.get("config", {}).get("epochs")  # the study's last epoch
    gs = S.groups(results)
    out = [
        "## Results",
        "",
        "Last epoch's loss and accuracy; the Hessian's numbers at the last checkpoint (trace s.e.: Hutch++'s "
        "standard error" + (", mean over seeds" if seeds > 1 else "") + "); time per optimizer step "
        "(forward, backward, update) and seconds of training and of Hessian measurements per run."
        + (f" Whole study: {results['elapsed_s']:.0f} s." if results.get("elapsed_s") is not None else ""),
        "",
        "| optimizer | norm | final train loss | val accuracy | top eigenvalue | trace | trace s.e. "
        "| grad. conc. | step (ms) | train (s) | curvature (s) | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    unconverged = False
    for grp in gs:
        st = grp["stats"]
        rows = grp["rows"]
        at = _at(S.kept(rows), epochs)  # (the rows the means pool: not a diverged or collapsed run's)
        converged = all(r["converged"] for r in S.curvature_rows(S.kept(rows)))  # (the rows its numbers are of)
        # (next to the means that leave those runs out; the final numbers: of the seeds that finished)
        ex = S.excluded_note(grp) + S.trained_to(S.kept(rows))
        # (an interrupted run's last epoch is an earlier one: its loss and accuracy are no final ones)
        last = S.final_epoch(S.kept(rows))
        ex += f" (epoch {last})" if epochs is not None and last is not None and last != epochs else ""
        unconverged |= not converged
        star = "" if converged else "*"
        out.append(
            f"| {grp['optimizer']} | {grp['norm']} | {_cell(st['final_train_loss'], '.4f')}{ex} | "
            f"{_cell(st['final_val_acc'], '.3f')}{ex} | {_cell(st['top_eigenvalue'], '.3g')}{star}{at} | "
            f"{_cell(st['trace'], '.3g')}{at} | {_fmt(st['trace_stderr'].mean if st['trace_stderr'] else None, '.2g')} "
            f"| {_cell(st['grad_concentration'], '.2f')} | {_cell(st['step_ms'], '.2f')} | "
            f"{_cell(st['train_time_s'], '.2f')} | {_cell(st['curvature_time_s'], '.1f')} | {_status(rows)} |"
        )
    if unconverged:
        out += [
            "",
            "\\* Lanczos stopped at its step cap before the top eigenpairs reached the residual tolerance: "
            "a rough value (see `lanczos_converged` in results.json).",
        ]
    if any(S.failed(r) == "collapsed" for grp in gs for r in grp["rows"]):
        out += [
            "",
            "Collapsed to chance: the run finished with a training loss at or above ln(classes) and a validation "
            f"accuracy within {divergence.CHANCE_SE:g} standard errors of 1 / classes or of one class's share of "
            "the validation samples -- a dead network, whose loss is the uniform guess's and which predicts one "
            "class for every sample.",
        ]
    if any(r.get("stuck") for grp in gs for r in grp["rows"]):
        out += [
            "",
            "No step accepted (stuck): the run finished with its initial parameters (its optimizer rejected every "
            "step, as Newton-CG's line search does a step too long): its loss and accuracy are the initial "
            "weights'.",
        ]
    if any(S.excluded_note(grp) for grp in gs):
        out += [
            "",
            "Runs that collapsed to chance, never accepted a step or diverged are left out of the means (all but "
            "the step time; the cells say how many): their numbers are a dead network's, the initial weights' or "
            "from before the divergence.",
        ]
    return out + [""]


def _status(rows: list) -> str:
    parts = []
    for r in rows:
        s = f"diverged at epoch {r['diverged_epoch']}" if r["status"] == "diverged" else r["status"]
        if r.get("collapsed"):  # (its loss and accuracy are the uniform guess's: not a result)
            s = "collapsed to chance"
        if r.get("stuck"):  # (its numbers are its initial weights': divergence.stuck)
            s = "no step accepted"
        if r["curvature_failed"]:
            s += "; no Hessian at epoch " + ", ".join(map(str, r["curvature_failed"]))
        parts.append(s if len(rows) == 1 else f"seed {r['seed']}: {s}")
    if len(rows) > 1 and all(r["status"] == "done" and S.failed(r) is None and not r["curvature_failed"] for r in rows):
        return f"done ({len(rows)} seeds)"
    return "; ".join(parts)


def _at(rows: list, epochs: int | None = None) -> str:
    """ " (epoch N)" when the last Hessian measurement is older than the last epoch (the run's or
    the study's, ``epochs``)."""
    return S.measured_at(rows, epochs)


def _epochs(results: dict) -> str:
    epochs = results.get("checkpoint_epochs")
    return counted_list("epoch", epochs) if epochs else "epochs —"
