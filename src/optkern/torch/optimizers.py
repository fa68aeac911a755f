"""torch.optim.Optimizer subclasses whose steps run optkern's fused multi-tensor kernels.

Each class takes what its ``torch.optim`` namesake takes (``model.parameters()``
or param groups, the same hyper-parameters and defaults), keeps its state in
``self.state[p]`` under torch's names and types (``step`` a float32 CPU tensor,
``exp_avg`` ... tensors like the param), so ``state_dict()`` is torch's own
format: a checkpoint moves between ``torch.optim.AdamW`` and
``optkern.torch.AdamW`` both ways. ``step(closure=None)`` follows torch:
params whose ``.grad`` is None are skipped (their state untouched), the
closure is re-evaluated with grad enabled. The update runs in place on the
tensors' own memory: one optkern call per (device, dtype, step count) run of
a group, on torch's current CUDA stream for CUDA tensors.

The step keeps views of the params' and state tensors' memory while they stay the same tensors
over the same memory: a state tensor replaced (``opt.state[p]["exp_avg"] = t``, a cleared or new
dict), a param or a state tensor given other memory in place (``p.data = t``,
``opt.state[p]["exp_avg"].data = t`` or ``.set_(t)``) is followed, as torch.optim reads it. (Their
data pointers are read each step in the one native call that reads the params'.)

A float32 tensor ``lr`` (torch.optim takes one) steps as torch's for-loop steps with it: the step
scalars torch then computes in float32 tensor ops (Adam's and AdamW's ``lr / bc1``, NAdam's
coefficients, Adagrad's decayed lr, ``1 - lr * weight_decay``) are computed so (``_tensor_lr``). Adam's
and AdamW's tensor ``betas``, float16 / bfloat16 ``lr`` and tensor decoupled ``weight_decay`` step as
torch's for-loop steps with them too: their step scalars come from torch's own expressions, evaluated
with torch's ops (``_torch_scalars``). Other tensor hyper-parameters whose scalars torch computes in
ops of the tensor's dtype that optkern does not follow (a half ``lr`` of NAdam or of Adagrad with
``lr_decay``, a tensor ``lr_decay``, ``dampening`` / ``alpha`` / ``rho`` whose ``1 - x`` the dtype
rounds, NAdam's decoupled decay) are refused by name (``_tensor_hypers``). NAdam's tensor ``betas``
step as torch's too: its scalars and ``mu_product *= mu`` (a tensor ``mu``, promoted) in torch's ops.

A 0-d NumPy array ``lr`` steps as the NumPy scalar it holds, as torch's for-loop steps with it.
A NumPy float32 ``lr`` steps as a float32 tensor lr: NumPy 2's promotion (NEP 50) keeps
``np.float32 op float`` in float32, so torch's for-loop and foreach steps compute those scalars in
float32 for it too (its for-loop with ``np.float32(lr)`` is its for-loop with ``torch.tensor(lr)``,
bit for bit; torch's ``fused=True`` takes lr as a C++ double: its scalars are a Python float's, and
so are they under NumPy 1.x, whose ``np.float32 op float`` is float64: ``_tensor_lr``). A
NumPy float32 ``eps``, coupled ``weight_decay``, ``momentum``, ``dampening``, ``alpha`` or ``rho``
enters no product torch rounds to float32 (the same steps as its Python float), nor, to its
float32 rounding, a decoupled ``weight_decay`` beside a Python lr (``1 - lr * wd`` is computed in
double here, in float32 by torch; equal in the tests). NumPy float32 Adam / AdamW ``betas`` are
refused, as torch refuses them. Not followed (computed in double here, in the NumPy scalar's type
by torch's for-loop): NumPy float32 NAdam ``betas`` or ``momentum_decay`` and a NumPy float32
Adagrad ``lr_decay`` (an ulp or so of the param on some elements), and a NumPy float16 lr of Adam,
AdamW, NAdam or Adagrad with ``lr_decay``, whose scalars torch computes in float16 (AdamW's
``1 - 1e-3 * 1e-2`` rounds to 1 there: no decay at all; a float16 tensor lr is torch's for Adam and
AdamW and refused for the others, above): pass Python floats or a tensor lr for torch's bits.

The classes live in modules named for what they hold -- SGD (``sgd.py``), Adagrad, RMSprop and
Adadelta (``adaptive.py``), the Adam family (``adam.py``), AdagradNorm (``adagrad_norm.py``) -- and
are gathered here, the module ``optkern.torch`` imports them from.
"""

from __future__ import annotations

from .adagrad_norm import AdagradNorm
from .adam import Adam, AdamW, NAdam
from .adaptive import Adadelta, Adagrad, RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adagrad", "AdagradNorm", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]
