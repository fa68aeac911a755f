"""Hunt 56h: ``optkern study`` data-parallel with batch norm cut every batch into one contiguous shard
per rank; a batch of fewer than two rows per rank (``--batch-size 4`` on 3 ranks: shards of 1, 1 and 2
rows, or a short last batch) gave a rank a single row, which batch norm cannot normalize: that rank
raised ``x: batch norm uses the statistics of the batch`` in the middle of the run while the others
waited in the gradient reduction (an abort under ``python -m mpi4py``, a hang without it), from a
configuration the study's own checks accepted. With batch norm a batch is now cut over as many ranks
as can each take two rows (every rank when the batch holds two rows per rank: the cut unchanged),
the others take none and still join every reduction with weight 0."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from optkern.study import parallel
from test_distributed import launch


def _cuts(m: int, world: int, min_rows: int) -> list:
    return [parallel.shard(m, SimpleNamespace(rank=r, size=world), min_rows) for r in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("m", [0, 1, 2, 3, 4, 5, 7, 13, 64])
def test_batch_norm_shards_hold_no_single_row(m, world):
    cuts = _cuts(m, world, 2)
    # contiguous, in rank order, covering every row once
    assert cuts[0].start == 0 and cuts[-1].stop == m
    assert all(a.stop == b.start for a, b in zip(cuts, cuts[1:]))
    sizes = [c.stop - c.start for c in cuts]
    assert min(sizes) >= 0 and sum(sizes) == m
    if m >= 2:  # (a batch of one row is one row wherever it goes: the model names it, as on one process)
        assert 1 not in sizes, sizes
    if m >= 2 * world:  # two rows or more per rank: the plain cut, as without batch norm
        assert cuts == _cuts(m, world, 1)


def test_without_batch_norm_the_cut_is_unchanged():
    assert [(c.start, c.stop) for c in _cuts(4, 3, 1)] == [(0, 1), (1, 2), (2, 4)]
    assert parallel.shard(7, None, 2) == slice(0, 7)
    with pytest.raises(ValueError, match="min_rows"):
        parallel.shard(7, None, 0)
    with pytest.raises(TypeError, match="min_rows"):
        parallel.shard(7, None, True)


@pytest.mark.spawns
def test_study_with_batch_norm_on_three_ranks_and_small_batches(tmp_path):
    pytest.importorskip("mpi4py")
    out = tmp_path / "mpi"
    args = ["study", "--quick", "--optimizers", "sgd,newton-cg", "--norms", "batch", "--epochs", "1"]
    args += ["--hidden", "8", "--batch-size", "4", "--large-batch", "5", "--curvature-samples", "16"]
    res = launch(3, "-m", "optkern", *args, "--no-plots", "--out", str(out), timeout=240)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-4000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {r["optimizer"] for r in runs} == {"sgd", "newton-cg"}
    for r in runs:
        assert r["status"] == "done", r
    assert sorted(os.listdir(out)) == ["report.md", "results.json"]
