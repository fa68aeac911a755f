"""``optkern study --jobs N``: a Ctrl-C or SIGTERM after the last run, while the worker pool shuts
down (45th session's docs hunt, g). The README: "Ctrl-C (or SIGTERM ...; exit status 143) writes
the report of the runs finished so far". A SIGTERM 0.6-1.2 s after the last run's progress line
(the pool joining its workers) escaped run_pool instead: "optkern: interrupted", exit status 130,
and report.md left saying **Not finished** -- no report of the 16 finished runs."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor

from optkern.cli import main
from optkern.study import pool


class _InterruptedShutdown(ProcessPoolExecutor):
    """The study's pool, with Ctrl-C arriving as ``with`` joins its workers after the last run."""

    def shutdown(self, wait=True, **kw):
        super().shutdown(wait, **kw)
        raise KeyboardInterrupt


def test_an_interrupt_while_the_pool_shuts_down_still_writes_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pool, "ProcessPoolExecutor", _InterruptedShutdown)
    out = tmp_path / "out"
    args = ["study", "--quick", "--optimizers", "sgd,adam", "--norms", "none", "--epochs", "1"]
    args += ["--hidden", "8", "--curvature-samples", "32", "--checkpoints", "1", "--jobs", "2"]
    args += ["--threads", "1", "--no-plots", "--quiet", "--out", str(out)]
    assert main(args) == 130  # (128 + 15 under SIGTERM: the handler sets it from the same path)
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is True
    assert [(r["optimizer"], r["status"]) for r in results["runs"]] == [("sgd", "done"), ("adam", "done")]
    report = (out / "report.md").read_text()
    assert "**Interrupted**" in report and "Not finished" not in report
    assert "optkern: interrupted" not in capsys.readouterr().err  # (the escaped interrupt's line)


def test_an_interrupt_while_the_report_is_written_still_writes_it(tmp_path, monkeypatch, capsys):
    """The same after the runs and figures: an interrupt inside report.write_markdown escaped too."""
    from optkern.study import report

    real = report.write_markdown
    calls = []

    def interrupted_once(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(report, "write_markdown", interrupted_once)
    out = tmp_path / "out"
    args = ["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--epochs", "1", "--hidden", "8"]
    args += [
        "--curvature-samples",
        "32",
        "--checkpoints",
        "1",
        "--jobs",
        "1",
        "--no-plots",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(args) == 130
    report_text = (out / "report.md").read_text()
    assert "**Interrupted**" in report_text and "Not finished" not in report_text
    assert "optkern: interrupted" not in capsys.readouterr().err
