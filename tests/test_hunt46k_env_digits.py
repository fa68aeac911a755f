"""optkern's integer variables with more digits than Python's int() converts (4300): OPTKERN_POOL_BYTES
or OPTKERN_SERIAL_BELOW of 5000 digits raised int()'s own ValueError ("Exceeds the limit (4300 digits)
for integer string conversion"), naming no variable, at ``import optkern`` (and as the optkern command's
one-line error). Now a pool limit past int64 is refused naming OPTKERN_POOL_BYTES with the value's
length, not its 5000 digits; a serial bound past int64 reads as int64's max, as cpp/parallel_cost.cpp's
strtoll reads it (every kernel serial), whatever its length."""

from __future__ import annotations

import pytest

from optkern import _env

HUGE = "1" * 5000


def test_a_pool_limit_of_5000_digits_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("OPTKERN_POOL_BYTES", HUGE)
    with pytest.raises(ValueError, match=r"^OPTKERN_POOL_BYTES: must be <= 9223372036854775807 \(bytes\), got ") as e:
        _env.pool_bytes()
    assert "5000 digits" in str(e.value) and len(str(e.value)) < 200
    with pytest.raises(ValueError, match="^OPTKERN_POOL_BYTES: "):
        _env.check()


@pytest.mark.parametrize(
    ("raw", "want"),
    [(HUGE, 2**63 - 1), ("0" * 5000 + "12", 12), (str(2**63), 2**63 - 1), (str(2**63 - 1), 2**63 - 1), ("0", 0)],
)
def test_a_serial_bound_of_any_length_reads_as_the_native_code_reads_it(monkeypatch, raw, want):
    monkeypatch.setenv("OPTKERN_SERIAL_BELOW", raw)
    assert _env.serial_below() == want
    _env.check()


def test_leading_zeros_do_not_count_against_the_pool_limit(monkeypatch):
    monkeypatch.setenv("OPTKERN_POOL_BYTES", "0" * 5000 + "4096")
    assert _env.pool_bytes() == 4096
