"""A DLPack exporter of the protocol before 1.0, shared by the tests of how optkern refuses it."""

#: what optkern's refusal of its (read-only, to NumPy) view says
HINT = r"array is read-only \(exported through the unversioned DLPack protocol"


class Old:
    """DLPack before 1.0: no max_version (NumPy falls back to it and views the memory read-only)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, stream=None):
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()
