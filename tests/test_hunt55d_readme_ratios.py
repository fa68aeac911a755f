"""README's performance table: each torch/optkern ratio is the ratio of the two medians printed
beside it, rounded to the ratio's digits (a ratio of unrounded medians was printed beside rounded
ones: 16.5 / 11.1 = 1.486 as 1.48, 25.2 / 8.5 = 2.96 as 2.9), and each printed ratio is within
the rounding of its printed medians."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "| case | optkern ms | best PyTorch ms | torch/optkern | % of probe |"
NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")


def _rows() -> list[list[str]]:
    """The performance table's rows, as their cells."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADER) + 2  # (after the header and its |---| line)
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _printed(cell: str) -> tuple[Decimal, Decimal] | None:
    """A printed number (its leading number: '16.9 (fused)' is 16.9) and half its last digit's unit;
    None for '—'."""
    m = NUMBER.match(cell)
    if m is None:
        return None
    d = Decimal(m.group(1))
    return d, Decimal(1).scaleb(d.as_tuple().exponent) / 2


def _within(ours, theirs, ratio) -> bool:
    """Whether the printed ratio is the printed medians' quotient rounded to its digits (and so
    within their rounding: some medians that round to them have a quotient that rounds to it)."""
    (a, _), (b, _), (r, er) = ours, theirs, ratio
    return abs(b / a - r) <= er


ROWS = _rows()


def test_the_table_is_found_with_its_ratio_rows():
    assert len(ROWS) >= 10
    assert sum(_printed(r[3]) is not None for r in ROWS) >= 10


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_each_ratio_is_its_medians_ratio(row):
    ours, theirs, ratio = _printed(row[1]), _printed(row[2]), _printed(row[3])
    if ratio is None:
        assert theirs is None, f"{row[0]}: a PyTorch median without its ratio"
        return
    assert ours is not None and theirs is not None
    q = theirs[0] / ours[0]
    assert _within(ours, theirs, ratio), f"{row[0]}: {row[2]} / {row[1]} = {q:.4f}, printed {row[3]}"


def test_the_check_catches_a_wrong_ratio():
    """The checker itself: 16.5 / 11.1 = 1.486 is 1.49, not 1.48; 0.566 / 0.042 = 13.48 is 13.5."""
    a, b = _printed("11.1"), _printed("16.5 (fused)")
    assert not _within(a, b, _printed("1.48"))
    assert _within(a, b, _printed("1.49"))
    assert not _within(_printed("0.042"), _printed("0.566"), _printed("13.4"))
    assert _printed("—") is None and _printed("16.9 (fused)") == (Decimal("16.9"), Decimal("0.05"))
