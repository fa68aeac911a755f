"""The study's figures (matplotlib, optional): loss and accuracy curves of every
run, the Hessian spectral density at each checkpoint (log scale, as in
Ghorbani et al.), and the top eigenvalue over training."""
from __future__ import annotations

import os


def available() -> bool:
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _style(norm: str) -> str:
    return "-" if norm == "none" else "--" if norm == "batch" else ":"


def _label(r: dict) -> str:
    return r["optimizer"] + ("" if r["norm"] == "none" else f" +{r['norm']}")


def make_plots(results: dict, out_dir: str) -> list:
    """Write the PNGs; returns their paths ([] without matplotlib)."""
    if not available():
        return []
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    runs = [r for r in results["runs"] if r.get("history", {}).get("epoch")]
    if not runs:
        return []
    colors = {name: f"C{i}" for i, name in enumerate(dict.fromkeys(r["optimizer"] for r in runs))}
    paths = []

    def save(fig, name):
        p = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)

    for key, ylabel, fname, log in (("train_loss", "training loss", "loss.png", True),
                                    ("val_acc", "validation accuracy", "accuracy.png", False)):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for r in runs:
            h = r["history"]
            ax.plot(h["epoch"], h[key], _style(r["norm"]), color=colors[r["optimizer"]], label=_label(r), lw=1.4)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        save(fig, fname)

    curv = [r for r in runs if r.get("curvature")]
    if curv:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for r in curv:
            ep = [c["epoch"] for c in r["curvature"]]
            top = [c["top_eigenvalues"][0] for c in r["curvature"]]
            ax.plot(ep, top, _style(r["norm"]) + "o", color=colors[r["optimizer"]], label=_label(r), ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("largest Hessian eigenvalue")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        save(fig, "top_eigenvalue.png")

        norms = list(dict.fromkeys(r["norm"] for r in curv))
        names = list(dict.fromkeys(r["optimizer"] for r in curv))
        fig, axes = plt.subplots(len(norms), len(names), figsize=(2.6 * len(names), 2.4 * len(norms)),
                                 squeeze=False, sharey=True)
        for i, norm in enumerate(norms):
            for j, name in enumerate(names):
                ax = axes[i][j]
                r = next((r for r in curv if r["norm"] == norm and r["optimizer"] == name), None)
                if r is not None:
                    for k, c in enumerate(r["curvature"]):
                        d = c["density"]
                        ax.semilogy(d["grid"], [max(v, 1e-12) for v in d["density"]], lw=1,
                                    color=plt.cm.viridis(k / max(len(r["curvature"]) - 1, 1)),
                                    label=f"epoch {c['epoch']}")
                ax.set_ylim(1e-7, None)
                ax.set_title(f"{name} ({norm})", fontsize=8)
                ax.tick_params(labelsize=6)
                if i == len(norms) - 1:
                    ax.set_xlabel("eigenvalue", fontsize=7)
        axes[0][0].legend(fontsize=6)
        axes[0][0].set_ylabel("density", fontsize=7)
        save(fig, "spectral_density.png")
    return paths
