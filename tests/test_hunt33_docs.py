"""What the documentation promises against what the code does (33rd session's docs hunt).

- optkern.torch's Adagrad, RMSprop and Adadelta took torch's implementation keywords only by
  keyword, where torch.optim's signatures take some by position (Adagrad's and Adadelta's
  ``foreach``; RMSprop's ``capturable``, ``foreach``, ``maximize``, ``differentiable``): torch code
  passing them positionally raised TypeError with the import changed ("torch's signatures").
- The README said ``foreach`` and ``fused`` "take any value"; a non-bool is refused (TypeError).
- The README's "Tests without PyTorch" paragraph quoted the counts of an older run than the table
  it refers to ("the run above").
- ``optkern study --help``: ``--low-precision`` did not name the float16 run it adds
  (``adam-fp16``); the default study's time (2-3 minutes) was from before runs trained in
  parallel (the README measures 0.6 min); ``--checkpoints`` said "default 4" where ``--quick``
  measures 3 times (the option defaults are now written from StudyConfig).
- ``optkern.swa.AveragedParams`` had no docstring of its own: ``help()`` showed its pickling
  mixin's ("A mixin: the attributes that are native modules ..."); ``GradScaler`` had none.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_test_counts_are_the_runs_in_the_table():
    text = _readme()
    table = re.search(r"`python -m pytest tests -q` \(([\d,]+) passed, ([\d,]+) skipped without torch", text)
    para = re.search(r"in the run above ([\d,]+) tests passed and ([\d,]+) skipped", text)
    assert table and para, "README: the set-up table's test row or the paragraph about it moved"
    assert para.groups() == table.groups()


def _study_parser():
    from optkern.cli import _parser

    p = _parser()
    sub = next(a for a in p._actions if a.dest == "command")
    return sub.choices["study"]


def test_study_help_names_every_run_low_precision_adds():
    from optkern.study.methods import LOW_PRECISION

    study = _study_parser()
    action = next(a for a in study._actions if a.dest == "low_precision")
    missing = [name for name in LOW_PRECISION if name not in action.help]
    assert not missing, f"--low-precision's help does not name {missing}: {action.help}"


def test_study_help_time_agrees_with_the_readmes_measurement():
    row = re.search(r"\| `optkern study` \([^|]*\| ([\d.]+) min \|", _readme())
    assert row, "README: the set-up table's optkern study row moved"
    minutes = float(row.group(1))
    desc = _study_parser().description
    said = re.search(r"Time: the default study takes ([^;]*?) on an idle 2-core CPU", desc)
    assert said, desc
    if minutes < 1.0:
        assert said.group(1) == "under a minute", (minutes, said.group(1))
    else:
        assert f"{round(minutes)} minute" in said.group(1), (minutes, said.group(1))


@pytest.mark.parametrize(
    "dest, field",
    [
        ("epochs", "epochs"),
        ("batch_size", "batch_size"),
        ("large_batch", "large_batch"),
        ("hidden", "hidden"),
        ("activation", "activation"),
        ("checkpoints", "checkpoints"),
        ("curvature_batch", "curvature_batch"),
        ("norms", "norms"),
    ],
)
def test_study_help_states_each_default_with_and_without_quick(dest, field):
    """An option's help states StudyConfig's default, and --quick's where --quick changes it
    (``--checkpoints`` said "default 4" where ``--quick`` measures 3 times)."""
    from optkern.study.config import StudyConfig

    action = next(a for a in _study_parser()._actions if a.dest == dest)
    said = re.search(r"default:? ([^;)]+?)(?:; (\S+) with --quick)?(?:\)|$)", " ".join(action.help.split()))
    assert said, action.help

    def show(v):
        return ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)

    full, quick = show(getattr(StudyConfig(), field)), show(getattr(StudyConfig.quick(), field))
    assert said.group(1) == full, (action.help, full)
    assert (said.group(2) or full) == quick, (action.help, quick)


def test_public_classes_have_their_own_docstrings():
    """``help(cls)`` shows the class's docstring, or an inherited one when it has none."""
    modules = ["optkern", "optkern.optim", "optkern.norm", "optkern.hessian", "optkern.schedules", "optkern.swa"]
    modules += ["optkern.swalp", "optkern.amp", "optkern.lowp", "optkern.clip", "optkern.random", "optkern.nn"]
    modules += ["optkern.regularize", "optkern.data", "optkern.checkpoint", "optkern.functional"]
    bare = []
    for name in modules:
        mod = importlib.import_module(name)
        for attr in getattr(mod, "__all__", []):
            obj = getattr(mod, attr)
            if inspect.isclass(obj) and not (vars(obj).get("__doc__") or "").strip():
                bare.append(f"{name}.{attr}")
    assert not bare, f"public classes without a docstring of their own: {bare}"


# -- optkern.torch: torch's signatures, positional parameters included ---------------------------------

torch_names = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam", "LBFGS"]


@pytest.mark.parametrize("name", torch_names)
def test_torch_adapter_parameters_are_of_torchs_kinds(name):
    torch = pytest.importorskip("torch")
    import optkern.torch as ot

    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    ours = inspect.signature(getattr(ot, name)).parameters
    positional = [k for k, p in theirs.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [k for k, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD][: len(positional)] == positional
    assert {k: ours[k].kind for k in theirs} == {k: p.kind for k, p in theirs.items()}


def _train_positional(cls, args, steps=3):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3).double()
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    opt = cls(model.parameters(), *args)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.parametrize(
    "name, args, held",
    [
        ("Adagrad", (0.05, 0.0, 0.0, 0.1, 1e-10, True), {"lr": 0.05, "initial_accumulator_value": 0.1}),
        ("Adadelta", (0.5, 0.8, 1e-6, 0.0, False), {"lr": 0.5, "rho": 0.8}),
        # RMSprop's 10th positional parameter is maximize: the run must ascend as torch's does
        ("RMSprop", (1e-2, 0.9, 1e-8, 0.0, 0.5, True, False, None, True), {"maximize": True, "centered": True}),
    ],
)
def test_torch_positional_implementation_keywords_run_as_torchs(name, args, held):
    torch = pytest.importorskip("torch")
    import optkern.torch as ot

    want, _ = _train_positional(getattr(torch.optim, name), args)
    got, opt = _train_positional(getattr(ot, name), args)
    for k, v in held.items():
        assert opt.param_groups[0][k] == v, k
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "name, args, word",
    [
        ("Adagrad", (0.01, 0.0, 0.0, 0.0, 1e-10, "yes"), "foreach"),
        ("Adadelta", (1.0, 0.9, 1e-6, 0.0, 1), "foreach"),
        ("RMSprop", (1e-2, 0.99, 1e-8, 0.0, 0.0, False, True), "capturable"),
        ("RMSprop", (1e-2, 0.99, 1e-8, 0.0, 0.0, False, False, None, False, True), "differentiable"),
    ],
)
def test_torch_positional_implementation_keywords_are_checked(name, args, word):
    torch = pytest.importorskip("torch")
    import optkern.torch as ot

    p = torch.zeros(3, requires_grad=True)
    with pytest.raises((TypeError, ValueError), match=rf"^{word}: "):
        getattr(ot, name)([p], *args)


def test_readme_states_the_foreach_and_fused_values_taken():
    torch = pytest.importorskip("torch")
    import optkern.torch as ot

    assert "`foreach` and `fused` take None, True or False alike" in _readme()
    p = torch.zeros(3, requires_grad=True)
    for value in (None, True, False):  # (not both True: torch's RuntimeError, test_torch_impl_keywords)
        ot.SGD([p], foreach=value)
        ot.SGD([p], fused=value)
    for value in (1, "yes"):
        with pytest.raises(TypeError, match="^foreach: expected None or a bool"):
            ot.SGD([p], foreach=value)


def test_averaged_params_docstring_describes_it():
    from optkern.swa import AveragedParams

    doc = inspect.getdoc(AveragedParams)
    assert "mixin" not in doc and "SWA" in doc
    avg = AveragedParams([np.ones(3, np.float32)], mode="ema", decay=0.5)
    avg.update([np.full(3, 3.0, np.float32)])  # the first update copies
    avg.update([np.full(3, 5.0, np.float32)])  # then 0.5 * 3 + 0.5 * 5
    np.testing.assert_array_equal(avg.averages[0], np.full(3, 4.0, np.float32))
    assert avg.n_averaged == 2


def test_sgd_textbook_form_is_the_documented_formula_with_dampening_and_nesterov():
    """The textbook form's docstrings gave ``v <- momentum v - lr g'`` (no dampening) and
    ``p <- p + v`` for Nesterov too; the step scales g' by 1 - dampening, and Nesterov looks ahead."""
    from optkern import optim

    docs = [inspect.getdoc(optim.SGD)]
    if importlib.util.find_spec("torch") is not None:
        import optkern.torch as ot

        docs.append(inspect.getdoc(ot.SGD))
    for doc in docs:
        flat = " ".join(doc.split())
        assert "lr (1 - dampening) g" in flat and "Nesterov: ``p <- p + m" in flat, doc
    lr, mu, damp, g = 0.1, 0.9, 0.2, [0.5, -0.3, 0.7]
    for nesterov in (False, True):
        d = 0.0 if nesterov else damp  # (torch's Nesterov needs dampening 0)
        p = np.array([1.0])
        opt = optim.SGD([p], lr=lr, momentum=mu, dampening=d, nesterov=nesterov, momentum_form="textbook")
        want, v = 1.0, 0.0
        for i, gi in enumerate(g):
            opt.step([np.array([gi])])
            v = -lr * gi if i == 0 else mu * v - lr * (1 - d) * gi
            want = want + (mu * v - lr * gi if nesterov else v)
            np.testing.assert_allclose(p, [want], rtol=1e-15, atol=1e-15)


@pytest.mark.spawns
def test_optkern_info_into_a_closed_pipe_exits_quietly():
    """`optkern info | head -1`: the reader gone before the output is written gave a
    BrokenPipeError traceback; now no traceback and exit 141 (128 + SIGPIPE), as a shell's."""
    import subprocess
    import sys

    # (the environment as given: optkern is the installed package in CI, src/ with PYTHONPATH here)
    cmd = [sys.executable, "-m", "optkern", "info"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # (closed before the child has imported optkern: its first print meets EPIPE)
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 141, err
    assert "Traceback" not in err
