"""The study's figures (matplotlib, optional), one panel per normalization so
curves do not pile up: loss, accuracy (zoomed to the end's differences, plus
the final values), top eigenvalue and trace (with Hutch++'s standard error),
the spectral density as small multiples (optimizer x normalization, one
colour per checkpoint), and time per step. With several seeds, lines are
means over seeds and bands their range.

Drawing cost matters (a 16-run study has ~100 curves): fixed margins instead
of ``tight_layout``, legends at fixed places instead of ``loc="best"``.
"""

from __future__ import annotations

import math
import os

from .._atomic import replace_atomically
from .._words import plural
from . import summary as S

DPI = 100
STYLE = {"none": "-", "batch": "--", "layer": ":"}


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _groups(results: dict) -> list:
    """(optimizer, norm, [runs with at least one epoch]) in run order."""
    out: dict = {}
    for r in results["runs"]:
        if r.get("history", {}).get("epoch"):
            out.setdefault((r["optimizer"], r["norm"]), []).append(r)
    return [(o, n, rs) for (o, n), rs in out.items()]


def _over_seeds(series: list) -> tuple:
    """Mean, min and max over seeds of equally indexed lists (cut to the shortest: a diverged run ends early)."""
    m = min(len(s) for s in series)
    cols = [[s[i] for s in series] for i in range(m)]
    return ([sum(c) / len(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols])


def accuracy_floor(results: dict) -> float | None:
    """Lower end of the accuracy axis: just below the lowest accuracy any run has
    in the last two thirds of training, so 0.96 vs 0.98 is visible."""
    vals = []
    for r in results["runs"]:
        h = r.get("history", {})
        vals += [
            a
            for e, a in zip(h.get("epoch", []), h.get("val_acc", []))
            if e >= results["config"]["epochs"] / 3 and a is not None and math.isfinite(a)
        ]
    if not vals:
        return None
    lo = min(vals)
    return max(0.0, math.floor((lo - 0.1 * (1 - lo) - 0.002) * 100) / 100)


def _readable_log(ax, axis: str = "y") -> None:
    """Log axis with plain-number ticks (0.2, 0.5, 1, 2, 5) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    a = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    decades = math.log10(max(hi, 1e-300) / max(lo, 1e-300))
    subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0) if decades <= 1.2 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    a.set_major_locator(LogLocator(base=10, subs=subs))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())


def make_plots(results: dict, out_dir: str) -> list:
    """Write loss.png, accuracy.png, top_eigenvalue.png, spectral_density.png
    and training_time.png into ``out_dir``; returns their paths ([] without
    matplotlib or without a finished epoch)."""
    if not available():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(results)
    if not groups:
        return []
    names = list(dict.fromkeys(o for o, _, _ in groups))
    # the default cycle's 10 colours while they suffice (every optimizer keeps its colour), else tab20's
    colors = {name: f"C{i}" if len(names) <= 10 else plt.get_cmap("tab20")(i % 20) for i, name in enumerate(names)}
    norms = list(dict.fromkeys(n for _, n, _ in groups))
    paths = []

    def save(fig, name):
        p = os.path.join(out_dir, name)
        try:
            # whole or not at all, as results.json and report.md (a full disk left a truncated PNG)
            with replace_atomically(p, binary=True) as f:
                fig.savefig(f, dpi=DPI, format="png")
        finally:
            plt.close(fig)
        paths.append(p)

    save(_curves(plt, groups, norms, colors, "train_loss", "training loss", log=True)[0], "loss.png")
    save(_accuracy(plt, results, groups, norms, colors), "accuracy.png")
    if any(r.get("curvature") for _, _, rs in groups for r in rs):
        save(_sharpness(plt, groups, norms, colors), "top_eigenvalue.png")
        save(_density(plt, results, groups, norms), "spectral_density.png")
    if any(S.run_row(r)["step_ms"] for _, _, rs in groups for r in rs):
        save(_step_time(plt, results, norms, colors), "training_time.png")
    return paths


LEGEND_IN = 2.0  # inches kept free on the right for the legend


def _panels(plt, norms, rows=1, extra=0, height=3.4):
    """One column per normalization (+ ``extra`` columns), a legend column on the right."""
    nc = len(norms) + extra
    w = 3.4 * nc + 0.8 + LEGEND_IN
    fig, axes = plt.subplots(rows, nc, figsize=(w, height * rows + 0.3), squeeze=False)
    fig.subplots_adjust(
        left=0.8 / w,
        right=1 - (LEGEND_IN + 0.1) / w,
        bottom=0.13 / rows + 0.02,
        top=0.92 if rows == 1 else 0.95,
        wspace=0.3,
        hspace=0.3,
    )
    return fig, axes


def _legend(fig, handles_labels, **kw):
    h, lab = handles_labels
    w = fig.get_size_inches()[0]
    fig.legend(h, lab, fontsize=8, loc="upper left", bbox_to_anchor=(1 - LEGEND_IN / w, 0.95), frameon=False, **kw)


def _line(ax, xs, series, color, style, label, marker=""):
    mean, lo, hi = _over_seeds(series)
    xs = xs[: len(mean)]
    ax.plot(xs, mean, style + marker, color=color, lw=1.4, ms=3.5, label=label)
    if len(series) > 1:
        ax.fill_between(xs, lo, hi, color=color, alpha=0.15, lw=0)


def _curves(plt, groups, norms, colors, key, ylabel, log=False, floor=None, extra=0):
    """One panel per normalization of ``history[key]`` over epochs (+ ``extra`` empty panels on the right)."""
    fig, axes = _panels(plt, norms, extra=extra)
    row = axes[0][: len(norms)]
    for j, norm in enumerate(norms):
        ax = row[j]
        for opt, n, rs in groups:
            if n == norm:
                _line(ax, rs[0]["history"]["epoch"], [r["history"][key] for r in rs], colors[opt], STYLE[norm], opt)
        ax.set_title(S.norm_label(norm), fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
        if floor is not None:
            ax.set_ylim(floor, 1.0)
    row[0].set_ylabel(ylabel)
    if log:
        lo = min(a.get_ylim()[0] for a in row)
        hi = max(a.get_ylim()[1] for a in row)
        for a in row:
            a.set_ylim(lo, hi)
            _readable_log(a)
    _legend(fig, row[0].get_legend_handles_labels())
    return fig, axes[0]


def _accuracy(plt, results, groups, norms, colors):
    floor = accuracy_floor(results)
    fig, axes = _curves(plt, groups, norms, colors, "val_acc", "validation accuracy", floor=floor, extra=1)
    # The last epoch's values on their own axis: mean (± s.d. over seeds) per optimizer and normalization.
    ax = axes[-1]
    names = list(dict.fromkeys(o for o, _, _ in groups))
    for opt, norm, rs in groups:
        # (as the table's means: not a diverged or collapsed run's)
        st = S.stat(
            r["history"]["val_acc"][-1]
            for r in rs
            if r.get("status") != "diverged" and not r.get("collapsed") and not r.get("stuck")
        )
        if st is None:
            continue
        y = names.index(opt) + 0.2 * (norms.index(norm) - (len(norms) - 1) / 2)
        ax.errorbar(
            st.mean,
            y,
            xerr=st.sd if st.n > 1 else None,
            fmt="o" if norm == "none" else "s",
            color=colors[opt],
            mfc=colors[opt] if norm == "none" else "white",
            ms=5,
            capsize=2,
        )
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("validation accuracy, last epoch", fontsize=9)
    ax.set_title(
        "final (filled: no norm; open: " + ", ".join(n for n in norms if n != "none") + ")"
        if len(norms) > 1
        else "final",
        fontsize=9,
    )
    ax.grid(alpha=0.3, axis="x")
    ax.tick_params(axis="x", labelsize=8)
    return fig


def _sharpness(plt, groups, norms, colors):
    fig, axes = _panels(plt, norms, rows=2, height=3.0)
    for j, norm in enumerate(norms):
        top, tr = axes[0][j], axes[1][j]
        start = None
        for opt, n, rs in groups:
            rs = [r for r in rs if r.get("curvature")]
            if n != norm or not rs:
                continue
            xs = [c["epoch"] for c in rs[0]["curvature"]]
            _line(
                top,
                xs,
                [[c["top_eigenvalues"][0] for c in r["curvature"]] for r in rs],
                colors[opt],
                STYLE[norm],
                opt,
                marker="o",
            )
            mean, _, _ = _over_seeds([[c["trace"] for c in r["curvature"]] for r in rs])
            err, _, _ = _over_seeds([[c.get("trace_stderr", 0.0) for c in r["curvature"]] for r in rs])
            tr.errorbar(
                xs[: len(mean)], mean, yerr=err, fmt=STYLE[norm] + "o", color=colors[opt], lw=1.2, ms=3, capsize=2
            )
            if xs and xs[0] == 0:
                start = (
                    S.stat(r["curvature"][0]["top_eigenvalues"][0] for r in rs).mean,
                    S.stat(r["curvature"][0]["trace"] for r in rs).mean,
                )
        if start is not None:
            top.plot([0], [start[0]], "*", color="k", ms=11, zorder=5, label="epoch 0: same start for all")
            tr.plot([0], [start[1]], "*", color="k", ms=11, zorder=5)
        top.set_title(S.norm_label(norm), fontsize=9)
        tr.set_xlabel("epoch")
        for a in (top, tr):
            a.grid(alpha=0.3)
        top.set_yscale("log")
        for a in (top, tr):
            _room_for_markers(fig, a)
    for row in axes:  # one scale per row: normalizations compare at a glance
        lo = min(a.get_ylim()[0] for a in row)
        hi = max(a.get_ylim()[1] for a in row)
        for a in row:
            a.set_ylim(lo, hi)
    for a in axes[0]:
        _readable_log(a)
    axes[0][0].set_ylabel("largest eigenvalue")
    axes[1][0].set_ylabel("trace (± s.e.)")
    handles, labels = [], []
    for a in axes[0]:
        h, lab = a.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    _legend(fig, (handles, labels))
    return fig


#: Room (points) between the data's extremes and the axes' edges: the epoch-0 star's radius (ms 11: 5.5 pt)
#: with its edge, and as much again before the frame.
MARKER_ROOM_PT = 12.0


def _room_for_markers(fig, ax, room_pt: float = MARKER_ROOM_PT) -> None:
    """Margins keeping the data's first and last points ``room_pt`` points inside ``ax``'s edges.

    matplotlib's default margin is 5% of the data's span, which on a panel of the two-row
    top-eigenvalue figure is ~0.1 inch: the star (and a circle on the frame's corner) reached the
    frame. ``margins`` is a fraction ``m`` of the data span added at each end, so the data's ends
    sit ``m / (1 + 2 m)`` of the axis inside it (in log scale too: the fraction is of the drawn axis)."""
    pos = ax.get_position()
    for axis, inches in (("x", fig.get_figwidth() * pos.width), ("y", fig.get_figheight() * pos.height)):
        f = min(room_pt / 72 / inches, 0.25)
        ax.margins(**{axis: max(f / (1 - 2 * f), 0.05)})  # (never less than matplotlib's 5%)


def _density(plt, results, groups, norms):
    """Small multiples: rows optimizers, columns normalizations, one colour per checkpoint
    (seed ``config.seed``'s run). Shared axes, so panels compare at a glance."""
    seed = results.get("config", {}).get("seed", 0)
    names = list(dict.fromkeys(o for o, _, _ in groups))
    epochs = sorted({c["epoch"] for _, _, rs in groups for r in rs for c in r.get("curvature", [])})
    # The shared start in grey, then purple (early) to orange (end): every line visible on white.
    cmap = plt.get_cmap("plasma")
    later = [e for e in epochs if e != 0]
    ecol = {e: cmap(0.15 + 0.65 * i / max(len(later) - 1, 1)) for i, e in enumerate(later)}
    ecol[0] = "0.55"
    nr, nc = len(names), len(norms)
    w, h = 3.4 * nc + 0.8 + LEGEND_IN, 1.35 * nr + 1.0
    fig, axes = plt.subplots(nr, nc, figsize=(w, h), squeeze=False, sharex=True, sharey=True)
    fig.subplots_adjust(
        left=0.8 / w, right=1 - (LEGEND_IN + 0.1) / w, bottom=0.6 / h, top=1 - 0.4 / h, wspace=0.06, hspace=0.12
    )
    for opt, norm, rs in groups:
        ax = axes[names.index(opt)][norms.index(norm)]
        r = next((r for r in rs if r.get("seed", seed) == seed), rs[0])
        for c in r.get("curvature", []):
            d = c["density"]
            label = f"epoch {c['epoch']}" + (" (same start for all)" if c["epoch"] == 0 else "")
            ax.plot(d["grid"], [max(v, 1e-12) for v in d["density"]], color=ecol[c["epoch"]], lw=1.0, label=label)
        ax.text(
            0.98,
            0.9,
            f"{opt}, {'no norm' if norm == 'none' else norm + ' norm'}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    for i in range(nr):
        for j in range(nc):
            ax = axes[i][j]
            ax.set_yscale("log")
            ax.set_ylim(1e-5, None)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("density", fontsize=8)
            if i == nr - 1:
                ax.set_xlabel("eigenvalue", fontsize=8)
    for j, norm in enumerate(norms):
        axes[0][j].set_title(S.norm_label(norm), fontsize=9)
    from matplotlib.ticker import LogLocator, NullLocator

    axes[0][0].yaxis.set_major_locator(LogLocator(numticks=4))
    axes[0][0].yaxis.set_minor_locator(NullLocator())
    handles, labels = [], []
    for row in axes:
        for a in row:
            h, lab = a.get_legend_handles_labels()
            if len(h) > len(handles):
                handles, labels = h, lab
    _legend(fig, (handles, labels), title="checkpoint (colour)", title_fontsize=8)
    return fig


def _step_time(plt, results, norms, colors):
    gs = [x for x in S.groups(results) if x["stats"]["step_ms"] is not None]
    names = list(dict.fromkeys(x["optimizer"] for x in gs))
    h = 0.3 * len(names) * len(norms) + 1.0
    fig, ax = plt.subplots(figsize=(6.5, h))
    fig.subplots_adjust(left=0.16, right=0.93, bottom=0.55 / h, top=1 - 0.3 / h)
    hgt = 0.8 / len(norms)
    for x in gs:
        st = x["stats"]["step_ms"]
        y = names.index(x["optimizer"]) + hgt * (norms.index(x["norm"]) - (len(norms) - 1) / 2)
        ax.barh(
            y,
            st.mean,
            height=hgt * 0.9,
            xerr=st.sd if st.n > 1 else None,
            color=colors[x["optimizer"]],
            hatch="" if x["norm"] == "none" else "//",
            edgecolor="white",
            capsize=2,
        )
        ax.text(st.mean + (st.sd if st.n > 1 else 0), y, f"  {st.mean:.2f}", va="center", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    threads = plural(results["config"].get("threads", "?"), "thread")
    ax.set_xlabel(f"ms per step (forward + backward + update), {threads}")
    ax.set_title("training time per step" + _hatched(norms), fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    return fig


def _hatched(norms) -> str:
    """The time plot's note of its hatched bars: every normalization but "none" (not ``norms[1:]``:
    --norms batch,none called the unnormalized bars "none norm", --norms batch,layer left batch out)."""
    said = [n + " norm" for n in norms if n != "none"]
    return "; hatched: " + ", ".join(said) if said else ""
