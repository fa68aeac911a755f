"""cupy.cuda for the emulated CUDA module: one device, streams and events that do nothing (every
launch has finished when it returns). No graph capture, no NCCL."""

from __future__ import annotations

import itertools
import time

from . import runtime

_ptrs = itertools.count(0x1000, 0x10)


class Device:
    """cupy.cuda.Device (cupy/cuda/device.pyx): ``id``, ``int(d)``, ``<CUDA Device 0>``; not a string,
    not an integer (no ``__index__``), as libraries that take a device (torch) see it."""

    def __init__(self, device=None) -> None:
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise runtime.CUDARuntimeError("cudaErrorInvalidDevice: the emulator has one device")

    compute_capability = "90"

    def __int__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"

    def use(self) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __eq__(self, other) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


class Stream:
    """A stream: its own pointer (the module reads ``ptr``); work on it is done at launch."""

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False) -> None:
        self.ptr = 0 if null else next(_ptrs)
        self._prev: list[Stream] = []

    def use(self):
        global _current
        _current = self
        return self

    def synchronize(self) -> None:
        pass

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event) -> None:
        pass

    def __enter__(self):
        global _current
        self._prev.append(_current)
        _current = self
        return self

    def __exit__(self, *exc) -> None:
        global _current
        _current = self._prev.pop()


class ExternalStream(Stream):
    def __init__(self, ptr: int, device_id: int = -1) -> None:
        super().__init__()
        self.ptr = int(ptr)


Stream.null = Stream(null=True)  # type: ignore[attr-defined]
_current: Stream = Stream.null  # type: ignore[attr-defined]


def get_current_stream(device_id: int = -1) -> Stream:
    return _current


class Event:
    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False) -> None:
        self.t = None

    def record(self, stream=None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    @property
    def done(self) -> bool:
        return True


def get_elapsed_time(start: Event, end: Event) -> float:
    return (end.t - start.t) * 1e3
