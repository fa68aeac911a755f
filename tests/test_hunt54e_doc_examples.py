"""The code examples outside the README run as printed (54th session's docs hunt, e): the one
example script no test ran (``examples/train_tiny.py``) and the code blocks (``::``) of the public
docstrings, extracted from the docstrings themselves so that an edited example is what runs.
(The README's blocks: tests/test_readme.py; the torch examples: tests/test_examples.py.)"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import re
import runpy
import textwrap
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_train_tiny_prints_the_loss_falling_and_the_final_accuracy():
    """Its docstring: "Prints the loss falling and the final accuracy in a few seconds"."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        runpy.run_path(str(EXAMPLES / "train_tiny.py"), run_name="__main__")
    rows = re.findall(r"step\s+(\d+)\s+loss ([\d.]+)\s+accuracy ([\d.]+)", printed.getvalue())
    assert len(rows) == 11, printed.getvalue()
    steps = [int(r[0]) for r in rows]
    losses = [float(r[1]) for r in rows]
    assert steps[0] == 1 and steps[-1] == 500
    assert losses[-1] < 0.1 * losses[0] and losses == sorted(losses, reverse=True), losses
    assert float(rows[-1][2]) > 0.95, rows[-1]


def _code_blocks(doc: str) -> list[str]:
    """The literal blocks of a reST docstring: the indented lines after a line ending in ``::``."""
    blocks, lines = [], doc.splitlines()
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for nxt in lines[i + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            body.append(nxt)
        blocks.append(textwrap.dedent("\n".join(body)).strip() + "\n")
    return blocks


def _block(module: str, obj: str | None = None, count: int = 1, which: int = 0) -> str:
    target = importlib.import_module(module)
    if obj:
        target = getattr(target, obj)
    blocks = _code_blocks(inspect.getdoc(target) or "")
    assert len(blocks) == count, f"{module}.{obj or ''}: expected {count} code blocks, found {len(blocks)}"
    return blocks[which]


def test_the_schedules_example_runs():
    """optkern.schedules' module docstring: a warm-up in front of a cosine, attached to an
    optimizer, stepped once per batch (its ``...`` stand for the user's forward and backward)."""
    import optkern
    from optkern import optim

    code = _block("optkern.schedules", count=2)
    assert "sched.attach(opt)" in code and "...; opt.step(grads)" in code
    p = np.ones(5, np.float32)
    ns = {"optkern": optkern, "opt": optim.SGD([p], lr=0.5), "data": range(60), "grads": [np.ones(5, np.float32)]}
    exec(compile(code, "optkern.schedules", "exec"), ns)
    want = optkern.schedules.linear_warmup(optkern.schedules.cosine(3e-3, T_max=1000), 50)
    assert ns["opt"].param_groups[0]["lr"] == want(60)  # the value of the step after the last
    assert 0 < want(10) < want(50) == pytest.approx(3e-3 * (1 + np.cos(np.pi * 50 / 1000)) / 2)


def test_the_schedules_chaining_example_gives_torchs_chained_lr():
    """The module docstring's second block: one relative Scheduler over ``chain(...)`` stands for
    torch's StepLR and ExponentialLR on one optimizer; its lr after 40 steps is torch's."""
    torch = pytest.importorskip("torch")
    from optkern import optim, schedules

    code = _block("optkern.schedules", count=2, which=1)
    p = np.ones(3, np.float32)
    opt = optim.SGD([p], lr=0.5)
    ns = {name: getattr(schedules, name) for name in ("Scheduler", "chain", "step_decay", "exponential")}
    ns["opt"] = opt
    scheduler = eval(compile(code.split("\n", 1)[1], "optkern.schedules", "eval"), ns)
    t_opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(3))], lr=0.5)
    chained = [torch.optim.lr_scheduler.StepLR(t_opt, 30, 0.1), torch.optim.lr_scheduler.ExponentialLR(t_opt, 0.99)]
    for _ in range(40):
        scheduler.step()
        t_opt.step()
        for s in chained:
            s.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(t_opt.param_groups[0]["lr"], rel=1e-12)


def test_the_early_stopping_example_runs():
    """optkern.regularize.EarlyStopping's usage block, with a model whose ``state_dict`` holds its
    live arrays (as a torch module's does): the restore gives the best epoch's weights."""

    class Model:
        def __init__(self):
            self.w = np.zeros(3)

        def state_dict(self):
            return {"w": self.w}  # (the live array, not a copy)

        def load_state_dict(self, sd):
            self.w[...] = sd["w"]

    code = _block("optkern.regularize", "EarlyStopping")
    code = code.replace("for epoch in ...:", "for epoch, val_loss in enumerate(losses):\n    model.w[...] = epoch")
    from optkern.regularize import EarlyStopping

    ns = {"EarlyStopping": EarlyStopping, "model": Model(), "losses": [1.0, 0.5, 0.6, 0.4] + [0.8] * 9}
    exec(compile(code, "EarlyStopping", "exec"), ns)
    assert ns["epoch"] == 9  # patience 5: the 6th check without improvement after epoch 3 stops
    np.testing.assert_array_equal(ns["model"].w, [3.0, 3.0, 3.0])


def test_code_block_reader():
    doc = "Title.\n\nUsage::\n\n    a = 1\n    if a:\n        b = 2\n\nAfter.\n"
    assert _code_blocks(doc) == ["a = 1\nif a:\n    b = 2\n"]


def test_every_python_block_of_the_docs_is_one_a_test_runs():
    """tests/test_readme.py runs the README's blocks by section (Usage, Scaling out, Checkpointing);
    a block added anywhere else (another README section, docs/, CONTRIBUTING.md) must get a test."""
    from test_readme import _sections

    root = EXAMPLES.parent
    assert {k: len(v) for k, v in _sections().items()} == {"Usage": 1, "Scaling out": 1, "Checkpointing": 1}
    for path in [root / "CONTRIBUTING.md", *sorted((root / "docs").rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert "```python" not in text and "```py\n" not in text, f"{path.name}: an untested python block"
