"""Hunt 39g: an exporter that only speaks the unversioned DLPack protocol (``__dlpack__()`` with no
``max_version``) carries no writability flag, so NumPy views it read-only; its params were refused
with a bare "array is read-only" though its memory is writable. Still refused (optkern cannot
tell a truly read-only buffer from it), now saying why and what to pass instead. A versioned
exporter of a read-only buffer keeps the bare refusal; of a writable one, it is written."""

import numpy as np
import pytest

from dlpack_exporters import HINT, Old
from optkern.functional import sgd_
from optkern.hessian.operators import as_operator
from optkern.optim import SGD, Adam


class New(Old):
    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        return self.a.__dlpack__(stream=stream, max_version=max_version, dl_device=dl_device, copy=copy)


def _ro(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_an_unversioned_exporter_says_why_it_is_read_only(cls):
    a = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"\['params'\]\[0\]: " + HINT) as e:
        cls([Old(a)], lr=0.1)
    assert "max_version" in str(e.value) and "NumPy or CuPy" in str(e.value)
    assert not a.any()


def test_the_functional_form_says_it_too():
    a = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"params\[0\]: " + HINT):
        sgd_([Old(a)], [np.ones(4, np.float32)], lr=0.1)
    assert not a.any()


def test_an_out_argument_says_it_too():
    op = as_operator(np.eye(4, dtype=np.float32))
    out = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"out: " + HINT):
        op.matvec(np.ones(4, np.float32), out=Old(out))
    assert not out.any()


@pytest.mark.parametrize("wrap", [Old, New])
def test_a_truly_read_only_buffer_stays_refused(wrap):
    """(NumPy's own unversioned export of a read-only array is refused by NumPy: no view at all.)"""
    a = _ro(np.zeros(4, np.float32))
    with pytest.raises((TypeError, ValueError), match=r"\['params'\]\[0\]: (array is read-only|cannot view)"):
        SGD([wrap(a)], lr=0.1).step([np.ones(4, np.float32)])
    assert not a.any()


def test_a_versioned_read_only_export_gets_no_hint():
    with pytest.raises(ValueError, match=r"array is read-only$"):
        SGD([New(_ro(np.zeros(4, np.float32)))], lr=0.1)


def test_a_versioned_writable_export_is_written():
    a = np.zeros(4, np.float32)
    SGD([New(a)], lr=0.5).step([np.ones(4, np.float32)])
    np.testing.assert_array_equal(a, -0.5)
