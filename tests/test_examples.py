"""The examples run (short versions) and say what they claim."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_torch_bf16_8bit_example():
    torch = pytest.importorskip("torch")
    pytest.importorskip("ml_dtypes")
    torch.set_num_threads(1)  # (torch's spinning OpenMP team beside optkern's on 2 cores: 10x slower)
    runs = runpy.run_path(str(EXAMPLES / "torch_bf16_8bit.py"))["main"](steps=40)
    (l32, b32), (l8, b8), (l16, b16) = runs.values()
    assert l8 < 2.0 and l16 < 2.0 and abs(l8 - l32) < 0.25 * max(l32, 0.1)  # trains like fp32 AdamW
    assert b8 < b32 and b16 == b8  # 8-bit moments + fp32 master: less than fp32 AdamW's two moments


def test_torch_sharpness_example():
    """SAM and ASAM end flatter than SGD at about its training loss; L-BFGS trains (full batch)."""
    pytest.importorskip("torch")
    out = runpy.run_path(str(EXAMPLES / "torch_sharpness.py"))["main"]()
    sgd, sam, asam, lbfgs = out.values()
    assert all(0 < r[0] < 0.2 for r in (sgd, sam, asam)) and lbfgs[0] < sgd[0]
    assert sam[1] < sgd[1] and asam[1] < sgd[1] and sam[3] < sgd[3] and asam[3] < sgd[3]
