"""cupy.cuda.runtime for the emulated CUDA module: one device."""


class CUDARuntimeError(RuntimeError):
    pass


def getDeviceCount() -> int:
    return 1


def getDevice() -> int:
    return 0


def deviceSynchronize() -> None:
    pass


def getDeviceProperties(device: int) -> dict:
    return {
        "name": b"CUDA emulated on the CPU (tools/cuda_emu)",
        "major": 9,
        "minor": 0,
        "totalGlobalMem": 1 << 34,
        "multiProcessorCount": 1,
    }


def runtimeGetVersion() -> int:
    return 13000
