"""The study's outputs: results.json (everything) and report.md (the table)."""
from __future__ import annotations

import json
import math
import os
import statistics


def _fmt(v, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec)


def summary_rows(results: dict) -> list:
    """One row per run: optimizer, norm, final train loss, val accuracy, time,
    last measured top eigenvalue and trace."""
    rows = []
    for r in results["runs"]:
        h = r.get("history", {})
        c = r.get("curvature", [])
        last = c[-1] if c else {}
        diverged = r.get("status") == "diverged"
        rows.append({
            "optimizer": r.get("optimizer", "?"),
            "norm": r.get("norm", "?"),
            "status": (f"diverged at epoch {r.get('diverged_epoch')}" if diverged else r.get("status", "?")) + (
                "; no Hessian at epoch " + ", ".join(str(f["epoch"]) for f in r["curvature_failed"])
                if r.get("curvature_failed") else ""),
            "last_epoch": r.get("diverged_epoch") if diverged else h["epoch"][-1] if h.get("epoch") else None,
            "final_train_loss": h["train_loss"][-1] if h.get("train_loss") and not diverged else None,
            "final_val_acc": h["val_acc"][-1] if h.get("val_acc") and not diverged else None,
            "time_s": r.get("time_s"),
            "train_time_s": r.get("train_time_s"),
            "curvature_time_s": r.get("curvature_time_s"),
            "top_eigenvalue": last["top_eigenvalues"][0] if last.get("top_eigenvalues") else None,
            "converged": last.get("lanczos_converged", True),
            "trace": last.get("trace"),
            "grad_concentration": last.get("grad_concentration"),
            "curvature_epoch": last.get("epoch"),
        })
    return rows


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
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_finite(results), f, separators=(",", ":"), allow_nan=False)
    os.replace(tmp, path)  # a reader never sees half a file
    return path


NO_MATPLOTLIB = "matplotlib is not installed: `pip install \"optkern[study]\"`"


def write_markdown(results: dict, out_dir: str, figures: list, skipped: str = NO_MATPLOTLIB) -> str:
    """Write ``out_dir/report.md``: setup, what was measured, the summary table,
    a few findings and the figures (or why there are none: ``skipped``);
    returns its path."""
    cfg = results["config"]
    info = results["info"]
    lines = ["# optkern study", ""]
    if results.get("interrupted"):
        lines += ["**Interrupted** — the table holds the runs measured before the interrupt.", ""]
    lines += [
        f"Data: {results['dataset']} ({results['num_train']} train / {results['num_val']} validation samples). "
        f"Model: MLP {cfg['activation']} hidden {list(cfg['hidden'])}, {cfg['epochs']} epochs, batch "
        f"{cfg['batch_size']}, linear warm-up ({cfg['warmup_fraction']:.0%} of the steps) + cosine decay; "
        f"every run starts from the same weights. Device: {cfg['device']}, {cfg.get('threads', '?')} thread(s), "
        f"SIMD {info.get('simd')}, seed {cfg['seed']}.",
        "",
        f"Curvature: the exact Hessian of the training loss (R-operator products, batch norm in training mode) "
        f"on a fixed subset of {cfg['curvature_batch']} training samples, at epochs {_epochs(results)}. "
        f"Top eigenvalues and the eigenvectors for the gradient concentration come from one Lanczos run "
        f"(full reorthogonalization, at most {cfg.get('lanczos_steps', '?')} steps, relative residual "
        f"{cfg.get('lanczos_tol', '?')}); trace by Hutch++ ({cfg['trace_matvecs']} products); gradient "
        f"concentration = fraction of the squared gradient norm in the top-{cfg['concentration_k']} "
        f"eigenspace; density by stochastic Lanczos quadrature ({cfg['density_probes']} probe(s) × "
        f"{cfg['density_steps']} steps). The table shows the last measurement.",
        "",
        "Time: seconds of optimizer steps (train), and of the Hessian measurements (curvature) per run."
        + (f" Whole study: {results['elapsed_s']:.0f} s." if results.get("elapsed_s") is not None else ""),
        "",
        "| optimizer | norm | final train loss | val accuracy | train time (s) | curvature time (s) "
        "| top eigenvalue | trace | grad. conc. | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in summary_rows(results):
        lines.append(
            f"| {row['optimizer']} | {row['norm']} | {_fmt(row['final_train_loss'])} | "
            f"{_fmt(row['final_val_acc'], '.3f')} | {_fmt(row['train_time_s'], '.2f')} | "
            f"{_fmt(row['curvature_time_s'], '.1f')} | "
            f"{_fmt(row['top_eigenvalue'], '.3g')}{'' if row['converged'] else '*'}{_at(row)} | "
            f"{_fmt(row['trace'], '.3g')}{_at(row)} | "
            f"{_fmt(row['grad_concentration'], '.2f')} | {row['status']} |")
    if not all(row["converged"] for row in summary_rows(results)):
        lines += ["", "\\* Lanczos stopped at its step cap before the top eigenpairs reached the residual "
                  "tolerance: a rough value (see `lanczos_converged` in results.json)."]
    lines.append("")
    lines += _findings(results)
    if figures:
        lines += ["## Figures", "",
                  "Solid lines: no normalization; dashed: batch norm; dotted: layer norm. In the spectral density "
                  "(log scale; rows: normalization, columns: checkpoints) the bulk sits near 0 and the isolated "
                  "bumps to its right are the outlier eigenvalues.", ""]
        lines += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in figures] + [""]
    else:
        lines += [f"Figures were skipped ({skipped}).", ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def _at(row: dict) -> str:
    """" (epoch N)" when the last Hessian measurement is older than the last epoch."""
    e = row["curvature_epoch"]
    return "" if e is None or e == row["last_epoch"] else f" (epoch {e})"


def _epochs(results: dict) -> str:
    return ", ".join(str(e) for e in results.get("checkpoint_epochs", [])) or "—"


def _findings(results: dict) -> list:
    """A few sentences read off the table: best run and sharpness per normalization."""
    rows = [r for r in summary_rows(results) if r["final_val_acc"] is not None]
    if not rows:
        return []
    best = max(rows, key=lambda r: r["final_val_acc"])
    where = "without normalization" if best["norm"] == "none" else f"with {best['norm']} norm"
    out = [f"Best validation accuracy: {best['optimizer']} {where}, {best['final_val_acc']:.3f}."]
    for norm in dict.fromkeys(r["norm"] for r in rows):
        tops = sorted(r["top_eigenvalue"] for r in rows if r["norm"] == norm and r["top_eigenvalue"] is not None
                      and r["curvature_epoch"] == r["last_epoch"])
        if tops:
            label = "without normalization" if norm == "none" else f"with {norm} norm"
            out.append(f"Largest Hessian eigenvalue at the end {label}: median {statistics.median(tops):.3g} "
                       f"(range {tops[0]:.3g} to {tops[-1]:.3g}).")
    return [" ".join(out), ""]
