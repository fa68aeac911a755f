"""Hunt 39g: optkern.swa / optkern.data entry points refuse bad input by name, before writing.

* ``BatchLoader.batches(epoch, start)`` with ``start`` past the epoch's batch count yielded
  nothing, silently, where ``load_state_dict`` refuses the same position (``state['batch']: 9
  batches taken, but epoch 0 has 4``); now refused naming ``start`` (``start`` equal to the count,
  the epoch's end, stays valid: no batches).
* ``AveragedParams.copy_to`` of an unversioned DLPack export says why it is read-only (hunt 39g's
  DLPack rule)."""

import numpy as np
import pytest

from dlpack_exporters import Old
from optkern.data import BatchLoader
from optkern.swa import AveragedParams


@pytest.mark.parametrize("drop_last", [False, True])
def test_a_start_past_the_epoch_is_refused_by_name(drop_last):
    b = BatchLoader(np.arange(10.0), batch_size_schedule=3, drop_last=drop_last)
    count = len(b)
    assert list(b.batches(0, count)) == []  # (the epoch's end: nothing left)
    with pytest.raises(ValueError, match=rf"start: batch {count + 1}, but epoch 0 has {count}"):
        next(b.batches(0, count + 1))


def test_copy_to_an_unversioned_dlpack_export_says_why():
    a = AveragedParams([np.ones(3, np.float32)])
    out = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"params\[0\]: array is read-only \(exported through the unversioned DLPack"):
        a.copy_to([Old(out)])
    assert not out.any()
