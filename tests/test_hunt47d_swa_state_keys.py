"""``AveragedParams.load_state_dict`` took a state with an unknown key and ignored it (a typo'd
``'decya'`` beside the saved ``'decay'``, another object's entry), where the schedulers', loaders'
and stoppers' loads refuse one by name (``_backend.state_keys``). Now ValueError naming the key,
nothing assigned; SWALP's ``state_dict['swa']`` the same, named as the caller wrote it."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.swa import AveragedParams


def _pair():
    a = AveragedParams([np.ones(3)], mode="ema", decay=0.9)
    a.update([np.full(3, 2.0)])
    b = AveragedParams([np.zeros(3)], mode="swa")
    return a.state_dict(), b


@pytest.mark.parametrize("extra", ["decya", "module.weight", "n_averaged "])
def test_an_unknown_key_is_refused_and_nothing_changes(extra):
    sd, b = _pair()
    before = b.state_dict()
    with pytest.raises(ValueError, match=rf"^state_dict: unknown key '{extra}' \(an AveragedParams' state holds"):
        b.load_state_dict({**sd, extra: 0.5})
    after = b.state_dict()
    assert after["mode"] == before["mode"] and after["n_averaged"] == 0
    assert np.array_equal(after["averages"][0], np.zeros(3))


def test_the_saved_keys_still_load_and_a_missing_one_is_named():
    sd, b = _pair()
    b.load_state_dict(sd)
    assert (b.mode, b.decay, b.n_averaged) == ("ema", 0.9, 1)
    with pytest.raises(ValueError, match=r"^state_dict: missing 'decay'$"):
        b.load_state_dict({k: v for k, v in sd.items() if k != "decay"})
