"""Hunt 42x (the 55th's leftovers), item 4: the 8-bit block scales' state name ``<moment>_scale`` was
spelt out in eight modules beside ``block_scale_names`` (optim/_lowp_config.py). It is written once
(``optkern._lowp_blocks.block_scale_name``; ``block_scale_names`` maps it) and read everywhere."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

from optkern import _lowp_blocks, optim
from optkern.optim._lowp_config import block_scale_names

SRC = pathlib.Path(optim.__file__).resolve().parents[1]
SPELT = re.compile(r"""\}_scale["']|["']_scale["']""")  # (an f-string's "{n}_scale", or "_scale" itself)


def test_the_scale_suffix_is_spelt_in_one_place():
    where = sorted(
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if SPELT.search(line)
    )
    assert len(where) == 1 and where[0].startswith("_lowp_blocks.py:"), where


def test_the_names_and_the_state_dicts_agree():
    assert block_scale_names(("exp_avg", "exp_avg_sq"), "int8") == ("exp_avg_scale", "exp_avg_sq_scale")
    assert block_scale_names(("exp_avg",), "bfloat16") == ()
    assert _lowp_blocks.is_block_scale_name("exp_avg_scale") and not _lowp_blocks.is_block_scale_name("exp_avg")
    p = np.ones(300, np.float32)
    opt = optim.Adam([p], lr=0.1, state_dtype="int8")
    opt.step([np.ones(300, np.float32)])
    entry = opt.state_dict()["state"][0]
    assert set(block_scale_names(("exp_avg", "exp_avg_sq"), "int8")) <= set(entry)
    assert entry["exp_avg_scale"].shape == (2,)


def test_optkern_torch_uses_the_same_names():
    torch = pytest.importorskip("torch")
    import optkern.torch as okt

    w = torch.nn.Parameter(torch.ones(300))
    opt = okt.Adam([w], lr=0.1, state_dtype="int8")
    w.grad = torch.ones(300)
    opt.step()
    assert set(block_scale_names(("exp_avg", "exp_avg_sq"), "int8")) <= set(opt.state[w])
