"""Regressions from a defect hunt in the MLP's, the initializers' and the data loaders' argument
checks: each case was silently wrong, or raised an error that did not name the caller's argument,
or wrote part of its result before it raised."""

from __future__ import annotations

import os

import numpy as np
import pytest

from optkern import init
from optkern.data import BatchLoader
from optkern.datasets import DataError, load_digits, load_file
from optkern.nn import MLP


def _mlp_problem(n=40):
    model = MLP([3, 4, 2], dtype=np.float64)
    rng = np.random.default_rng(0)
    p = model.init_params(0)
    buf = rng.standard_normal(n * 3)
    return model, p, buf, rng.integers(0, 2, n), rng.standard_normal(model.num_params)


@pytest.mark.parametrize("method", ["hvp", "ggn_vp"])
def test_product_out_sharing_memory_with_x_is_refused(method):
    # The backward pass writes the last layer's rows of `out` before it reads x for the first
    # layer's weight gradient: an `out` inside x's buffer gave a wrong product (error 3e-2), silently.
    model, p, buf, y, v = _mlp_problem()
    x = buf.reshape(-1, 3)
    before = buf.copy()
    with pytest.raises(ValueError, match="^out shares memory with x"):
        getattr(model, method)(p, x, y, v, out=buf[: model.num_params])
    np.testing.assert_array_equal(buf, before)  # nothing written
    # a separate buffer still gives the product
    out = np.empty(model.num_params)
    np.testing.assert_array_equal(getattr(model, method)(p, x, y, v, out=out), getattr(model, method)(p, x, y, v))


def test_label_out_of_range_is_named_y():
    model, p, buf, y, v = _mlp_problem()
    x = buf.reshape(-1, 3)
    for call in (
        lambda: model.loss(p, x, y + 2),
        lambda: model.loss_and_grad(p, x, y - 3),
        lambda: model.hvp(p, x, y + 2, v),
        lambda: model.ggn_block(p, x, y + 2, v[None]),
    ):
        with pytest.raises(ValueError, match=r"^y: values must be in \[0, 2\)"):
            call()


def test_batch_norm_with_one_row_names_the_callers_x():
    # (the hidden layer's batch norm named "x" with the hidden shape (1, 4), which the caller never passed)
    model = MLP([3, 4, 2], norm="batch", dtype=np.float64)
    with pytest.raises(ValueError, match=r"^x: .*more than 1 value per channel.*got 1 row \(shape \(1, 3\)\)"):
        model.loss(model.init_params(0), np.zeros((1, 3)), np.array([0]))
    MLP([3, 4, 2], norm="layer", dtype=np.float64).loss(model.init_params(0), np.zeros((1, 3)), np.array([0]))


@pytest.mark.parametrize(
    "fill, kw, name",
    [
        (init.normal_, dict(std=1e300), "std"),
        (init.normal_, dict(mean=1e300), "mean"),
        (init.uniform_, dict(a=-1e300, b=1e300), "a"),
        (init.uniform_, dict(a=0.0, b=1e39), "b"),
        (init.orthogonal_, dict(gain=1e300), "gain"),
        (init.xavier_normal_, dict(gain=1e300), "gain"),
        (init.xavier_uniform_, dict(gain=1e300), "gain"),
        (init.geometric_normal_, dict(c=1e300), "c"),
    ],
)
def test_hyper_parameters_past_the_arrays_dtype_are_refused_before_writing(fill, kw, name):
    # A float32 array filled with inf / NaN -- and, for normal_'s mean, NumPy's overflow warning (an
    # error under -W error) raised after the draws were written.
    w = np.full((3, 4), 7.0, np.float32)
    with pytest.raises(ValueError, match=f"^{name}: "):
        fill(w, rng=0, **kw)
    np.testing.assert_array_equal(w, 7.0)


def test_uniform_over_float64s_whole_range_is_finite():
    # (b - a) overflowed to inf for a = -1e308, b = 1e308: the array came out inf / NaN
    w = init.uniform_(np.zeros(1000), -1e308, 1e308, rng=0)
    assert np.all(np.isfinite(w)) and w.min() < -1e307 and w.max() > 1e307


def test_batch_loader_y_not_an_array_is_named_y():
    with pytest.raises(TypeError, match="^y: expected a numpy or cupy array"):
        BatchLoader(np.zeros((10, 1)), [0] * 10)


def test_load_digits_takes_a_dtype_name_and_refuses_integers():
    assert load_digits("float64").x.dtype == np.float64  # ('str' object is not callable)
    with pytest.raises(TypeError, match="^dtype: expected a floating dtype"):
        load_digits(np.int32)


def test_split_names_a_bad_seed():
    with pytest.raises(ValueError, match="^seed: "):
        load_digits().split(0.2, seed=-1)


def _write(tmp_path, name, text):
    path = os.path.join(tmp_path, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_load_file_refuses_an_integer_dtype(tmp_path):
    # standardized features cast to int32 were truncated to -1, 0, 1
    rows = "\n".join(f"{i},{i * 2},{i % 2}" for i in range(20))
    with pytest.raises(TypeError, match="^dtype: expected a floating dtype"):
        load_file(_write(tmp_path, "a.csv", rows), dtype=np.int32)


def test_integer_labels_past_2_to_the_53_stay_distinct(tmp_path):
    # compared through float64, 2**53 and 2**53 + 1 merged into one class ("need at least 2 classes")
    path = os.path.join(tmp_path, "big.npz")
    labels = np.array([2**53, 2**53 + 1, 2**53 + 2] * 10, dtype=np.int64)
    np.savez(path, x=np.arange(60.0).reshape(30, 2), y=labels)
    d = load_file(path)
    assert d.num_classes == 3
    np.testing.assert_array_equal(d.y, np.tile([0, 1, 2], 10))
    assert "9007199254740993" in d.notes[-1]  # the renumbering note shows the labels exactly
    unsigned = np.array([2**63, 2**63 + 1] * 10, dtype=np.uint64)
    np.savez(path, x=np.arange(40.0).reshape(20, 2), y=unsigned)
    assert load_file(path).num_classes == 2


def test_quoted_csv_header_names_are_found(tmp_path):
    # R's write.csv and spreadsheets quote the header: label_column="label" was "not found"
    rows = "\n".join(f"{i},{i * 2},{i % 2}" for i in range(20))
    d = load_file(_write(tmp_path, "r.csv", '"x1","x2","label"\n' + rows), label_column="label")
    assert d.x.shape == (20, 2) and d.notes[0] == "label from the CSV's 'label'"
    np.testing.assert_array_equal(d.y, np.arange(20) % 2)
    d = load_file(_write(tmp_path, "q.csv", '"x1","label","x2"\n' + rows), label_column=2)
    assert d.notes[0] == "label from the CSV's 'x2'"


def test_bad_csv_still_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="not a numeric CSV"):
        load_file(_write(tmp_path, "b.csv", "1,2,0\n" * 12 + '"a",2,1\n'))
