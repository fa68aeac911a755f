"""``on_array_device``'s fast path: calls whose arguments are NumPy arrays, numbers, strings, None
or lists / tuples of these skip the foreign-array scan; anything else takes the full path."""

import numpy as np

from optkern import _backend


class _Exported:
    """A foreign array: DLPack export of a NumPy array."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_plain_arguments():
    a = np.zeros(3)
    for v in (a, 1, 2.5, True, "tanh", None, 1j, [a, a], (a, 0.9), [], ()):
        assert _backend._plain(v), v


def test_anything_else_takes_the_full_path():
    a = np.zeros(3)
    for v in (np.float32(1.0), a.view(np.recarray), [a, _Exported(a)], _Exported(a), [[a]], {"x": a}):
        assert not _backend._plain(v), type(v)


def test_a_foreign_array_in_a_list_is_still_viewed():
    """The fast path must not swallow a foreign array: it is viewed and written in place."""

    @_backend.on_array_device
    def scale_(arrays, factor):
        for x in arrays:
            x *= factor

    a, b = np.ones(3), np.ones(3)
    scale_([a, _Exported(b)], 2.0)
    assert np.array_equal(a, [2, 2, 2]) and np.array_equal(b, [2, 2, 2])
