"""What a study's numbers say: per-configuration aggregates over seeds, and the
sentences of the report's summary and figure captions, computed from the
measurements. Nothing here is taken from the literature except the comparison
with Ghorbani et al., which is marked as such and puts this run's numbers
next to their claim. (The aggregates are in aggregates.py, the sharpness numbers in sharpness.py,
re-exported here.)"""

from __future__ import annotations

import math
import statistics

# (the aggregates and the sharpness numbers, re-exported: summary.groups, summary.sharpness ... keep working)
from .._words import counted_list, plural
from .aggregates import CURVATURE_METRICS as CURVATURE_METRICS
from .aggregates import METRICS as METRICS
from .aggregates import Stat as Stat
from .aggregates import curvature_rows as curvature_rows
from .aggregates import epoch_rows as epoch_rows
from .aggregates import excluded_note as excluded_note
from .aggregates import failed as failed
from .aggregates import final_epoch as final_epoch
from .aggregates import groups
from .aggregates import kept as kept
from .aggregates import measured_at as measured_at
from .aggregates import run_row as run_row
from .aggregates import stat as stat
from .aggregates import trained_to as trained_to
from .sharpness import _half, _norms, top_end_median
from .sharpness import sharpness as sharpness

GHORBANI = "Ghorbani, Krishnan & Xiao (ICML 2019)"


def norm_label(norm: str) -> str:
    return "without normalization" if norm == "none" else f"with {norm} norm"


def g(v: float) -> str:
    """A measured value in 3 significant digits."""
    return format(v, ".3g")


def fixed(v: float, spec: str) -> str:
    """``v`` in the fixed-point ``spec`` (".4f"), or in 2 significant digits where that rounds a
    nonzero value to zero: L-BFGS's training loss of 3e-7 read "0.0000", a loss no network has."""
    text = format(v, spec)
    if spec.endswith("f") and v != 0 and not any(ch in "123456789" for ch in text):
        return format(v, ".2g")
    return text


def loss_caption(results: dict) -> str:
    """loss.png's caption: what each epoch's training loss is (epoch 0's has no batches)."""
    seeds = results.get("config", {}).get("seeds", 1)
    return (
        "Training loss (log scale): at epoch 0, before any step, the loss over the whole training set; "
        "after that, the mean over each epoch's batches (a full-batch method's: the loss after its step)."
        + (f" Lines: mean over {seeds} seeds; bands: their range." if seeds > 1 else "")
    )


def _range(d: dict) -> str:
    """'median 3.16 (1.61 for adagrad to 4.01 for sgd)' over a {optimizer: value} dict."""
    lo = min(d, key=lambda k: d[k])
    hi = max(d, key=lambda k: d[k])
    if len(d) == 1:
        return f"{g(d[lo])} ({lo})"
    return f"median {g(statistics.median(d.values()))} ({g(d[lo])} for {lo} to {g(d[hi])} for {hi})"


def _change(a: float, b: float) -> str:
    """How the top eigenvalue went from ``a`` to ``b``: a ratio only between positive values (from a
    start of 0 it divided by zero; from a negative one "grows -0.5-fold" was said of a rise)."""
    if a > 0 and b > 0:
        if b > 1.1 * a:
            return f"grows {b / a:.1f}-fold"
        if b < a / 1.1:
            return f"falls {a / b:.1f}-fold"
        return "stays about the same"
    if a > 0 and b == 0:
        return "falls to 0"
    if a == b:
        return f"stays at {g(a)}"
    return f"{'rises' if b > a else 'falls'} from {g(a)} to {g(b)}"


def _span(lo: float, hi: float) -> str:
    return f"{g(lo)} to {g(hi)}" if math.isfinite(lo) and math.isfinite(hi) else "—"


def _full_note(results: dict, norm: str) -> str:
    """'full-precision ' where ``norm`` has half-precision runs too (their start is rounded)."""
    runs = [r for r in results["runs"] if r.get("norm") == norm]
    return "full-precision " if any(_half(r) for r in runs) and not all(_half(r) for r in runs) else ""


def sharpness_sentences(results: dict) -> list:
    """Per normalization: the top eigenvalue and the spectrum's ends at the start and the end."""
    out = []
    seeds = results.get("config", {}).get("seeds", 1)
    start_over = f"mean over {seeds} seeds; " if seeds > 1 else ""
    for norm in _norms(results):
        s = sharpness(results, norm)
        if s is None:
            continue
        # (the seeds measured at the end: one that diverged before it is not among them)
        short = ", ".join(f"{n} for {o}" for o, n in s["end_seeds"].items() if n < seeds)
        over = f"per optimizer the mean over {seeds} seeds{f' ({short})' if short else ''}; " if seeds > 1 else ""
        med = statistics.median(s["top_end"].values())
        optimizers = f"{s['optimizers']} optimizer{'s' if s['optimizers'] != 1 else ''}"
        out.append(
            f"{norm_label(norm).capitalize()}, the largest Hessian eigenvalue is {g(s['top_start'])} at epoch "
            f"{s['first']} ({start_over}the same weights for every {_full_note(results, norm)}optimizer) and "
            f"{_range(s['top_end'])} at epoch {s['last']} "
            f"({over}{optimizers}): it {_change(s['top_start'], med)}. The spectrum spans "
            f"{_span(s['lo_start'], s['hi_start'])} at epoch {s['first']} and {_span(s['lo_end'], s['hi_end'])} "
            f"at epoch {s['last']} (median ends over optimizers)."
        )
    return out


def accuracy_sentence(results: dict) -> str:
    epochs = results.get("config", {}).get("epochs")
    gs = [x for x in groups(results) if x["stats"]["final_val_acc"] is not None]
    # a configuration interrupted before the last epoch (every seed) has no final accuracy: its last
    # one is an earlier epoch's, maybe the initial weights' (the table says which)
    gs = [x for x in gs if epochs is None or final_epoch(kept(x["rows"])) == epochs]
    if not gs:
        return ""
    lo = min(gs, key=lambda x: x["stats"]["final_val_acc"].mean)
    hi = max(gs, key=lambda x: x["stats"]["final_val_acc"].mean)

    def who(x):
        return f"{x['optimizer']} {norm_label(x['norm'])}"

    text = (
        f"Final validation accuracy is {lo['stats']['final_val_acc'].mean:.3f} ({who(lo)})"
        if len(gs) == 1
        else f"Final validation accuracy ranges from {lo['stats']['final_val_acc'].mean:.3f} ({who(lo)}) to "
        f"{hi['stats']['final_val_acc'].mean:.3f} ({who(hi)})"
    )
    sds = [x["stats"]["final_val_acc"].sd for x in gs if x["stats"]["final_val_acc"].n > 1]
    if sds:
        text += f"; means over seeds, with seed-to-seed standard deviations up to {max(sds):.3f}"
    n_val = results.get("num_val")
    if n_val:
        text += f" (one validation sample is {1 / n_val:.4f} of accuracy)"
    return text + "."


def normalization_sentence(results: dict) -> str:
    """How the top eigenvalue at the end compares with and without normalization, optimizer by optimizer."""
    norms = _norms(results)
    if "none" not in norms or len(norms) < 2:
        return ""
    base = sharpness(results, "none")
    out = []
    for norm in (n for n in norms if n != "none"):  # (not norms[1:]: --norms batch,none lists none last)
        s = sharpness(results, norm)
        if base is None or s is None:
            continue
        both = sorted(set(base["top_end"]) & set(s["top_end"]))
        if not both:
            continue
        smaller = [o for o in both if s["top_end"][o] < base["top_end"][o]]
        ratio = statistics.median(base["top_end"][o] / s["top_end"][o] for o in both)
        out.append(
            f"At epoch {s['last']} the largest eigenvalue {norm_label(norm)} is smaller than without "
            f"normalization for {len(smaller)} of {plural(len(both), 'optimizer')} (median ratio without/with "
            f"{ratio:.2g}); at epoch {s['first']} it is {g(s['top_start'])} {norm_label(norm)} vs "
            f"{g(base['top_start'])} without."
        )
    return " ".join(out)


def failed_sentence(results: dict) -> str:
    """Which runs collapsed to chance or diverged, and that the means leave them out (the table's
    status column named them, but the summary's numbers read as if every run had trained)."""
    said: dict[str, list[str]] = {"collapsed": [], "stuck": [], "diverged": []}
    for grp in groups(results):
        for r in grp["rows"]:
            what = failed(r)
            if what is not None:
                seed = f" seed {r['seed']}" if len(grp["rows"]) > 1 else ""
                at = f" at epoch {r['diverged_epoch']}" if what == "diverged" else ""
                said[what].append(f"{r['optimizer']} {norm_label(r['norm'])}{seed}{at}")
    parts = []
    if said["collapsed"]:
        n = len(said["collapsed"])
        parts.append(f"{n} run{'s' if n > 1 else ''} collapsed to chance ({'; '.join(said['collapsed'])})")
    if said["stuck"]:
        n = len(said["stuck"])
        parts.append(f"{n} run{'s' if n > 1 else ''} never accepted a step ({'; '.join(said['stuck'])})")
    if said["diverged"]:
        n = len(said["diverged"])
        parts.append(f"{n} run{'s' if n > 1 else ''} diverged ({'; '.join(said['diverged'])})")
    if not parts:
        return ""
    return f"{' and '.join(parts).capitalize()}: left out of every mean below and in the results table."


def summary(results: dict) -> list:
    """The report's summary: sentences computed from this run's numbers."""
    texts = (
        failed_sentence(results),
        accuracy_sentence(results),
        *sharpness_sentences(results),
        normalization_sentence(results),
    )
    return [t for t in texts if t]


def ghorbani_comparison(results: dict) -> list:
    """Their claim, then this run's corresponding numbers, clearly separated."""
    base = sharpness(results, "none")
    bn = sharpness(results, "batch")
    claim = (
        f"**Claim from the literature (not measured here).** {GHORBANI} report that in networks without batch "
        f"norm large isolated eigenvalues appear in the Hessian spectrum rapidly, early in training, and the "
        f"gradient concentrates in their eigenspace; with batch norm both effects are almost absent. Their "
        f"networks are ResNets on CIFAR-10 and ImageNet; this study's is a small MLP."
    )
    if base is None or bn is None:
        return [claim, _no_comparison(results)]
    med0, med1 = statistics.median(base["top_end"].values()), statistics.median(bn["top_end"].values())
    when = (
        "grows during training, as they describe"
        if med0 > 1.1 * base["top_start"]
        else "is at its highest at initialization and falls during training: the outliers do not appear during "
        "training here, they shrink"
        if med0 < base["top_start"] / 1.1
        else "stays about where it started"
    )
    where = _where(med0, med1)
    # ("also" only where the end was smaller too: it read "also smaller" after "larger with batch norm")
    init = (
        ("also smaller" if med1 < med0 / 1.1 else "smaller")
        if bn["top_start"] < base["top_start"] / 1.1
        else "larger"
        if bn["top_start"] > 1.1 * base["top_start"]
        else "not smaller"
    )
    conc = (
        "higher without batch norm, as they describe"
        if base["conc_end"] > bn["conc_end"] + 0.05
        else "lower without batch norm, unlike their description"
        if base["conc_end"] < bn["conc_end"] - 0.05
        else "about the same with and without batch norm"
    )
    measured = (
        f"**This run.** Without normalization the largest eigenvalue {when} ({g(base['top_start'])} at "
        f"epoch {base['first']}, median {g(med0)} at epoch {base['last']}). At epoch {bn['last']} it is "
        f"{where} (median {g(med1)} vs {g(med0)}); at initialization it is {init} with batch norm "
        f"({g(bn['top_start'])} vs {g(base['top_start'])}; spectrum {_span(bn['lo_start'], bn['hi_start'])} "
        f"vs {_span(base['lo_start'], base['hi_start'])}). The gradient's share in the top eigenspace at "
        f"the end is {conc} (median {base['conc_end']:.2f} vs {bn['conc_end']:.2f})."
    )
    return [claim, measured]


def _where(med0: float, med1: float) -> str:
    """How the top eigenvalue at the end with batch norm (``med1``) compares with it without (``med0``)."""
    return (
        "smaller with batch norm, as they describe"
        if med1 < med0 / 1.1
        else "larger with batch norm, unlike their description"
        if med1 > 1.1 * med0
        else "about the same with and without batch norm"
    )


def _no_comparison(results: dict) -> str:
    """Why ``ghorbani_comparison`` has no start-to-end numbers, truly: "no pair of runs" was said of
    a study whose table holds runs without and with batch norm, measured once (``--checkpoints 1``)
    or failed (diverged, collapsed, interrupted) before the last checkpoint."""
    norms = _norms(results)
    if "none" not in norms or "batch" not in norms:
        return "**This run** has no pair of runs without and with batch norm to compare."
    epochs = results.get("checkpoint_epochs") or []
    if len(epochs) == 1:
        last = epochs[0]
        text = (
            f"**This run** measured the Hessian at epoch {last} only (one checkpoint), not at initialization: "
            "it cannot say whether outliers appear or shrink during training."
        )
        med0, med1 = (top_end_median(results, n, last) for n in ("none", "batch"))
        if med0 is not None and med1 is not None:
            text += f" At epoch {last} the largest eigenvalue is {_where(med0, med1)} (median {g(med1)} vs {g(med0)})."
        return text
    return (
        "**This run** has no Hessian measurement of runs without and with batch norm at both the first and the "
        "last checkpoint (they diverged, collapsed to chance or were interrupted before it) to compare."
    )


def density_caption(results: dict) -> str:
    cfg = results.get("config", {})
    seeds = cfg.get("seeds", 1)
    head = (
        f"Eigenvalue density of the training loss's Hessian (stochastic Lanczos quadrature, "
        f"{plural(cfg.get('density_probes', '?'), 'probe')} x {plural(cfg.get('density_steps', '?'), 'step')}, "
        f"log scale) at {counted_list('epoch', results.get('checkpoint_epochs', []))}: one panel per optimizer "
        "(rows) and normalization (columns), one colour per epoch"
        + (f"; seed {cfg.get('seed', 0)} of {seeds}" if seeds > 1 else "")
        + "."
    )
    parts = []
    for norm in _norms(results):
        s = sharpness(results, norm)
        if s is not None:
            parts.append(
                f"{norm_label(norm).capitalize()} the spectrum spans {_span(s['lo_start'], s['hi_start'])} "
                f"at epoch {s['first']} and {_span(s['lo_end'], s['hi_end'])} at epoch {s['last']} "
                f"(median over optimizers); its largest eigenvalue goes from {g(s['top_start'])} to "
                f"{_range(s['top_end'])}."
            )
    return " ".join([head, *parts])


def top_eigenvalue_caption(results: dict) -> str:
    seeds = results.get("config", {}).get("seeds", 1)
    band = f" Lines: mean over {seeds} seeds; bands: their range." if seeds > 1 else ""
    # (the black start is drawn where epoch 0 was measured: not with --checkpoints 1)
    measured_start = (results.get("checkpoint_epochs") or [0])[0] == 0
    start = "; epoch 0 is the shared starting point (black)" if measured_start else ""
    return " ".join(
        [
            "Largest Hessian eigenvalue (top row, log scale) and trace (bottom row; error bars: Hutch++ standard "
            f"error) at each checkpoint{start}." + band,
            *sharpness_sentences(results),
        ]
    )


def accuracy_caption(results: dict, lo: float | None = None) -> str:
    seeds = results.get("config", {}).get("seeds", 1)
    zoom = (
        (
            f" The accuracy axis starts at {lo:.2f} so that the differences at the end show; earlier, lower "
            f"values are below it."
        )
        if lo is not None
        else ""
    )
    band = f" Lines: mean over {seeds} seeds; bands: their range; error bars: standard deviation." if seeds > 1 else ""
    return (
        "Validation accuracy per epoch (left panels, one per normalization) and at the last epoch (right)."
        + zoom
        + band
        + " "
        + accuracy_sentence(results)
    )


def time_caption(results: dict) -> str:
    gs = [x for x in groups(results) if x["stats"]["step_ms"] is not None]
    if not gs:
        return ""
    lo = min(gs, key=lambda x: x["stats"]["step_ms"].mean)
    hi = max(gs, key=lambda x: x["stats"]["step_ms"].mean)

    def at(x) -> str:
        return f"{x['stats']['step_ms'].mean:.2f} ms ({x['optimizer']} {norm_label(x['norm'])})"

    return (
        f"Training time per optimizer step (forward, backward and the optimizer's update, mean over the run's "
        f"steps): {at(lo) if len(gs) == 1 else f'from {at(lo)} to {at(hi)}'}, on "  # (one: no range)
        f"{plural(results.get('config', {}).get('threads', '?'), 'thread')}."
    )
