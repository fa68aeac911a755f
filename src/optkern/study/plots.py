"""The study's figures (matplotlib, optional): loss and accuracy curves of every
run, the Hessian spectral density at each checkpoint (log scale, as in
Ghorbani et al.), and the top eigenvalue over training.

Drawing cost matters here (a 16-run study has ~100 curves): figures use fixed
margins instead of ``tight_layout``, legends at a fixed place instead of
``loc="best"`` (which tests every data point) and few log-scale ticks, which
together cut the plotting time about tenfold.
"""
from __future__ import annotations

import os

DPI = 100


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _style(norm: str) -> str:
    return "-" if norm == "none" else "--" if norm == "batch" else ":"


def _label(r: dict) -> str:
    return r["optimizer"] + ("" if r["norm"] == "none" else f" +{r['norm']}")


def make_plots(results: dict, out_dir: str) -> list:
    """Write loss.png, accuracy.png, top_eigenvalue.png and spectral_density.png
    into ``out_dir``; returns their paths ([] without matplotlib or without a
    finished epoch)."""
    if not available():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullLocator

    runs = [r for r in results["runs"] if r.get("history", {}).get("epoch")]
    if not runs:
        return []
    colors = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(r["optimizer"] for r in runs))}
    paths = []

    def log_axis(axis):
        axis.set_major_locator(LogLocator(numticks=5))
        axis.set_minor_locator(NullLocator())

    def save(fig, name):
        p = os.path.join(out_dir, name)
        fig.savefig(p, dpi=DPI)
        plt.close(fig)
        paths.append(p)

    def curves(key, ylabel, fname, log, xs_of=lambda r: r["history"]["epoch"], ys_of=None, marker=""):
        fig = plt.figure(figsize=(7.5, 4.2))
        ax = fig.add_axes((0.09, 0.12, 0.62, 0.83))
        for r in runs:
            ys = ys_of(r) if ys_of else r["history"][key]
            if ys:
                ax.plot(xs_of(r), ys, _style(r["norm"]) + marker, color=colors[r["optimizer"]], label=_label(r),
                        lw=1.4, ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
            log_axis(ax.yaxis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        save(fig, fname)

    curves("train_loss", "training loss (epoch mean)", "loss.png", True)
    curves("val_acc", "validation accuracy", "accuracy.png", False)
    runs = [r for r in runs if r.get("curvature")]
    if runs:
        curves(None, "largest Hessian eigenvalue", "top_eigenvalue.png", True,
               xs_of=lambda r: [c["epoch"] for c in r["curvature"]],
               ys_of=lambda r: [c["top_eigenvalues"][0] for c in r["curvature"]], marker="o")
        _density_figure(plt, runs, colors, log_axis)
        save(plt.gcf(), "spectral_density.png")
    return paths


def _density_figure(plt, runs, colors, log_axis):
    """Rows: normalization; columns: checkpoint epochs; one curve per optimizer.
    The x axis is shared, so outliers far right of the bulk stand out."""
    norms = list(dict.fromkeys(r["norm"] for r in runs))
    epochs = sorted({c["epoch"] for r in runs for c in r["curvature"]})
    nr, nc = len(norms), len(epochs)
    fig, axes = plt.subplots(nr, nc, figsize=(2.3 * nc + 1.6, 1.9 * nr + 0.7), squeeze=False, sharex=True,
                             sharey=True)
    fig.subplots_adjust(left=0.1, right=0.84, bottom=0.16 if nr == 1 else 0.11, top=0.9, wspace=0.08, hspace=0.3)
    for i, norm in enumerate(norms):
        for j, epoch in enumerate(epochs):
            ax = axes[i][j]
            for r in runs:
                c = next((c for c in r["curvature"] if c["epoch"] == epoch), None) if r["norm"] == norm else None
                if c is not None:
                    d = c["density"]
                    ax.plot(d["grid"], [max(v, 1e-12) for v in d["density"]], color=colors[r["optimizer"]], lw=0.9,
                            label=r["optimizer"])
                    if epoch == 0:  # every run starts from the same weights: one curve says it all
                        ax.lines[-1].set_color("k")
                        break
            ax.set_yscale("log")
            ax.set_ylim(1e-6, None)
            ax.set_title(f"{'no norm' if norm == 'none' else norm + ' norm'}, epoch {epoch}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if i == nr - 1:
                ax.set_xlabel("eigenvalue", fontsize=8)
        axes[i][0].set_ylabel("density", fontsize=8)
    log_axis(axes[0][0].yaxis)
    handles, labels = [], []
    for row in axes:
        for ax in row:
            h, lab = ax.get_legend_handles_labels()
            if len(h) > len(handles):
                handles, labels = h, lab
    fig.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(0.85, 0.9), frameon=False)
    fig.suptitle("Hessian eigenvalue density (SLQ)", fontsize=9)
    return fig
