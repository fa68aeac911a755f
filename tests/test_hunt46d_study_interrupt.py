"""``optkern study``: an interrupt after the last run, while the figures or the report are written
(hunt 46d). results.json was written before them with ``"interrupted": false``, and the interrupt
then only marked report.md (exit 130): the two disagreed, and results.json said the study ended
normally. results.json is now written again, marked, and a further Ctrl-C while it is written waits
for its end."""

from __future__ import annotations

import json

import pytest

from optkern.cli import main
from optkern.study import plots, report

_ARGS = ["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--epochs", "1", "--hidden", "8"]
_ARGS += ["--curvature-samples", "32", "--checkpoints", "2", "--jobs", "1", "--quiet"]


def _once(real, when=lambda *a, **k: True):
    """``real``, raising KeyboardInterrupt the first time ``when`` holds for its arguments."""
    done = []

    def wrapped(*a, **k):
        if not done and when(*a, **k):
            done.append(1)
            raise KeyboardInterrupt
        return real(*a, **k)

    return wrapped


def _check(out):
    results = json.loads((out / "results.json").read_text())
    text = (out / "report.md").read_text()
    assert results["interrupted"] is True
    assert [r["status"] for r in results["runs"]] == ["done"]
    assert "**Interrupted**" in text and "Not finished" not in text


def test_an_interrupt_while_the_figures_are_drawn_is_recorded_in_results_json(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "make_plots", _once(plots.make_plots))
    out = tmp_path / "out"
    assert main([*_ARGS, "--out", str(out)]) == 130
    _check(out)


@pytest.mark.parametrize("no_plots", [True, False])
def test_an_interrupt_while_the_report_is_written_is_recorded_in_results_json(tmp_path, monkeypatch, no_plots):
    monkeypatch.setattr(plots, "make_plots", lambda results, out: [])  # (speed: figures are not the point)
    monkeypatch.setattr(report, "write_markdown", _once(report.write_markdown))
    out = tmp_path / "out"
    assert main([*_ARGS, *(["--no-plots"] if no_plots else []), "--out", str(out)]) == 130
    _check(out)


def test_a_ctrl_c_while_results_json_is_written_again_waits_for_it(tmp_path, monkeypatch):
    import os
    import signal

    real = report.write_json

    def signalled(results, out):  # the rewrite, marked: a real SIGINT arrives as it starts
        if results["interrupted"] is True and "elapsed_s" in results:
            os.kill(os.getpid(), signal.SIGINT)
        return real(results, out)

    monkeypatch.setattr(report, "write_json", signalled)
    monkeypatch.setattr(plots, "make_plots", _once(plots.make_plots))
    out = tmp_path / "out"
    assert main([*_ARGS, "--out", str(out)]) == 130
    _check(out)
    assert "elapsed_s" in json.loads((out / "results.json").read_text())  # the final results, not a checkpoint


def test_an_interrupt_while_results_json_is_first_written_keeps_the_marked_checkpoint(tmp_path, monkeypatch):
    final = _once(report.write_json, lambda results, out: results["interrupted"] is False)
    monkeypatch.setattr(report, "write_json", final)
    out = tmp_path / "out"
    assert main([*_ARGS, "--no-plots", "--out", str(out)]) == 130
    _check(out)


def test_a_study_not_interrupted_says_so(tmp_path):
    out = tmp_path / "out"
    assert main([*_ARGS, "--no-plots", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["interrupted"] is False
    assert "**Interrupted**" not in (out / "report.md").read_text()
