"""top_eigenvalue.png keeps its first and last points inside the axes (55th hunt, c).

matplotlib's default margin is 5% of the data's span: on a panel of the two-row figure, ~0.1 inch,
less than the epoch-0 star's radius plus its edge, which reached the frame (as did the circles of a
first or last checkpoint at an extreme). Checked on the drawn figure: every marker lies whole
inside its axes with room to spare, and the limits lie strictly outside the data's range."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")  # (an optional dependency of the study's figures)
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from optkern.study import plots as P  # noqa: E402


def _runs(rng, norms, epochs, seeds):
    """Runs of two optimizers per normalization, their top eigenvalues decades apart (the log row)."""
    runs = []
    for norm in norms:
        for opt in ("sgd", "adam"):
            for seed in range(seeds):
                tops, traces = np.exp(rng.uniform(-1, 6, len(epochs))), rng.uniform(1, 1e3, len(epochs))
                curvature = [
                    {"epoch": e, "top_eigenvalues": [t], "trace": tr, "trace_stderr": 0.05 * tr}
                    for e, t, tr in zip(epochs, tops, traces)
                ]
                history = {"epoch": list(range(max(epochs) + 1))}
                runs.append({"optimizer": opt, "norm": norm, "seed": seed, "history": history, "curvature": curvature})
    return runs


CASES = [
    (("none",), [0, 2, 5], 1),
    (("none", "batch"), [0, 1, 3, 7], 2),
    (("none", "batch", "layer"), [0, 10, 20, 30], 1),
    (("none",), [4], 1),  # one checkpoint: no epoch-0 star, one point per line
]


@pytest.mark.parametrize("norms, epochs, seeds", CASES)
def test_markers_lie_whole_inside_the_axes(norms, epochs, seeds):
    rng = np.random.default_rng(len(epochs) * 10 + seeds)
    groups = P._groups({"runs": _runs(rng, norms, epochs, seeds)})
    fig = P._sharpness(plt, groups, list(norms), {"sgd": "C0", "adam": "C1"})
    try:
        fig.canvas.draw()
        points = 0
        for ax in fig.axes:
            box = ax.get_window_extent()
            (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
            for line in ax.get_lines():
                xy = np.asarray(line.get_xydata(), dtype=float)
                if not len(xy) or line.get_marker() in (None, "None", "", " "):
                    continue
                points += len(xy)
                assert x0 < xy[:, 0].min() and xy[:, 0].max() < x1, (ax.get_xlim(), xy[:, 0])
                assert y0 < xy[:, 1].min() and xy[:, 1].max() < y1, (ax.get_ylim(), xy[:, 1])
                d = ax.transData.transform(xy)
                gap = min(
                    d[:, 0].min() - box.x0, box.x1 - d[:, 0].max(), d[:, 1].min() - box.y0, box.y1 - d[:, 1].max()
                )
                # the marker's radius and half its edge, and 4 points more before the frame (in pixels)
                need = (line.get_markersize() / 2 + line.get_markeredgewidth() / 2 + 4) * fig.dpi / 72
                assert gap >= need, (line.get_marker(), gap, need)
        assert points > 0
    finally:
        plt.close(fig)
