"""optkern.torch's joined step counts (one NumPy array over a run's ``state[p]["step"]`` tensors)
advance as torch's ``step_t += 1`` advances each: a whole count is filled with count + 1 (cheaper
than NumPy's add after a large step, its code cold), which must round as the add rounds (float32
counts past 2**24 stop moving) and keep the tensors' dtype. (A count that is not whole is refused
by the step's checks.)"""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

STEPS = [
    (torch.tensor(float(2**24 - 2)), 4),  # float32: 2**24 - 1, 2**24, then stuck (2**24 + 1 rounds down)
    (torch.tensor(float(2**24 + 2)), 3),  # float32: 2**24 + 3 rounds to 2**24 + 4 (ties to even)
    (torch.tensor(5.0, dtype=torch.float64), 3),
    (torch.tensor(7, dtype=torch.int64), 3),  # (an integer step tensor stays an integer)
]


def _model():
    ws = [torch.nn.Parameter(torch.linspace(-1.0, 1.0, n)) for n in (3, 4, 5)]
    for w in ws:
        w.grad = torch.full_like(w, 0.5)
    return ws


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("step, steps", STEPS, ids=lambda v: str(v.dtype if hasattr(v, "dtype") else v))
def test_joined_step_counts_advance_as_torchs(name, step, steps):
    ws = _model()
    opt = getattr(ot, name)(ws, lr=1e-3)
    opt.step()  # (its state made)
    expected = []
    for w in ws:
        opt.state[w]["step"] = step.clone()
        expected.append(step.clone())
    for _ in range(steps):
        opt.step()
        for e in expected:
            e += 1  # (torch's step_t += 1)
        for w, e in zip(ws, expected):
            got = opt.state[w]["step"]
            assert got.dtype == e.dtype
            assert torch.equal(got, e), (got, e)
