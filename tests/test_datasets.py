"""The bundled digits and the checks on users' data files."""
import numpy as np
import pytest

from optkern.datasets import DataError, load_digits, load_file


def test_digits_shape_and_range():
    d = load_digits()
    assert d.x.shape == (1797, 64) and d.y.shape == (1797,)
    assert d.x.dtype == np.float32 and 0.0 <= d.x.min() and d.x.max() == 1.0
    assert d.num_classes == 10 and set(np.unique(d.y)) == set(range(10))


def test_split_is_a_reproducible_partition():
    d = load_digits()
    tr, va = d.split(0.2, seed=3)
    tr2, va2 = d.split(0.2, seed=3)
    assert len(tr.y) + len(va.y) == 1797 and len(va.y) == 359
    np.testing.assert_array_equal(va.x, va2.x)
    rows = {r.tobytes() for r in d.x}
    assert {r.tobytes() for r in tr.x} | {r.tobytes() for r in va.x} <= rows


def test_npz_and_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = rng.integers(0, 3, size=40)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_file(str(tmp_path / "d.npz"))
    assert d.x.shape == (40, 5) and d.num_classes == 3
    np.testing.assert_allclose(d.x.mean(0), 0, atol=1e-5)  # standardized
    np.savetxt(tmp_path / "d.csv", np.column_stack([x, y]), delimiter=",", header="a,b,c,d,e,label")
    c = load_file(str(tmp_path / "d.csv"))
    np.testing.assert_array_equal(c.y, y)
    np.testing.assert_allclose(c.x, d.x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, msg", [
    (lambda p: None, "no such file"),
    (lambda p: np.savez(p, a=np.ones(3)), "must hold arrays 'x' and 'y'"),
    (lambda p: np.savez(p, x=np.ones((20, 2)), y=np.ones(19)), "n == len(y)"),
    (lambda p: np.savez(p, x=np.full((20, 2), np.nan), y=np.arange(20) % 2), "NaN"),
    (lambda p: np.savez(p, x=np.ones((20, 2)), y=np.arange(20)), "does not fit"),
    (lambda p: np.savez(p, x=np.ones((20, 2)), y=np.full(20, 1.5)), "non-negative integers"),
])
def test_bad_npz(tmp_path, make, msg):
    p = tmp_path / "bad.npz"
    make(p)
    with pytest.raises(DataError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        load_file(str(p))


def test_bad_csv_and_extension(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("\n".join("1" for _ in range(20)))
    with pytest.raises(DataError, match="feature column"):
        load_file(str(p))
    q = tmp_path / "words.csv"
    q.write_text("a,b\n1,x\n")
    with pytest.raises(DataError, match="numeric"):
        load_file(str(q))
    r = tmp_path / "d.txt"
    r.write_text("1,2")
    with pytest.raises(DataError, match="unsupported"):
        load_file(str(r))
