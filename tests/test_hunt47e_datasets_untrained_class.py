"""A class with no training sample after the split (hunt 47e) is said, not counted silently.

``Dataset.split`` draws the validation rows without stratifying: a rare class's samples may all
go to validation. The study then trained a network that never saw that class, and its report
said "3 classes" without a word (only a split left with fewer than two classes was refused).
The split now notes such classes (``Dataset.notes``: the report's data line) and ``optkern study``
warns on stderr, naming --data and --seed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from optkern.cli import main
from optkern.datasets import Dataset, load_file

_ARGS = ["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--epochs", "1", "--hidden", "4"]
_ARGS += ["--curvature-samples", "8", "--checkpoints", "1", "--jobs", "1", "--no-plots", "--quiet"]


def _rare(tmp_path) -> str:
    """60 samples: classes 0 and 1, and one sample of class 2 (the last)."""
    rng = np.random.default_rng(0)
    rows = [f"{rng.normal():.4f},{rng.normal():.4f},{2 if i == 59 else i % 2}" for i in range(60)]
    path = tmp_path / "rare.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _seeds(path) -> tuple[int, int]:
    """A seed whose split trains on class 2, and one whose validation split took it."""
    data = load_file(path)
    kept = [s for s in range(20) if 2 in data.split(0.2, seed=s)[0].y]
    lost = [s for s in range(20) if 2 not in data.split(0.2, seed=s)[0].y]
    return kept[0], lost[0]


def test_split_notes_a_class_with_no_training_sample(tmp_path):
    path = _rare(tmp_path)
    kept, lost = _seeds(path)
    train, val = load_file(path).split(0.2, seed=lost)
    note = [n for n in train.notes if "no training sample" in n]
    assert note == [
        f"class 2 of 3: no training sample: the validation split (0.2 of the samples, drawn with seed {lost}) "
        "took its sample; the network is never trained on it"
    ]
    assert note[0] in val.notes
    train, _ = load_file(path).split(0.2, seed=kept)
    assert not any("no training sample" in n for n in train.notes)


def test_split_notes_classes_absent_from_the_data():
    x = np.zeros((10, 2), np.float32)
    d = Dataset(x, np.arange(10) % 2, 4, "four")  # classes 2 and 3: no sample at all
    train, _ = d.split(0.2, seed=0)
    assert [n for n in train.notes if "no training sample" in n] == [
        "classes 2, 3 of 4: no training sample: none in the data; the network is never trained on them"
    ]


@pytest.mark.parametrize("lose", [True, False])
def test_the_study_warns_and_reports_a_class_it_never_trained_on(tmp_path, capsys, lose):
    path = _rare(tmp_path)
    seed = _seeds(path)[1 if lose else 0]
    out = tmp_path / "out"
    assert main([*_ARGS, "--data", path, "--seed", str(seed), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("optkern study: warning:")]
    notes = json.loads((out / "results.json").read_text())["data_notes"]
    if not lose:
        assert warned == [] and not any("no training sample" in n for n in notes)
        return
    assert warned == [
        f"optkern study: warning: --data {path}: class 2 of 3: no training sample: the validation split (0.2 of "
        f"the samples, drawn with seed {seed}) took its sample; the network is never trained on it; pass more "
        "samples of each class or another --seed"
    ]
    assert any("class 2 of 3: no training sample" in n for n in notes)
    assert "class 2 of 3: no training sample" in (out / "report.md").read_text()
