"""``philox4x32_10``'s counter and key converted by name (hunt 53c).

The raw generator took ``counter`` (4 words) and ``key`` (2 words) through pybind11's ``std::array``
caster: a wrong length, a float, None, a str or a word past uint32 gave its unnamed "incompatible
function arguments", and True ran as 1. Both are ``checks::IntArray`` now (optkern/named_reals.hpp,
the ``def_named`` table): the list's type and length named by the argument, each word by
``counter[i]`` / ``key[i]`` with the integer rule of every native integer (``checks::integer``: ints
and NumPy integers run, bools are refused, a word outside uint32 is a ValueError). The words
themselves are the known answers' (tests/test_random.py); the signature and stub are unchanged.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from optkern import _cpu

CTR, KEY = [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0]
WANT = [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]  # (Random123's known answer)
U32 = 2**32 - 1


def test_known_answer_and_what_runs():
    assert list(_cpu.philox4x32_10(CTR, KEY)) == WANT
    assert list(_cpu.philox4x32_10(tuple(CTR), tuple(KEY))) == WANT
    assert list(_cpu.philox4x32_10(np.array(CTR, np.uint32), np.array(KEY, np.uint64))) == WANT
    assert list(_cpu.philox4x32_10([np.int64(w) for w in CTR], [np.uint32(w) for w in KEY])) == WANT
    assert len(_cpu.philox4x32_10([U32] * 4, [0, U32])) == 4


@pytest.mark.parametrize("arg", ["counter", "key"])
@pytest.mark.parametrize(("bad", "got"), [(None, "NoneType"), (5, "int"), ("abcd", "str"), (b"ab", "bytes")])
def test_a_non_list_is_named(arg, bad, got):
    n = 4 if arg == "counter" else 2
    kw = {"counter": CTR, "key": KEY, arg: bad}
    with pytest.raises(TypeError, match=rf"^{arg}: expected a list of {n} integers, got {got}$"):
        _cpu.philox4x32_10(**kw)


@pytest.mark.parametrize(("arg", "words"), [("counter", [1, 2, 3]), ("counter", [1] * 5), ("key", [1]), ("key", [])])
def test_a_wrong_length_is_named(arg, words):
    n = 4 if arg == "counter" else 2
    kw = {"counter": CTR, "key": KEY, arg: words}
    with pytest.raises(ValueError, match=rf"^{arg}: expected {n} integers, got {len(words)}$"):
        _cpu.philox4x32_10(**kw)


@pytest.mark.parametrize("arg", ["counter", "key"])
@pytest.mark.parametrize(
    ("bad", "err", "message"),
    [
        (1.0, TypeError, "expected an integer, got float"),
        (np.float32(2.0), TypeError, "expected an integer, got numpy.float32"),
        (None, TypeError, "expected an integer, got NoneType"),
        ("7", TypeError, "expected an integer, got str"),
        (True, TypeError, "expected an integer, got bool"),
        (np.True_, TypeError, "expected an integer, got bool"),
        (U32 + 1, ValueError, f"must be <= {U32}, got {U32 + 1}"),
        (2**70, ValueError, f"must be <= {U32}, got {2**70}"),
        (-1, ValueError, "must be >= 0, got -1"),
    ],
)
def test_a_wrong_word_is_named_by_its_index(arg, bad, err, message):
    kw = {"counter": list(CTR), "key": list(KEY)}
    kw[arg][1] = bad
    with pytest.raises(err, match=rf"^{arg}\[1\]: {re.escape(message)}$"):
        _cpu.philox4x32_10(**kw)


def test_the_signature_is_unchanged():
    """The caster shows the std::array's type: the stub's fixed-size word lists."""
    doc = _cpu.philox4x32_10.__doc__.splitlines()[0]
    assert (
        'counter: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(4)"]'
        in doc
    )
    assert '"FixedSize(2)"]) -> typing.Annotated[list[int], "FixedSize(4)"]' in doc
