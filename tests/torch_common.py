"""What the optkern.torch tests share: the optimizer cases checked against torch.optim, the small
torch models and data they train, and the CUDA skip marker."""

import io
import warnings

import pytest
import torch

# (name, hyper-parameters) -- every optimizer both libraries have, main variants
CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=False)),
    ("Adagrad", dict(lr=0.05, lr_decay=1e-2, weight_decay=1e-3, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=1e-3, weight_decay=1e-3)),
    ("RMSprop", dict(lr=1e-3, momentum=0.5, centered=True)),
    ("Adadelta", dict(lr=0.5, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-3)),
    ("Adam", dict(lr=1e-3, amsgrad=True, weight_decay=1e-2)),
    ("AdamW", dict(lr=1e-3, weight_decay=0.1)),
    ("NAdam", dict(lr=1e-3, weight_decay=1e-2)),
    ("NAdam", dict(lr=1e-3, weight_decay=1e-2, decoupled_weight_decay=True)),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]


def mlp(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(9, 17), torch.nn.Tanh(), torch.nn.Linear(17, 4)).to(dtype)


def cnn(dtype):
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3 * 5 * 5, 4)
    ).to(dtype)


def data(kind, dtype):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(24, 9, generator=g) if kind == "mlp" else torch.randn(24, 1, 7, 7, generator=g)
    return x.to(dtype), torch.randint(0, 4, (24,), generator=g)


def _gpu_missing():
    """Why the CUDA tests cannot run here, or None."""
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed"
    from optkern import _backend

    try:
        _backend.cuda_module()
    except RuntimeError as e:
        return str(e)
    return None


_NO_GPU = _gpu_missing()
gpu = pytest.mark.skipif(_NO_GPU is not None, reason=f"needs torch CUDA, CuPy and optkern._cuda: {_NO_GPU}")


def step_random(opt, ps, seed, n):
    """``n`` steps of ``opt`` on seeded standard-normal gradients of the params' dtype."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).to(p.dtype)
        opt.step()


def stepped_once(cls, shape, dtype, seed, /, **hp):
    """A seeded standard-normal param of ``shape`` and ``dtype``, its optimizer ``cls([p], **hp)``
    and one step on a random grad: the set-up of a case that needs the state to exist (positional
    arguments: ``hp`` may hold an optimizer's own ``seed``)."""
    torch.manual_seed(seed)
    p = torch.randn(shape, dtype=dtype).requires_grad_()
    opt = cls([p], **hp)
    p.grad = torch.randn_like(p)
    opt.step()
    return p, opt


def through_file(sd):
    """``sd`` after a torch.save / torch.load round trip (weights_only, as a checkpoint is read)."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


def no_host_sync(on: bool) -> None:
    """torch's sync debug mode to "error" (on) or back to the default. Setting it warns once per
    process that the mode is a prototype (torch 2.11): an error under -W error, raised after the
    mode was set, which then failed every later test of that worker at its first copy to the GPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.cuda.set_sync_debug_mode("error" if on else 0)
