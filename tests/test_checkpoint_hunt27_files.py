"""optkern.save / optkern.load, defects found in hunt 27: where the temporary file is written, the
mode of a checkpoint written over, the entry named by a target's own failed load, and values the
encoding changed without a word (extended-precision scalars, masked arrays)."""

from __future__ import annotations

import fractions
import os
import re
import stat

import numpy as np
import pytest

import optkern
import optkern.optim as O
from optkern import swa


def _cross_device_dir(tmp_path):
    """A directory on another file system than ``tmp_path`` (/dev/shm), or None."""
    shm = "/dev/shm"
    if not os.path.isdir(shm) or not os.access(shm, os.W_OK) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        return None
    return shm


def test_a_dotdot_after_a_symlinked_directory_writes_next_to_the_real_target(tmp_path):
    """``link/../ck.npz`` is resolved by the OS through the link; the temporary file was put next to
    the lexically normalized path instead (``abspath``): another directory, and on another file system
    the rename failed with EXDEV where ``open(path, "wb")`` works."""
    other = _cross_device_dir(tmp_path)
    if other is None:
        pytest.skip("no second file system (/dev/shm) to link to")
    inner = os.path.join(other, f"optkern-hunt27-{os.getpid()}", "inner")
    os.makedirs(inner)
    try:
        os.symlink(inner, tmp_path / "L")
        path = os.path.join(str(tmp_path), "L", "..", "ck.npz")
        optkern.save(path, x=np.arange(3))
        real = os.path.join(os.path.dirname(inner), "ck.npz")
        np.testing.assert_array_equal(optkern.load(real)["x"], np.arange(3))
        assert sorted(os.listdir(tmp_path)) == ["L"]  # nothing written beside the link
        assert sorted(os.listdir(os.path.dirname(inner))) == ["ck.npz", "inner"]
    finally:
        for name in ("ck.npz",):
            p = os.path.join(os.path.dirname(inner), name)
            if os.path.exists(p):
                os.unlink(p)
        os.rmdir(inner)
        os.rmdir(os.path.dirname(inner))


def test_a_path_ending_in_a_separator_is_refused_before_anything_is_written(tmp_path):
    """``ck.npz/`` names a directory: the whole file was written to a temporary ``..<pid>...tmp``
    and the rename then failed (NotADirectoryError naming the temporary)."""
    for path in (str(tmp_path / "ck.npz") + os.sep, str(tmp_path) + os.sep + "sub" + os.sep):
        with pytest.raises(ValueError, match=r"^path: .* ends with a path separator"):
            optkern.save(path, x=np.arange(3))
        with pytest.raises(ValueError, match=r"^path: .* ends with a path separator"):
            optkern.load(path)
    assert os.listdir(tmp_path) == []


def test_saving_over_a_checkpoint_keeps_its_permissions(tmp_path):
    """A checkpoint made private (0600) became readable by all (0666 & ~umask) at the next save:
    the rename put a new file in its place. ``open(path, "wb")`` keeps an existing file's mode."""
    path = tmp_path / "ck.npz"
    optkern.save(path, x=np.arange(3))
    os.chmod(path, 0o600)
    optkern.save(path, x=np.arange(4))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    np.testing.assert_array_equal(optkern.load(path)["x"], np.arange(4))
    os.chmod(path, 0o640)
    optkern.save(path, x=np.arange(5))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def _sched_and_opt(groups):
    from optkern import schedules as S

    opt = O.Adam([{"params": [np.ones(2, np.float32)]} for _ in range(groups)], lr=0.1)
    return S.Scheduler(opt, 1.0, relative=True)


def test_a_target_checked_only_by_its_own_load_is_still_named(tmp_path):
    """Targets without a check of their own before the restore (LBFGS, SAM, GradScaler, schedulers,
    averages...) raised their loader's bare message (``state_dict['state'][0]['old_dirs'][0]: ...``), not the
    ``<file>['<entry>']: ...`` that load promises for data that does not fit its target."""
    x = np.zeros(41)
    lb = O.LBFGS([x], lr=1.0, history_size=3)
    lb.step(lambda: (float((x**2).sum() + x.sum()), 2 * x + 1))
    avg = swa.AveragedParams([np.ones(3, np.float32)])
    path = optkern.save(tmp_path / "ck.npz", opt=lb, sched=_sched_and_opt(2), avg=avg)
    cases = [
        (dict(opt=O.LBFGS([np.zeros(40)], history_size=3)), r"\['opt'\]: state_dict\['state'\]\[0\]\['old_dirs'\]"),
        (dict(sched=_sched_and_opt(1)), r"\['sched'\]: state\['base_values'\]"),
        (dict(avg=swa.AveragedParams([np.ones(4, np.float32)])), r"\['avg'\]: state_dict\['averages'\]"),
    ]
    for targets, says in cases:
        with pytest.raises(ValueError, match="^" + re.escape(str(path)) + says):
            optkern.load(path, **targets)


# ---- the encoding: values it would have changed ---------------------------------------------


def test_extended_precision_scalars_round_trip_exactly(tmp_path):
    """A NumPy scalar that a float64 cannot hold (np.longdouble) was rounded to a float silently;
    it is saved as a 0-d array of its own dtype (as its array would be)."""
    x = np.longdouble(1) / np.longdouble(3)
    if float(x) == x:
        pytest.skip("np.longdouble is float64 here")
    got = optkern.load(optkern.save(tmp_path / "ck.npz", x=x, y=np.float32(0.1), z=np.float64(2.5)))
    assert got["x"].dtype == np.longdouble and got["x"] == x
    assert type(got["y"]) is float and got["y"] == np.float32(0.1) and type(got["z"]) is float  # (as before)


def test_numbers_that_a_float_cannot_hold_are_refused(tmp_path):
    path = optkern.save(tmp_path / "ck.npz", keep=1)
    with pytest.raises(TypeError, match=r"^third: cannot save the Fraction 1/3 exactly"):
        optkern.save(path, third=fractions.Fraction(1, 3))
    assert optkern.load(path) == {"keep": 1}
    got = optkern.load(optkern.save(path, half=fractions.Fraction(1, 2), nan=float("nan")))
    assert got["half"] == 0.5 and np.isnan(got["nan"])


def test_a_masked_array_is_refused_instead_of_losing_its_mask(tmp_path):
    """np.asarray drops the mask: the masked entries' hidden values were saved as data."""
    path = optkern.save(tmp_path / "ck.npz", keep=1)
    with pytest.raises(TypeError, match=r"^m\[0\]: cannot save a masked array"):
        optkern.save(path, m=[np.ma.array([1.0, 2.0], mask=[False, True])])
    assert optkern.load(path) == {"keep": 1}


def test_layout_is_documented_and_in_place_targets_keep_theirs(tmp_path):
    """Fortran-order and strided arrays come back C-contiguous with the same values (documented);
    a target restored in place keeps its own layout."""
    assert "C-contiguous" in optkern.checkpoint.__doc__
    f = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    got = optkern.load(optkern.save(tmp_path / "ck.npz", f=f, s=f[:, ::2], e=np.zeros((0, 3), order="F")))
    assert got["f"].flags.c_contiguous and np.array_equal(got["f"], f)
    assert np.array_equal(got["s"], f[:, ::2]) and got["e"].shape == (0, 3)
    target = np.zeros((3, 4), order="F")
    optkern.load(tmp_path / "ck.npz", f=target)
    assert target.flags.f_contiguous and np.array_equal(target, f)


def test_ctrl_c_during_the_restore_puts_the_earlier_targets_back(tmp_path):
    """A KeyboardInterrupt (not an Exception) in a later target's restore left the targets before it
    restored and the rest not: load's all or nothing held for errors only."""

    class Interrupted:
        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            raise KeyboardInterrupt

    saved = [np.arange(3.0), np.arange(4.0)]
    path = optkern.save(tmp_path / "ck.npz", params=saved, other=Interrupted())
    params = [np.zeros(3), np.zeros(4)]
    with pytest.raises(KeyboardInterrupt):
        optkern.load(path, params=params, other=Interrupted())
    assert not params[0].any() and not params[1].any()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path):
    """The rename replaced whatever ``path`` named by a regular file: a FIFO (and, for root, a device
    such as /dev/null) was gone after save. And load opened a FIFO and waited for a writer."""
    import threading

    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"^path: .* is not a regular file"):
        optkern.save(fifo, x=np.arange(3))
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe.npz"]

    def writer():  # (so that an open() of the FIFO returns instead of waiting)
        with open(fifo, "wb") as f:
            f.write(b"not a checkpoint")

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        with pytest.raises(ValueError, match=r"^path: .* is not a regular file"):
            optkern.load(fifo)
    finally:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets a writer still waiting finish
        t.join(5)
        os.close(fd)
