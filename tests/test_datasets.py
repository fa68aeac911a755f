"""The bundled digits and the checks on users' data files."""

from pathlib import Path

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


def _write_npy(path, a):
    with open(path, "wb") as f:
        np.save(f, a)


@pytest.mark.parametrize(
    "make, msg",
    [
        (lambda p: None, "no such file"),
        (lambda p: np.savez(p, a=np.ones(3)), "must hold arrays 'x' and 'y'"),
        (lambda p: np.savez(p, x=np.ones((20, 2)), y=np.ones(19)), "n == len(y)"),
        (lambda p: np.savez(p, x=np.full((20, 2), np.nan), y=np.arange(20) % 2), "NaN"),
        (lambda p: np.savez(p, x=np.ones((20, 2)), y=np.arange(20)), "does not fit"),
        (lambda p: np.savez(p, x=np.ones((20, 2)), y=np.full(20, 1.5)), "labels must be integers"),
        (lambda p: np.savez(p, x=np.ones((20, 2)), y=np.array(1)), "one-dimensional"),
        (lambda p: np.savez(p, x=np.ones((20, 0)), y=np.arange(20) % 2), "no feature columns"),
        (lambda p: np.savez(p, x=np.ones((20, 2)) * 1j, y=np.arange(20) % 2), "real numbers"),
        (lambda p: np.savez(p, x=np.ones((20, 2)), y=np.array([b"a", b"b"] * 10)), "integers or class names"),
        (lambda p: np.savez(p, x=np.ones((3000, 2)), y=np.arange(3000) % 1500), "not a classification"),
        (lambda p: np.savez(p, x=np.ones((20, 2)), y=np.full(20, 7)), "at least 2 classes"),
        (lambda p: Path(p).write_bytes(b"not a zip"), "not an .npz (zip) archive"),
        (lambda p: Path(p).write_text("1,2,3\n"), "not an .npz (zip) archive"),  # np.load: "pickled data"
        (lambda p: _write_npy(p, np.ones(3)), "not an .npz archive"),  # an .npy renamed
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
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
    q.write_text("a,b\nx,1\n")  # (a word in a feature column: the label column alone may hold words)
    with pytest.raises(DataError, match="numeric"):
        load_file(str(q))
    r = tmp_path / "d.txt"
    r.write_text("1,2")
    with pytest.raises(DataError, match="unsupported"):
        load_file(str(r))


@pytest.mark.filterwarnings("error")  # numpy warns on an empty file: that must not leak
@pytest.mark.parametrize("text, msg", [("", "empty"), ("\n \n# a comment\n", "empty"), ("a,b,label\n", "no data rows")])
def test_empty_csv(tmp_path, text, msg):
    p = tmp_path / "e.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=msg):
        load_file(str(p))


@pytest.mark.parametrize("first", ["0.000000e+00,0,0", "1e-3,-2,1", "inf,1,0", "nan,1,0"])
def test_a_numeric_first_row_is_data_not_a_header(tmp_path, first):
    p = tmp_path / "d.csv"
    p.write_text("\n".join([first] + [f"{i},{i * i},{i % 2}" for i in range(1, 20)]) + "\n")
    if "inf" in first or "nan" in first:  # kept, so the finiteness check sees it
        with pytest.raises(DataError, match="NaN or Inf"):
            load_file(str(p))
    else:
        assert load_file(str(p)).x.shape == (20, 2)


def test_csv_header_and_byte_order_mark(tmp_path):
    rows = [f"{i},{i * i},{i % 2}" for i in range(20)]
    for name, text, enc in [
        ("h.csv", "\n".join(["x1,x2,label", *rows]), "utf-8"),
        ("bom.csv", "\n".join(rows), "utf-8-sig"),
    ]:
        (tmp_path / name).write_text(text, encoding=enc)
        assert load_file(str(tmp_path / name)).x.shape == (20, 2), name


def test_huge_features_standardize_without_overflow(tmp_path):
    x = np.random.default_rng(0).standard_normal((20, 2))
    x[:, 0] *= 1e300  # its variance overflows float64, the values overflow float32
    np.savez(tmp_path / "big.npz", x=x, y=np.arange(20) % 2)
    d = load_file(str(tmp_path / "big.npz"))
    assert np.all(np.isfinite(d.x))
    np.testing.assert_allclose(d.x.std(0), 1, rtol=1e-5)


@pytest.mark.parametrize(
    "labels, note",
    [
        (np.arange(30) % 3 + 1, "labels {1, 2, 3} renumbered 0..2"),  # numbered from 1
        (np.where(np.arange(30) % 2, 1, -1), "labels {-1, 1} renumbered 0..1"),  # -1 / +1
        (np.array([3, 7, 9, 12, 40] * 6) * 1.0, "labels {3, 7, 9, ..., 40} renumbered 0..4"),  # gaps, floats
        ((np.arange(30) % 2) * 2.0**62, "renumbered 0..1"),  # huge but integral
        (np.arange(30) % 3, None),  # already 0..K-1
    ],
)
def test_labels_of_any_values_are_renumbered_without_empty_classes(tmp_path, labels, note):
    x = np.random.default_rng(1).standard_normal((30, 2))
    np.savez(tmp_path / "d.npz", x=x, y=labels)
    d = load_file(str(tmp_path / "d.npz"))
    values = np.unique(labels)
    assert d.num_classes == len(values) and set(np.unique(d.y)) == set(range(len(values)))
    np.testing.assert_array_equal(values[d.y], labels)  # order kept: the i-th smallest label is class i
    renumbered = [n for n in d.notes if "renumbered" in n]
    if note is None:
        assert not renumbered
    else:
        assert len(renumbered) == 1 and note in renumbered[0], renumbered
    assert any("standardized" in n for n in d.notes)


def test_images_are_flattened_and_the_report_note_says_so(tmp_path):
    x = np.random.default_rng(0).standard_normal((20, 4, 3, 2))
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(20) % 2)
    d = load_file(str(tmp_path / "img.npz"))
    assert d.x.shape == (20, 24)
    assert "x of shape (20, 4, 3, 2) flattened to 24 features per sample" in d.notes
    np.testing.assert_allclose(d.x.std(0), 1, rtol=1e-5)


def test_csv_label_column_by_index_or_header_name(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 30)
    x = rng.standard_normal((30, 2))
    rows = [f"{y[i]},{x[i, 0]},{x[i, 1]}" for i in range(30)]
    (tmp_path / "first.csv").write_text("\n".join(["kind,a,b", *rows]) + "\n")
    for col in (0, "0", -3, "kind"):
        d = load_file(str(tmp_path / "first.csv"), label_column=col)
        np.testing.assert_array_equal(d.y, y)
        assert d.x.shape == (30, 2)
    assert "label from the CSV's 'kind'" in d.notes
    # The default (last column) holds fractional values: the error points at --label-column.
    with pytest.raises(DataError, match="last column: choose another with --label-column"):
        load_file(str(tmp_path / "first.csv"))
    with pytest.raises(DataError, match="label column 'species' not found .the header has kind, a, b"):
        load_file(str(tmp_path / "first.csv"), label_column="species")
    with pytest.raises(DataError, match="label column 3 is out of range for 3 columns"):
        load_file(str(tmp_path / "first.csv"), label_column=3)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(DataError, match="applies to .csv files"):
        load_file(str(tmp_path / "d.npz"), label_column=0)
