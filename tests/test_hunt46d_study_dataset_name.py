"""``optkern study --data``: a file whose name holds a colon (``run:2.csv``, a time stamp
``data-12:30.csv``) was called ``run`` in results.json's ``dataset`` and in report.md's "Data:"
line (hunt 46d): the name was cut at its first colon to drop the split's ``:train`` suffix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optkern import cli


@pytest.mark.parametrize("name", ["run:2.npz", "data-12:30:05.npz"])
def test_a_file_name_with_a_colon_is_kept_whole(tmp_path, name):
    rng = np.random.default_rng(0)
    path = tmp_path / name
    np.savez(path, x=rng.normal(size=(30, 3)), y=np.arange(30) % 2)
    out = tmp_path / "out"
    args = ["study", "--quick", "--hidden", "4", "--curvature-samples", "8", "--jobs", "1", "--no-plots", "--quiet"]
    args += ["--epochs", "1", "--optimizers", "sgd", "--norms", "none", "--data", str(path), "--out", str(out)]
    assert cli.main(args) == 0
    assert json.loads((out / "results.json").read_text())["dataset"] == name
    assert f"Data: {name}, 24 training / 6 validation samples" in (out / "report.md").read_text()
