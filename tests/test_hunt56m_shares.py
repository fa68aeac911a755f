"""Review of the 56th session, item 2: "byte spans meet, then exact ``shares_memory``" was written three
times (``_array_checks.sharing_pairs`` and ``_overlap.exact_for_numpy`` unbounded, norm's ``_shares``
bounded), and norm's caught ``np.exceptions.TooHardError``, which NumPy < 1.25 (pyproject allows 1.22)
does not have. Now one helper, ``_overlap.shares``: bounded, conservative (True) when it gives up."""

from __future__ import annotations

import types

import numpy as np
import pytest

from optkern import _overlap, norm
from optkern._array_checks import sharing_pairs
from optkern._overlap import shares


@pytest.mark.parametrize("n", [1, 7, 1023])
def test_shares_is_exact_for_numpy_views(n):
    a = np.random.default_rng(n).standard_normal(2 * n + 2)
    assert not shares(a[::2], a[1::2])  # (interleaved: spans meet, no element in common)
    assert shares(a[::2], a[2::2])
    assert shares(a[: n + 1], a[n:])
    assert not shares(a[:n], a[n:])
    assert not shares(a, np.random.default_rng(n).standard_normal(3))
    c = np.zeros((n, 2))
    assert not shares(c[:, 0], c[:, 1])
    assert shares(c[:, 0], c.reshape(-1))


def test_shares_answers_shared_when_numpy_gives_up(monkeypatch):
    a = np.zeros(1023)
    monkeypatch.setattr(_overlap, "SHARES_MAX_WORK", 0)  # (np.shares_memory: TooHardError at once)
    assert shares(a[::2], a[1::2])  # (the safe answer)
    assert not shares(a[:500], a[500:])  # (bounds apart: decided before the bounded test)


def test_too_hard_error_is_found_on_numpy_without_the_exceptions_module():
    """NumPy 1.22-1.24 keeps TooHardError at its top level (``np.exceptions`` came in 1.25)."""

    class TooHard(Exception):
        pass

    old_numpy = types.SimpleNamespace(TooHardError=TooHard)  # (no ``exceptions``)
    assert _overlap.too_hard_error(old_numpy) is TooHard
    assert _overlap.too_hard_error(np) is np.exceptions.TooHardError


def test_shares_is_conservative_for_what_it_cannot_test():
    torch = pytest.importorskip("torch")
    a = np.zeros(8)
    assert shares(a, torch.zeros(8))  # (callers pass such pairs only once their spans met)


def test_the_callers_use_the_one_bounded_helper(monkeypatch):
    """With the work bound at 0 every interleaved pair is "shared" (the helper gives up): each caller
    follows it (sharing_pairs and exact_for_numpy were unbounded, so they said "not shared")."""
    a = np.zeros(10)
    run = np.zeros((3, 2), np.float32)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    assert list(sharing_pairs([a[::2], a[1::2]])) == []
    assert _overlap.exact_for_numpy([0], [a[::2]], [a[1::2]]) == []
    norm.batch_norm(x, running_mean=run[:, 0], running_var=run[:, 1], training=True)
    monkeypatch.setattr(_overlap, "SHARES_MAX_WORK", 0)
    assert list(sharing_pairs([a[::2], a[1::2]])) == [(0, 1)]
    assert _overlap.exact_for_numpy([0], [a[::2]], [a[1::2]]) == [0]
    with pytest.raises(ValueError, match="running_var: shares memory with running_mean"):
        norm.batch_norm(x, running_mean=run[:, 0], running_var=run[:, 1], training=True)
