"""The README's code runs as printed: its Python blocks (Usage, then Checkpointing on the Usage
block's objects; Scaling out under ``mpiexec -n 2``) and the command-line options it names."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _sections() -> dict[str, list[str]]:
    """The README's ```python blocks, by the ``##`` section that holds them."""
    out: dict[str, list[str]] = {}
    section = ""
    block: list[str] | None = None
    for line in README.read_text(encoding="utf-8").splitlines():
        if block is not None:
            if line.startswith("```"):
                out.setdefault(section, []).append("\n".join(block) + "\n")
                block = None
            else:
                block.append(line)
        elif line.startswith("## "):
            section = line[3:].strip()
        elif line.strip() == "```python":
            block = []
    return out


def _block(section: str) -> str:
    blocks = _sections().get(section, [])
    assert len(blocks) == 1, f"README section {section!r}: expected one python block, found {len(blocks)}"
    return blocks[0]


def test_usage_then_checkpointing(tmp_path, monkeypatch):
    """Usage trains and measures the Hessian; Checkpointing saves that run and restores it in place."""
    monkeypatch.chdir(tmp_path)  # the Checkpointing block writes ckpt.npz in the working directory
    ns: dict = {"__name__": "readme_usage"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_block("Usage"), "README.md:Usage", "exec"), ns)
    words = printed.getvalue().replace("[", " ").replace("]", " ").split()
    loss, eig, trace = float(words[0]), [float(w) for w in words[1:4]], float(words[4])
    assert 0.0 < loss < 0.5, printed.getvalue()  # 500 AdamW steps on the digits: trained
    assert eig[0] >= eig[1] >= eig[2] > 0.0 and trace > eig[0], printed.getvalue()
    params, opt, sched = ns["params"], ns["opt"], ns["sched"]
    saved_params = params.copy()
    saved_state = {k: v.copy() for k, v in opt.state[params].items() if isinstance(v, np.ndarray)}
    saved_lr = opt.param_groups[0]["lr"]

    ckpt = _block("Checkpointing")
    save, load = ckpt.split("ckpt = ", 1)
    exec(compile(save, "README.md:Checkpointing", "exec"), ns)
    # spoil what the load must restore in place
    params[:] = 0.0
    for v in opt.state[params].values():
        if isinstance(v, np.ndarray):
            v[...] = -1.0
    opt.param_groups[0]["lr"] = 123.0
    ns["step"] = -1
    exec(compile("ckpt = " + load, "README.md:Checkpointing", "exec"), ns)
    np.testing.assert_array_equal(params, saved_params)
    for k, v in saved_state.items():
        np.testing.assert_array_equal(opt.state[params][k], v, err_msg=k)
    assert opt.param_groups[0]["lr"] == saved_lr and ns["step"] == 499 and ns["sched"] is sched


@pytest.mark.spawns
def test_scaling_out_under_two_ranks(tmp_path):
    """The Scaling-out script on two ranks: every rank prints the same top eigenvalues."""
    from test_distributed import launch

    script = tmp_path / "train.py"
    script.write_text(_block("Scaling out"), encoding="utf-8")
    res = launch(2, str(script))
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    # (the two ranks' prints can interleave within a line: compare the bracketed arrays)
    eig = re.findall(r"\[([^\]]*)\]", res.stdout)
    assert len(eig) == 2 and eig[0] == eig[1], res.stdout
    assert len(eig[0].split()) == 3 and all(float(x) > 0 for x in eig[0].split()), res.stdout
    assert sorted("".join(re.sub(r"\[[^\]]*\]", " ", res.stdout).split())) == ["0", "1"], res.stdout


def _flags(text: str, command: str) -> set[str]:
    """The ``--options`` the README gives next to ``optkern <command>``."""
    found: set[str] = set()
    for para in re.split(r"\n\s*\n", text):
        if f"optkern {command}" in para:
            found.update(re.findall(r"(--[a-z][a-z-]*)", para))
    return found


@pytest.mark.spawns
@pytest.mark.parametrize("command", ["study", "bench"])
def test_the_options_the_readme_names_exist(command):
    text = README.read_text(encoding="utf-8")
    flags = _flags(text, command)
    assert flags, f"the README names no option of optkern {command}"
    res = subprocess.run(
        [sys.executable, "-m", "optkern", command, "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr
    missing = sorted(f for f in flags if f not in res.stdout)
    assert not missing, f"optkern {command} --help does not list {missing}"


def test_every_dotted_optkern_name_in_the_readme_exists():
    """``optkern.x.y`` names in the README resolve (a module of an optional dependency that is not
    installed here excepted: its import must then say what to install)."""
    import importlib

    names = sorted(set(re.findall(r"\boptkern(?:\.[A-Za-z_]\w*)+", README.read_text(encoding="utf-8"))))
    assert len(names) > 20
    missing = []
    for name in names:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                break
            except ModuleNotFoundError as e:
                # an optional dependency (cupy), or the CUDA module where no CUDA toolkit built it
                if e.name and (not e.name.startswith("optkern") or e.name == "optkern._cuda"):
                    obj = None
                    break
            except ImportError as e:  # optkern.torch without torch: says what to install
                assert "pip install" in str(e), e
                obj = None
                break
        if obj is None:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        if obj is None:
            missing.append(name)
    assert not missing, f"named in the README, not found: {missing}"
