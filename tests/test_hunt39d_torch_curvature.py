"""optkern.torch.hessian_operator over ``batches``: each batch's product is weighted by its size, the
``len`` of its first entry. A first entry without a length (a 0-d tensor or array: a per-batch
scalar) raised an unnamed ``TypeError: len() of a 0-d tensor`` at the first product; an empty
batch (its mean loss NaN) was refused as a "non-finite loss" although it weighs nothing; a batch
that is a dict (a DataLoader over a dataset of dicts) was weighted by its number of keys, not its
number of samples: uneven batches gave a wrong Hessian, silently."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

torch.set_num_threads(1)


def _setup():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
    x = torch.randn(10, 3, dtype=torch.float64, generator=g)
    return w, x


def _explicit(w, x) -> np.ndarray:
    """The Hessian of mean((x @ w)^4) in w, formed by torch."""
    return torch.autograd.functional.hessian(lambda v: ((x @ v) ** 4).mean(), w.detach()).numpy()


def _dense(op) -> np.ndarray:
    return np.stack([op.matvec(e) for e in np.eye(op.shape[0])], axis=1)


def test_a_batch_whose_first_entry_is_0d_counts_as_one_sample():
    w, _ = _setup()
    scales = [torch.tensor(1.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)]
    H = ot.hessian_operator(lambda s: s * (w**4).sum(), [w], batches=[(s,) for s in scales])
    want = 2.0 * 12.0 * np.diag(w.detach().numpy() ** 2)  # the mean of 1 and 3 times diag(12 w^2)
    np.testing.assert_allclose(_dense(H), want, rtol=1e-13)
    H = ot.hessian_operator(lambda s: float(s) * (w**4).sum(), [w], batches=[(np.float64(1.0),), (np.array(3.0),)])
    np.testing.assert_allclose(_dense(H), want, rtol=1e-13)


def test_an_empty_batch_weighs_nothing_and_is_not_a_non_finite_loss():
    w, x = _setup()
    fn = lambda a: ((a @ w) ** 4).mean()
    H = ot.hessian_operator(fn, [w], batches=[(x[:4],), (x[4:4],), (x[4:],)])
    want = _explicit(w, x)
    np.testing.assert_allclose(_dense(H), want, rtol=1e-12)
    with pytest.raises(ValueError, match="batches: got no batches"):
        ot.hessian_operator(fn, [w], batches=[(x[:0],)]).matvec(np.ones(3))


def test_dict_batches_are_weighted_by_their_samples_not_their_keys():
    w, x = _setup()
    t = torch.zeros(10, dtype=torch.float64)
    fn = lambda b: ((b["x"] @ w) ** 4).mean() + 0 * b["t"].sum()
    batches = [{"x": x[:8], "t": t[:8]}, {"x": x[8:], "t": t[8:]}]  # 8 and 2 samples
    H = ot.hessian_operator(fn, [w], batches=batches)
    np.testing.assert_allclose(_dense(H), _explicit(w, x), rtol=1e-12)
