"""``optkern.save`` of an integer past Python's default int-string limit (4300 decimal digits): JSON
writes ints in decimal, and ``json.dumps`` raised int()'s own ValueError ("Exceeds the limit (4300
digits) for integer string conversion"), naming neither the entry nor where in it; a file written under
a raised limit (``sys.set_int_max_str_digits``) was one that a reader with the default refused as
damaged. Now such an int is refused naming its place, before the file is touched; 4300 digits round trip."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import optkern
from optkern.regularize import save_state


@pytest.mark.parametrize("sign", [1, -1])
def test_the_largest_int_a_reader_converts_round_trips(tmp_path, sign):
    n = sign * (10**4300 - 1)
    path = optkern.save(tmp_path / "ck.npz", x={"k": [n]}, y=n)
    got = optkern.load(path)
    assert got["x"] == {"k": [n]} and got["y"] == n


@pytest.mark.parametrize("raise_limit", [False, True])
def test_a_longer_int_is_refused_naming_its_place_and_the_old_file_stays(tmp_path, raise_limit):
    old = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else None
    if raise_limit and old is not None:  # (a file this process could write, but others not read)
        sys.set_int_max_str_digits(0)
    path = optkern.save(tmp_path / "ck.npz", w=np.arange(3.0))
    before = (tmp_path / "ck.npz").read_bytes()
    try:
        with pytest.raises(
            ValueError, match=r"^x\['k'\]\[1\]: cannot save an integer of more than 4300 decimal digits"
        ):
            optkern.save(path, w=np.arange(3.0), x={"k": [1, -(10**4300)]})
        with pytest.raises(ValueError, match=r"^y: cannot save an integer of more than 4300"):
            optkern.save(path, y=10**5000)
        with pytest.raises(ValueError, match="cannot save an integer of more than 4300"):
            save_state(tmp_path / "state.npz", {"n": 10**5000})
    finally:
        if old is not None:
            sys.set_int_max_str_digits(old)
    assert (tmp_path / "ck.npz").read_bytes() == before
    assert not (tmp_path / "state.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]  # (no temporary left)
