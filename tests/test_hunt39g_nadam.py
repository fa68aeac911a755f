"""Hunt 39g: NAdam refuses a ``betas[0]`` that rounds to 1 in float32 for the real reason.

The refusal said the "momentum product would stay 1", which is wrong at the default
momentum_decay: each factor mu_t = beta1 (1 - 0.96^(t momentum_decay) / 2) is about 0.5 there, and
torch.optim.NAdam's float32 steps are finite. What the check prevents: once t * momentum_decay
passes about 407.5, mu_t itself rounds to 1 in float32 (with a beta1 that does), and a momentum
product that is still 1 -- the first step when momentum_decay > ~407.5, or a resumed state that
holds 1 -- makes the step divide by 1 - mu_product = 0 (torch: ZeroDivisionError). The refusal is
kept (a product of 1 is a state the loader takes) and now says so."""

import numpy as np
import pytest

from optkern.functional import nadam_
from optkern.optim import NAdam

B1 = 1 - 1e-9  # < 1 in float64, 1 in float32
WHY = r"momentum factor mu_t .* rounds to 1 once t \* momentum_decay passes about 407\.5"


def test_the_class_names_betas0_and_the_real_reason():
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"\['betas'\]\[0\]: 0\.999999999 rounds to 1 in float32") as e:
        NAdam([p], betas=(B1, 0.999)).step([np.ones(3, np.float32)])
    msg = str(e.value)
    assert "would stay 1" not in msg
    assert __import__("re").search(WHY, msg), msg
    assert "1 - mu_product = 0" in msg and "0.9999999403953552" in msg
    assert (p == 1).all()


def test_the_functional_form_says_the_same():
    p = np.ones(3, np.float32)
    st = [np.zeros(3, np.float32), np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match=WHY):
        nadam_([p], [np.ones(3, np.float32)], [st[0]], [st[1]], step=1, beta1=B1)
    assert (p == 1).all() and not st[0].any()


def test_float64_takes_it():
    p = np.ones(3)
    NAdam([p], betas=(B1, 0.999)).step([np.ones(3)])
    assert np.isfinite(p).all() and (p < 1).all()


def test_the_reason_holds_in_torch_float32():
    """torch takes the beta and divides by zero exactly where the message says: the first step at
    momentum_decay 410, a resumed mu_product of 1 at step 110,000 (t * 0.004 = 440)."""
    torch = pytest.importorskip("torch")
    t = torch.ones(3)
    opt = torch.optim.NAdam([t], betas=(B1, 0.999), momentum_decay=410.0, foreach=False)
    t.grad = torch.ones(3)
    with pytest.raises(ZeroDivisionError):
        opt.step()
    opt = torch.optim.NAdam([t], betas=(B1, 0.999), foreach=False)
    opt.step()  # (finite at the default momentum_decay: mu_1 ~ 0.5)
    assert torch.isfinite(t).all()
    opt.state[t]["step"].fill_(110_000.0)
    opt.state[t]["mu_product"].fill_(1.0)
    with pytest.raises(ZeroDivisionError):
        opt.step()
