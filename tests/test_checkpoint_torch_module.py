"""``optkern.load`` into a torch module: a saved state dict that does not fit the module (other
shapes, dtypes, missing or unexpected keys) is refused before any target is written, with a
ValueError naming the file and the entry (not torch's RuntimeError from inside its loader)."""

from __future__ import annotations

import re

import pytest

import optkern

torch = pytest.importorskip("torch")


def _model(out: int = 2, dtype=None):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, out))
    return m if dtype is None else m.to(dtype)


def _saved(tmp_path):
    m = _model()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    m(torch.randn(5, 4)).sum().backward()
    opt.step()
    path = str(tmp_path / "m.npz")
    optkern.save(path, model=m, opt=opt, w=m[0].weight.detach().numpy().copy())
    return path, m


def _snapshot(model, opt, w):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        repr(opt.state_dict()),
        w.copy(),
    )


def _unchanged(before, model, opt, w) -> None:
    ms, os_, ws = before
    now = model.state_dict()
    assert now.keys() == ms.keys() and all(torch.equal(now[k], ms[k]) for k in ms)
    assert repr(opt.state_dict()) == os_
    assert (w == ws).all()


@pytest.mark.parametrize(
    "make, entry, says",
    [
        (
            lambda: _model(out=5),
            "['2.weight']",
            "saved tensor is torch.float32 (2, 3), the module's is torch.float32 (5, 3)",
        ),
        (
            lambda: _model(dtype=torch.float64),
            "['0.weight']",
            "saved tensor is torch.float32 (3, 4), the module's is torch.float64 (3, 4)",
        ),
        (
            lambda: torch.nn.Sequential(*_model(), torch.nn.Linear(2, 2)),
            "",
            "does not fit the Sequential: missing key(s) '3.weight', '3.bias'",
        ),
        (
            lambda: torch.nn.Sequential(*list(_model())[:2]),
            "",
            "does not fit the Sequential: unexpected key(s) '2.weight', '2.bias'",
        ),
    ],
    ids=["shape", "dtype", "missing", "unexpected"],
)
def test_a_module_that_does_not_fit_is_refused_before_anything_is_written(tmp_path, make, entry, says):
    path, _ = _saved(tmp_path)
    model = make()
    # targets that fit, listed first (restored first without the check): an optimizer of a model
    # of the saved layout, an array
    opt = torch.optim.Adam(_model().parameters(), lr=0.1)
    w = _model()[0].weight.detach().numpy().copy() * 0
    before = _snapshot(model, opt, w)
    with pytest.raises(ValueError, match=re.escape(f"{path}['model']{entry}") + r"(: )?" + re.escape(says)):
        optkern.load(path, w=w, opt=opt, model=model)
    _unchanged(before, model, opt, w)


def test_a_module_that_fits_still_round_trips(tmp_path):
    path, m = _saved(tmp_path)
    m2 = _model()
    with torch.no_grad():
        for p in m2.parameters():
            p.zero_()
    optkern.load(path, model=m2)
    a, b = m.state_dict(), m2.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
