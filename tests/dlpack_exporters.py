"""DLPack exporters shared by the tests: one of the protocol before 1.0 (how optkern refuses it), and
a plain one of the current protocol (a foreign `out` optkern writes and returns as given)."""

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


class Plain:
    """A DLPack exporter of the current protocol and nothing else (a JAX / TF-like array): a
    writable view to NumPy, and no ``reshape`` / ``shape`` of its own."""

    def __init__(self, a):
        self.base = a

    def __dlpack__(self, **kwargs):
        return self.base.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.base.__dlpack_device__()
