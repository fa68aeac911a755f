"""optkern.regularize defects found in hunt 38c: EarlyStopping's checkpoint file and
``save_state`` / ``load_state`` took any path unchecked, where ``optkern.save`` / ``load`` check
theirs by name (one rule now, ``_atomic.checked_path``): ``EarlyStopping(path=a_directory)`` was
taken and its first improving check raised ``IsADirectoryError`` / ``NotADirectoryError`` (naming
a temporary file), ``save_state(5, ...)`` raised os's TypeError naming nothing, a bytes path
"Can't mix strings and bytes in path components", and ``load_state(a_directory)`` an OSError."""

import os

import numpy as np
import pytest

from optkern.regularize import EarlyStopping, load_state, save_state


@pytest.mark.parametrize("make", [lambda d: str(d), lambda d: str(d) + os.sep, lambda d: ""])
def test_early_stopping_refuses_a_path_that_names_no_file_at_construction(make, tmp_path):
    with pytest.raises(ValueError, match=r"^path: "):
        EarlyStopping(path=make(tmp_path))


def test_early_stopping_takes_a_bytes_path(tmp_path):
    stopper = EarlyStopping(path=os.fsencode(tmp_path / "best.npz"))
    stopper.step(1.0, state={"w": np.ones(2)})
    np.testing.assert_array_equal(stopper.restore()["w"], np.ones(2))


@pytest.mark.parametrize("make", [lambda d: str(d), lambda d: str(d) + os.sep, lambda d: ""])
def test_save_state_refuses_a_path_that_names_no_file_before_writing(make, tmp_path):
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=r"^path: "):
        save_state(make(tmp_path), {"w": np.ones(2)})
    assert sorted(os.listdir(tmp_path)) == before


def test_save_and_load_state_name_a_path_of_the_wrong_type(tmp_path):
    with pytest.raises(TypeError, match=r"^path: expected a str, bytes or os.PathLike, got int"):
        save_state(5, {"w": np.ones(2)})
    with pytest.raises(TypeError, match=r"^path: expected a str, bytes or os.PathLike, got NoneType"):
        load_state(None)


def test_save_and_load_state_take_a_bytes_path(tmp_path):
    path = os.fsencode(tmp_path / "s.npz")
    save_state(path, {"w": np.arange(3.0)})
    np.testing.assert_array_equal(load_state(path)["w"], np.arange(3.0))


def test_load_state_names_a_directory(tmp_path):
    with pytest.raises(ValueError, match=r"^path: .* is a directory"):
        load_state(tmp_path)


@pytest.mark.parametrize("saved, mine", [("max", "min"), ("min", "max")])
def test_early_stopping_refuses_a_state_of_the_other_mode(saved, mine):
    """``best`` is a best only in its run's mode: a mode "max" run's best accuracy, loaded into a
    mode "min" stopper, was taken silently (every later accuracy then counted as no improvement).
    The state names its mode now; a state without it (older) still loads."""
    run = EarlyStopping(mode=saved, patience=3)
    for m in (0.5, 0.7, 0.6):
        run.step(m)
    sd = run.state_dict()
    assert sd["mode"] == saved
    stopper = EarlyStopping(mode=mine, patience=3)
    before = stopper.state_dict()
    with pytest.raises(ValueError, match=rf"^state\['mode'\]: expected '{mine}', got '{saved}'"):
        stopper.load_state_dict(sd)
    assert stopper.state_dict() == before
    same = EarlyStopping(mode=saved, patience=3)
    same.load_state_dict(sd)
    assert same.state_dict() == {**sd, "kept": False}
    older = {k: v for k, v in sd.items() if k != "mode"}
    same.load_state_dict(older)
    assert [same.step(m) for m in (0.1, 0.1, 0.1)] == [run.step(m) for m in (0.1, 0.1, 0.1)]
