"""`optkern bench`: the quick run prints one table (with and without PyTorch), writes JSON, and
refuses an unusable device in one line with exit code 2. Timings are not checked, only that
they are measured and finite."""

import json
import math
import os
import re
import subprocess
import sys

import pytest

import optkern
from optkern.benchmarks import norm as bnorm
from optkern.benchmarks import optim as boptim
from optkern.benchmarks.timing import Plan, Row, Timing, format_table, time_cpu, write_json
from optkern.cli import main

HEADER = re.compile(r"^case\s+optkern ms\s+best torch ms\s+torch/ok\s+CPU ms\s+CPU t/ok\s+GB/s\s+%probe\s+note$", re.M)
SUITES = ("optim", "norm", "hvp")


def _check_table(out: str, rows: list) -> None:
    """The header once, and for every JSON row a table line with its finite median and spread."""
    assert len(HEADER.findall(out)) == 1, out
    for r in rows:
        m = re.search(re.escape(f"{r['suite']}: {r['case']}") + r"\s+(\d+\.\d+) ±(\d+)%", out)
        assert m, f"no table line for {r['suite']}: {r['case']}\n{out}"
        assert math.isfinite(float(m.group(1))) and float(m.group(1)) > 0


def _check_json(path, suites) -> list:
    with open(path) as f:
        doc = json.load(f, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    rows = doc["rows"]
    assert {r["suite"] for r in rows} == set(suites)
    for r in rows:
        t = r["ours"]
        assert 0 < t["q1_ms"] <= t["median_ms"] <= t["q3_ms"] and math.isfinite(t["q3_ms"]), r
        assert t["repeats"] >= 1
        assert 0 < t["cpu"]["median_ms"] < math.inf and t["cpu"]["repeats"] == t["repeats"], r  # CPU runs
        for impl in r["torch"].values():
            assert 0 < impl["median_ms"] < math.inf and 0 < impl["cpu"]["median_ms"] < math.inf
        assert (r["cpu_ratio"] is None) == (r["ratio"] is None), r
        if r["bytes_moved"]:
            assert r["gbs"] > 0 and r["pct_probe"] > 0
    probes = [r for r in rows if r["kind"] == "probe"]
    assert {r["suite"] for r in probes} == set(suites) - {"hvp"}  # hvp is compute-bound
    assert doc["meta"]["device"] == "cpu" and doc["meta"]["quick"] is True
    return rows


@pytest.mark.spawns
def test_quick_runs_without_torch(tmp_path):
    """The issue's test: `optkern bench --quick` on the CPU with torch not importable."""
    path = tmp_path / "b.json"
    code = (
        "import sys; sys.modules['torch'] = None; from optkern.cli import main; "
        f"sys.exit(main(['bench', '--quick', '--json', {str(path)!r}]))"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(optkern.__file__)))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "PyTorch not installed: ratios skipped (pip install 'optkern[bench]')" in p.stdout
    rows = _check_json(path, SUITES)
    _check_table(p.stdout, rows)
    assert all(not r["torch"] and r["ratio"] is None for r in rows)
    assert "torch: not installed" in p.stdout.splitlines()[0]


def test_quick_in_process_with_json(tmp_path, capsys):
    """In process, with PyTorch when it is installed: the torch columns are filled."""
    torch_present = True
    try:
        import torch  # noqa: F401
    except ImportError:
        torch_present = False
    path = tmp_path / "n.json"
    before = optkern._backend.cpu.get_num_threads()
    assert main(["bench", "norm", "--quick", "--json", str(path), "--threads", "1"]) == 0
    assert optkern._backend.cpu.get_num_threads() == before  # --threads does not outlive the run
    out = capsys.readouterr().out
    rows = _check_json(path, ["norm"])
    _check_table(out, rows)
    assert f"results: {path}" in out
    cases = [r for r in rows if r["kind"] == "case"]
    assert len(cases) == len(bnorm.TRAFFIC) * len(bnorm.CASES)
    if torch_present:  # torch has no out= forward: those rows have no torch column
        vs_torch = [r for r in cases if not r["case"].endswith("out=")]
        assert len(vs_torch) == 2 * len(bnorm.CASES)
        assert all(r["best_torch_impl"] == "F" and r["ratio"] > 0 for r in vs_torch)
        assert "PyTorch not installed" not in out


def test_cuda_without_cupy_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert main(["bench", "optim", "--device", "cuda", "--quick"]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert err.startswith("optkern bench: error: --device cuda needs CuPy") and "\n" not in err
    assert cap.out == ""


def test_bad_thread_count_is_a_usage_error(capsys):
    assert main(["bench", "norm", "--quick", "--threads", "0"]) == 2
    assert "--threads: must be >= 1" in capsys.readouterr().err


# ---- the pieces --------------------------------------------------------------------------


def test_timing_statistics_and_table():
    t = time_cpu(lambda: sum(range(1000)), Plan(warmup=1, min_repeats=7, max_repeats=7, budget_s=0.0))
    assert t.repeats == 7 and 0 < t.q1_ms <= t.median_ms <= t.q3_ms
    assert t.cpu is not None and t.cpu.repeats == 7 and 0 < t.cpu.q1_ms <= t.cpu.median_ms <= t.cpu.q3_ms
    ours = Timing(2.0, 1.5, 2.5, 5, cpu=Timing(4.0, 4.0, 4.0, 5))
    theirs = Timing(3.0, 3.0, 3.0, 5, cpu=Timing(10.0, 9.0, 11.0, 5))
    with_torch = Row(
        "optim", "x", ours, bytes_moved=4e6, torch={"fused": theirs, "foreach": Timing(4, 4, 4, 5)}, probe_gbs=4.0
    )
    alone = Row("hvp", "y", ours)
    assert with_torch.best_torch == ("fused", theirs) and with_torch.ratio == pytest.approx(1.5)
    assert with_torch.gbs == pytest.approx(2.0) and with_torch.pct_probe == pytest.approx(50.0)
    assert ours.spread == pytest.approx(0.5)
    assert with_torch.cpu_ratio == pytest.approx(2.5)  # the CPU time of the same implementation, fused
    lines = format_table([with_torch, alone, Row("hvp", "gpu", Timing(1.0, 1.0, 1.0, 1))]).splitlines()
    want = r"optim: x\s+2\.000 ±50%\s+3\.000 ±0% \(fused\)\s+1\.50\s+4\.000 ±0%\s+2\.50\s+2\.0\s+50$"
    assert re.search(want, lines[2]), lines[2]
    assert re.search(r"hvp: y\s+2\.000 ±50%\s+—\s+—\s+4\.000 ±0%\s+—\s+—\s+—$", lines[3]), lines[3]
    assert re.search(r"hvp: gpu\s+1\.000 ±0%\s+—\s+—\s+—\s+—\s+—\s+—$", lines[4]), lines[4]  # no CPU time
    d, w = alone.as_dict(), with_torch.as_dict()
    assert d["ratio"] is None and d["gbs"] is None and d["best_torch_ms"] is None and d["cpu_ratio"] is None
    assert w["cpu_ratio"] == pytest.approx(2.5) and w["ours"]["cpu"]["median_ms"] == 4.0


def test_write_json_is_strict(tmp_path):
    path = tmp_path / "r.json"
    write_json([Row("hvp", "y", Timing(1.0, 1.0, 1.0, 1))], str(path), {"device": "cpu"})
    doc = json.loads(path.read_text())
    assert doc["rows"][0]["ratio"] is None and doc["meta"] == {"device": "cpu"}


def test_case_definitions_follow_the_issues():
    lays = boptim.layouts("cpu", quick=False)
    assert list(lays) == ["flat 16M", "flat 64M", "200 arrays 16M"]
    assert len(lays["200 arrays 16M"]) == 200 and sum(lays["200 arrays 16M"]) == 16 << 20
    gpu = boptim.layouts("cuda", quick=False)
    assert list(gpu) == ["flat 256M", "1000 arrays 256M"] and min(gpu["1000 arrays 256M"]) >= 1
    assert set(boptim.OPTIMIZERS) == {"Adam", "AdamW", "SGD-momentum", "Adagrad"}
    # bytes per element: (2 * written + 1) * 4 = 28 for Adam, 20 for SGD-momentum / Adagrad
    assert {k: (2 * w + 1) * 4 for k, (_, _, w) in boptim.OPTIMIZERS.items()} == {
        "Adam": 28,
        "AdamW": 28,
        "SGD-momentum": 20,
        "Adagrad": 20,
    }
    assert bnorm.traffic_bytes("fwd", 10, "cuda") == 80 and bnorm.traffic_bytes("fwd+bwd", 10, "cpu") == 280
    assert next(s for _, s, _ in bnorm.cases(quick=True)) == (8192 // 16, 1024)


def test_bench_wrappers_write_json_by_default():
    """bench/*.py print the table and write JSON: the default path unless --json names one."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "_run.py"
    spec = importlib.util.spec_from_file_location("bench_run", path)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    out = run.default_json("norm", ["--device", "cuda", "--quick"])
    assert out[0] == "--json" and out[1].endswith("bench/results-norm-cuda-quick.json")
    assert run.default_json("optim", [])[1].endswith("bench/results-optim-cpu.json")
    assert run.default_json("hvp", ["--device=cuda"])[1].endswith("results-hvp-cuda.json")
    assert run.default_json("optim", ["--json", "x.json"]) == []


def test_rules_suite_times_every_variant(tmp_path, capsys):
    """`optkern bench rules --quick`: one row per optimizer variant, its byte count from the state
    arrays the optimizer really keeps, torch columns exactly where torch has the variant."""
    import numpy as np

    import optkern.optim as O
    from optkern.benchmarks import rules as brules

    path = tmp_path / "r.json"
    assert main(["bench", "rules", "--quick", "--json", str(path), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = _check_json(path, ["rules"])
    _check_table(out, rows)
    cases = {r["case"]: r for r in rows if r["kind"] == "case"}
    assert list(cases) == [f"{name}, flat 1M" for name in brules.VARIANTS]
    torch_present = env_torch_present()
    for name, (cls, hp, states, in_torch) in brules.VARIANTS.items():
        params = [np.ones(5, np.float32)]
        opt = getattr(O, cls)(params, **hp)
        opt.step([np.ones(5, np.float32)])
        kept = [v for v in opt.state_dict()["state"].get(0, {}).values() if isinstance(v, np.ndarray) and v.size == 5]
        assert len(kept) == states, (name, opt.state_dict()["state"])
        row = cases[f"{name}, flat 1M"]
        norm_pass = 8 if cls == "AdagradNorm" else 0  # its norm reads g and p (with decay) first
        assert row["bytes_moved"] == ((2 * (1 + states) + 1) * 4 + norm_pass) * (1 << 20)
        assert bool(row["torch"]) == (torch_present and in_torch), name
        if torch_present and in_torch:
            assert "foreach" in row["torch"], name


def env_torch_present() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_kernels_suite_times_every_case(tmp_path, capsys):
    """`optkern bench kernels --quick`: one row per streaming kernel, its byte count from the
    case table (CPU: a freshly written array counted twice), the probe row, torch columns
    exactly where torch has the op."""
    from optkern.benchmarks import kernels as bk

    path = tmp_path / "k.json"
    assert main(["bench", "kernels", "--quick", "--json", str(path), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = _check_json(path, ["kernels"])
    _check_table(out, rows)
    n = bk.size("cpu", quick=True)
    assert n == 1 << 20 and bk.label("weight_norm dim=0 square v", n).endswith("1024x1024")
    probes = [r for r in rows if r["kind"] == "probe"]
    assert [r["case"] for r in probes] == ["probe rmw 1w+1r x 1M"]
    cases = {r["case"]: r for r in rows if r["kind"] == "case"}
    torch_present = env_torch_present()
    ema, adapter = "AveragedParams ema update 200 arrays", "optkern.torch.AveragedModel ema update 200 arrays"
    want = [bk.label(name, n) for name in bk.CASES]
    if torch_present:  # optkern.torch's AveragedModel against torch's, after optkern.swa's row
        want.insert(want.index(bk.label(ema, n)) + 1, bk.label(adapter, n))
        row = cases[bk.label(adapter, n)]
        assert row["bytes_moved"] == cases[bk.label(ema, n)]["bytes_moved"]
        assert list(row["torch"]) == ["AveragedModel"] and row["ratio"] > 0
    assert list(cases) == want
    for name, case in bk.CASES.items():
        row = cases[bk.label(name, n)]
        assert row["bytes_moved"] == bk.bytes_per_element(case, "cpu") * n > 0, name
        assert row["probe_gbs"] == probes[0]["gbs"] and math.isfinite(row["pct_probe"]), name
        assert bool(row["torch"]) == (torch_present and case.torch is not None), name
        if row["torch"]:
            assert list(row["torch"]) == [case.torch[0]] and row["ratio"] > 0, name
            assert "torch OMP_WAIT_POLICY=PASSIVE" in row["note"] or "wait policy unknown" in row["note"]
    # the byte counts of the module docstring: CPU / GPU per element
    per = {name: (bk.bytes_per_element(c, "cpu"), bk.bytes_per_element(c, "cuda")) for name, c in bk.CASES.items()}
    assert per["clip_grad_norm_ 200 arrays"] == (12, 12) and per["clip_grad_value_ 200 arrays"] == (8, 8)
    assert per["GradScaler unscale_+update 200 arrays"] == (8, 8)
    assert per["AveragedParams ema update 200 arrays"] == (12, 12)
    assert per["to_half bf16"] == (8, 6) and per["from_half bf16"] == (10, 6)
    assert per["quantize_blockwise"] == (6.03125, 5.015625) and per["dequantize_blockwise"] == (9.015625, 5.015625)
    assert per["quantize_block_fp out="] == (16, 12) and per["dropout"] == (12, 8)
    assert per["weight_norm dim=0 square v"] == (12, 8) and per["random.uniform"] == (8, 4)
    cpu_only = {name for name, c in bk.CASES.items() if not c.cuda}
    assert cpu_only == set()  # (SWALP's quantizers have had a CUDA path since the 15th session)


def test_lbfgs_pass_paired_with_a_read_probe_over_its_own_arrays():
    """`bench second`'s kernel rows give each L-BFGS pass against a read probe over the arrays
    it reads, timed back to back: a pass doing twice the probe's reads shows under 100 %."""
    import numpy as np

    from optkern import _cpu
    from optkern.benchmarks import second_order as so

    arrays = [np.full(1 << 16, float(i), np.float32) for i in range(23)]
    twice = lambda: (_cpu.probe_read(arrays), _cpu.probe_read(arrays))
    note = so._paired_read_note(twice, arrays, Plan(warmup=1, min_repeats=15, max_repeats=15, budget_s=0.1))
    m = re.fullmatch(r"; paired with a read probe over its own arrays (\d+)% \[(\d+), (\d+)\]", note)
    assert m, note
    med, q1, q3 = map(int, m.groups())
    assert q1 <= med <= q3 and 20 <= med < 90, note
