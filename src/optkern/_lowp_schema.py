"""The one translation between the two forms of a low-precision checkpoint entry.

optkern.optim and optkern.torch save the same state under the same names (``step``, the moments,
``<moment>_scale`` of 8-bit codes, ``master_param``, ``seed``), and differ in two things only:

============================  ===================================  =================================
                              optkern.optim                        optkern.torch
============================  ===================================  =================================
storage format                ``state_dtype`` ('int8', 'bfloat16')  told by the tensors' dtypes
8-bit block size              ``block``                            ``block_size`` (the keyword's name)
arrays                        NumPy (bf16: ml_dtypes, or raw         torch tensors
                              uint16 bits with ``state_dtype``)
============================  ===================================  =================================

Each loader takes both: :func:`as_optim` turns an optkern.torch entry into optkern.optim's form,
:func:`as_torch` the other way (torch imported by its caller only). Each writer keeps its own
form, so checkpoints already saved load as before. An entry holding both block keys with different
values is refused naming them: which one the codes were made with cannot be told.
"""

from __future__ import annotations

import sys

import numpy as np

from ._lowp_blocks import block_scale_name

#: optkern.optim's entry key of an 8-bit block size, and optkern.torch's
OPTIM_BLOCK, TORCH_BLOCK = "block", "block_size"
FORMAT = "state_dtype"


def _block(entry: dict, where: str):
    """The entry's block size (under either key); ValueError naming both where
    they disagree. ``None`` where the entry holds neither."""
    # (a NumPy integer, as an archive gives one back, as the int it is: each loader takes ints)
    a, b = (v if isinstance(v, bool) or not isinstance(v, np.integer) else int(v) for v in _pair(entry))
    if a is not None and b is not None and not (type(a) is type(b) and a == b):
        raise ValueError(f"{where}[{OPTIM_BLOCK!r}]: {a!r} disagrees with the entry's {TORCH_BLOCK!r} {b!r}")
    return a if b is None else b


def _pair(entry: dict) -> tuple:
    return entry.get(OPTIM_BLOCK), entry.get(TORCH_BLOCK)


def _entries(sd):
    """(key, entry) of each dict entry of a state dict's ``state`` (nothing for a malformed one:
    the loader's own checks name what is wrong)."""
    state = sd.get("state") if isinstance(sd, dict) else None
    return [(k, e) for k, e in state.items() if isinstance(e, dict)] if isinstance(state, dict) else []


def _dtype_name(v) -> str:
    d = getattr(v, "dtype", None)
    return str(d).removeprefix("torch.") if d is not None else ""


def as_optim(sd):
    """``sd`` with each optkern.torch entry in optkern.optim's form (new dicts; ``sd`` untouched):
    ``block_size`` as ``block``, ``state_dtype`` told from the moments' dtypes (uint8 codes beside
    their scales: 'int8'; bfloat16 tensors: 'bfloat16', handed over as their raw uint16 bits)."""
    out = _entries(sd)
    if not any(TORCH_BLOCK in e or _torch_bf16(e) for _, e in out):
        return sd
    state = dict(sd["state"])
    for key, e in out:
        where = f"state_dict['state'][{key!r}]"
        block = _block(e, where)
        e = {k: v for k, v in e.items() if k != TORCH_BLOCK}
        if block is not None:
            e[OPTIM_BLOCK] = block
        if FORMAT not in e:
            if any(_dtype_name(v) == "uint8" and block_scale_name(k) in e for k, v in e.items()):
                e[FORMAT] = "int8"
            elif _torch_bf16(e):
                e[FORMAT] = "bfloat16"
        if e.get(FORMAT) == "bfloat16":  # (NumPy has no bfloat16: the bits, read as such by the format)
            e = {k: _bits(v) if _is_bf16_tensor(v) and k != "master_param" else v for k, v in e.items()}
        state[key] = e
    return {**sd, "state": state}


def _is_bf16_tensor(v) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(v, torch.Tensor) and v.dtype is torch.bfloat16 and v.dim() > 0


def _bits(v) -> np.ndarray:
    """bfloat16 tensor ``v``'s bits as a host uint16 array (a meta tensor is left to the loader's
    check, which names it)."""
    torch = sys.modules["torch"]
    if v.device.type == "meta":
        return v
    return v.detach().cpu().contiguous().view(torch.int16).numpy().view(np.uint16)


def _torch_bf16(e: dict) -> bool:
    """Whether entry ``e`` holds a bfloat16 tensor moment (not the master, which is float32)."""
    return any(_is_bf16_tensor(v) for k, v in e.items() if k != "master_param")


def as_torch(sd):
    """``sd`` with each optkern.optim entry in optkern.torch's form (new dicts; ``sd`` untouched):
    ``block`` as ``block_size``, ``state_dtype`` dropped (the tensors' dtypes tell it), NumPy
    arrays as CPU tensors (copies; bfloat16 ones, ml_dtypes' or raw bits of a 'bfloat16' entry,
    as ``torch.bfloat16``). Needs torch imported (optkern.torch's loader calls it). A
    ``state_dtype`` that is none of optkern.optim's is refused naming it, as its loader refuses it
    (dropped, it was not looked at)."""
    from .optim._lowp_config import STATE_DTYPES

    out = _entries(sd)
    if not any(_optim_form(e) for _, e in out):
        return sd
    state = dict(sd["state"])
    for key, e in out:
        where = f"state_dict['state'][{key!r}]"
        block = _block(e, where)
        fmt = e.get(FORMAT)
        if FORMAT in e and (not isinstance(fmt, str) or fmt not in STATE_DTYPES):
            raise ValueError(f"{where}[{FORMAT!r}]: expected one of {STATE_DTYPES}, got {fmt!r}")
        if fmt == "int8" and block is None:
            block = 256  # (optkern.optim's loader reads an 8-bit entry without one as its default)
        new = {}
        for k, v in e.items():
            if k in (OPTIM_BLOCK, TORCH_BLOCK, FORMAT):
                continue
            if type(v) is np.ndarray and k == "step" and v.ndim == 0:
                new[k] = v.item()  # (optkern.optim's count, 0-d from an archive: a number, as it saves it)
            elif type(v) is np.ndarray:
                new[k] = _tensor(v, bits_are_bf16=fmt == "bfloat16" and k != "master_param")
            else:
                new[k] = v
        if block is not None:
            new[TORCH_BLOCK] = block
        state[key] = new
    return {**sd, "state": state}


def _optim_form(e: dict) -> bool:
    """Whether entry ``e`` holds anything of optkern.optim's form (or a NumPy integer block size)."""
    return (
        OPTIM_BLOCK in e
        or FORMAT in e
        or isinstance(e.get(TORCH_BLOCK), np.integer)
        or any(type(v) is np.ndarray for v in e.values())
    )


def _tensor(a: np.ndarray, bits_are_bf16: bool):
    """NumPy array ``a`` as a CPU tensor of its own (native byte order); bfloat16 values (an
    ml_dtypes array, or uint16 bits where ``bits_are_bf16``) as ``torch.bfloat16``."""
    import torch

    if a.dtype.name == "bfloat16" or (bits_are_bf16 and a.dtype.kind == "u" and a.dtype.itemsize == 2):
        bits = np.array(a.view(np.uint16) if a.dtype.name == "bfloat16" else a, np.uint16)  # (a copy, native order)
        return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return torch.from_numpy(np.array(a, order="C"))
