"""A bfloat16 torch model trained with 8-bit AdamW states through optkern.torch (needs torch).

    python examples/torch_bf16_8bit.py

The same MLP on the digits data three ways, from the same start: torch.optim.AdamW in float32;
optkern.torch.AdamW on the bfloat16 model with a float32 master copy and 8-bit moments (one changed
line: the import and two keywords); and the same under torch.amp.GradScaler in float16. Prints
each run's final loss and the optimizer state's bytes, then saves the 8-bit optimizer's checkpoint
and loads it into torch.optim.AdamW through ``optkern.torch.to_torch_state_dict``.
"""

import copy

import torch

import optkern.torch as ot
from optkern.datasets import load_digits


def model_like(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 10)).to(dtype)


def train(model, opt, x, y, steps, scaler=None):
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x.to(next(model.parameters()).dtype)).float(), y)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    return float(loss.detach())


def state_bytes(opt):
    return sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))


def main(steps=200):
    data = load_digits()
    x, y = torch.from_numpy(data.x).float(), torch.from_numpy(data.y).long()
    runs = {}
    m32 = model_like(torch.float32)
    o32 = torch.optim.AdamW(m32.parameters(), lr=3e-3)
    runs["torch AdamW, float32"] = (train(m32, o32, x, y, steps), state_bytes(o32))
    mbf = model_like(torch.bfloat16)
    obf = ot.AdamW(mbf.parameters(), lr=3e-3, master_weights=True, state_dtype="int8")
    runs["optkern.torch AdamW, bf16 + fp32 master + 8-bit"] = (train(mbf, obf, x, y, steps), state_bytes(obf))
    m16 = model_like(torch.float16)
    o16 = ot.AdamW(m16.parameters(), lr=3e-3, master_weights=True, state_dtype="int8")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    runs["same, float16 + GradScaler"] = (train(m16, o16, x, y, steps, scaler), state_bytes(o16))
    for name, (loss, nbytes) in runs.items():
        print(f"{name:50s} loss {loss:.4f}   optimizer state {nbytes / 1024:8.1f} KiB")
    # the 8-bit checkpoint, decoded, continues in torch.optim.AdamW on a float32 copy of the model
    back = copy.deepcopy(mbf).float()
    t = torch.optim.AdamW(back.parameters(), lr=3e-3)
    t.load_state_dict(ot.to_torch_state_dict(obf.state_dict()))
    print(f"{'torch AdamW from the 8-bit checkpoint, 20 more':50s} loss {train(back, t, x, y, 20):.4f}")
    return runs


if __name__ == "__main__":
    main()
