"""tools/gpu-check without a GPU: it says there is nothing to check and exits 0, writing nothing."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu-check"


@pytest.mark.spawns
@pytest.mark.skipif(shutil.which("bash") is None, reason="the script is bash")
@pytest.mark.parametrize("fake", ["missing", "no-devices"])
def test_gpu_check_without_a_gpu_exits_0(tmp_path, fake):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    if fake == "no-devices":  # nvidia-smi present, as on a machine with a driver and no GPU
        smi = bindir / "nvidia-smi"
        smi.write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 6\n")
        smi.chmod(0o755)
    # Only this folder, holding links to the tools the script needs before it looks for a GPU: a
    # real nvidia-smi (in /usr/bin on a GPU machine) is out of reach.
    for tool in ("dirname", "date", "cut", "tr", "head", "mkdir", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bindir / tool).symlink_to(found)
    path = str(bindir)
    out = tmp_path / "out"
    env = {**os.environ, "PATH": path, "OUT": str(out)}
    bash = shutil.which("bash")
    assert bash
    r = subprocess.run([bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "nothing to check" in r.stdout
    assert not out.exists()


def test_the_test_files_it_names_exist():
    """Every test file the script names by default (its CUDA test list and sanitizer subset) is in
    tests/: a renamed file would make a lent GPU's one run fail on a path."""
    import re

    text = SCRIPT.read_text()
    named = set(re.findall(r"tests/[\w./]+\.py", text))
    assert {"tests/test_cuda_lowp.py", "tests/test_distributed.py"} <= named  # (the pattern finds them)
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, missing
