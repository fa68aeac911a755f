"""A drop-in torch.optim for optkern's fused kernels: ``from optkern.torch import AdamW``.

``optkern.torch.SGD/Adagrad/AdagradNorm/RMSprop/Adadelta/Adam/AdamW/NAdam`` are
``torch.optim.Optimizer`` subclasses with torch's signatures, semantics and
``state_dict`` format; their steps run optkern's multi-tensor kernels on the
tensors' own memory (CPU: zero-copy NumPy views; CUDA: DLPack views on torch's
current stream); params contiguous in another order of their dims (channels_last)
are stepped in memory order, their grads and state in the same layout. As torch.optim reads every
tensor by index, a param given another layout after its state was made (``p.data = ...``,
``model.to(memory_format=...)``) has its state tensors put in its layout in place (the same tensor
objects; one that is a view of other memory is refused by name), and a dense grad laid out otherwise
is read through a copy in its param's layout (:mod:`._relaid`); grads with gaps are refused by name.
``LBFGS`` is torch.optim.LBFGS with its two-loop recursion as two native passes over the
history (:mod:`.lbfgs`); ``NewtonCG`` is Hessian-free Newton-CG on a torch model's Gauss-Newton
matrix or Hessian (:mod:`.newton_cg`); ``SAM`` is sharpness-aware minimization (and ASAM) around
any torch optimizer with the widely used reference implementation's API, its ascent and return as
fused kernels (:mod:`.sam`); ``AveragedModel`` is torch's SWA / EMA model average with the update
of all float32 tensors fused in one pass (:mod:`.swa`). ``clip_grad_norm_`` / ``clip_grad_value_``
and torch 2.6's ``get_total_norm`` / ``clip_grads_with_norm_`` mirror ``torch.nn.utils``.
``hessian_operator`` makes a torch model's loss Hessian an :mod:`optkern.hessian` operator (exact
products by double backward): PyHessian's top eigenvalues, trace and density on optkern's
estimators. Needs PyTorch
(``pip install torch``); ``import optkern`` never imports it.

torch.optim's implementation keywords are accepted by the first-order optimizers, each the
ones its torch namesake takes, as it takes them (``_impl_keywords``: NAdam, RMSprop and Adadelta
have no ``fused``, SGD and Adagrad no ``capturable``, torch's LBFGS none): ``foreach`` and
``fused`` None, True or False alike (every step is one fused call per run of tensors; what torch
refuses of them, such as Adam's tensor ``lr`` or betas with ``foreach=True``, refused as torch refuses
it), ``capturable`` and ``differentiable`` only False (in a param group given to ``add_param_group`` too).

Every first-order optimizer here (SGD ... NAdam; not LBFGS / NewtonCG, whose
params are float32/float64) also takes optkern's low-precision keywords
(:mod:`optkern.optim._lowp`): ``master_weights=True`` updates bfloat16 / float16
params through a float32 master copy kept in the state (``master_param``), with
``stochastic_rounding=True`` (Philox, ``seed``) or to nearest even (float32
params of the same optimizer, a half model's norms say, are their own master);
``state_dtype="bfloat16"`` or ``"int8"`` (blockwise 8-bit, ``block_size``)
stores the moments compactly. Such a ``state_dict`` keeps the compact tensors
and the ``seed`` its random words are drawn from (a resumed run rounds as the
saved one would have; a checkpoint without one keeps the constructor's);
``to_torch_state_dict`` turns it into one ``torch.optim`` loads (needed for
8-bit states: torch's loader would cast the codes to floats; and for SGD's textbook momentum
buffers v = -lr b, made torch's b), and every
optkern.torch optimizer loads torch's checkpoints and each other's, converting; checkpoints
cross with the same optkern.optim optimizer both ways (its ``block`` / ``state_dtype`` / NumPy form
translated in one place, :mod:`optkern._lowp_schema`).
Under ``torch.amp.GradScaler`` such an optimizer takes the scale and found_inf
as torch's fused optimizers do: the step unscales the (float16) grads as it
widens them and skips when a grad overflowed.

Complex params (complex64 / complex128) are stepped as torch.optim steps them: as their
real views (``torch.view_as_real``, re and im interleaved; complex64 as float32), their state
tensors complex like the param (a step count real), so checkpoints cross with torch.optim both
ways; a group may mix them with real params. The same holds for ``LBFGS`` (torch's flat vectors
over the real views; complex64 beside float32 params), ``NewtonCG`` (its vectors: the real
views), ``SAM`` (not ``adaptive``: the reference scales a complex param by ``p ** 2``),
``AveragedModel`` (complex64 fused as float32) and ``clip_grad_norm_`` (a complex grad's
2-norm is its real view's; other orders, and ``clip_grad_value_``, are torch's: it refuses to
clamp complex grads). ``AdagradNorm`` (optkern's own) steps the real views, sharing one b^2
with the real params of that dtype. Refused by name, before anything is written: conjugated
views (``z.conj()``: torch.optim's ``view_as_real`` refuses them too) as params, grads or state
(a checkpoint's are loaded as the values they show), a grad of another dtype than its param's,
real state for a complex param (torch's loader leaves it real and its step fails), the
low-precision keywords (no complex master-weights recipe, in torch either) and
``hessian_operator``.

Sparse grads (``torch.sparse_coo``, an ``nn.Embedding(sparse=True)``'s) are taken where torch.optim
takes them (:mod:`._sparse`): ``SGD`` without momentum or weight decay steps the listed elements as
torch's does, bit for bit on the CPU (an uncoalesced grad's entries one after the other, in torch's
order; coalesced first into a channels_last param; a coalesced grad without dense dims, each ``lr * v``
rounded before its sum, as torch's add rounds it);
``Adagrad`` without weight decay coalesces them and steps them as its dense step would (torch's sparse
path rounds its sum and its last add differently: an ulp or so apart); where torch raises (weight
decay, ``fused=True``; RMSprop, Adadelta and the Adam family), its RuntimeError is raised, before
anything is written. SGD's momentum (torch keeps a sparse buffer), the low-precision keywords and
``AdagradNorm`` refuse them by name. ``LBFGS`` reads them as their dense values, as torch's does.

Inference tensors (made under ``torch.inference_mode()``) are treated as torch
treats them: updated in place inside inference mode (where the state a step
makes is made of inference tensors, as torch's); outside it, every step, clip
and SWA update that would write one raises torch's RuntimeError, naming it,
before anything is written (:mod:`._inference`).
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised without torch
    raise ImportError("optkern.torch needs PyTorch: pip install torch (or pip install 'optkern[bench]')") from e

from ._torch_form import to_torch_state_dict
from .clip import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from .curvature import hessian_operator
from .lbfgs import LBFGS
from .newton_cg import NewtonCG
from .optimizers import SGD, Adadelta, Adagrad, AdagradNorm, Adam, AdamW, NAdam, RMSprop
from .sam import SAM
from .swa import AveragedModel, get_ema_multi_avg_fn

__all__ = [
    "SGD",
    "Adagrad",
    "AdagradNorm",
    "RMSprop",
    "Adadelta",
    "Adam",
    "AdamW",
    "NAdam",
    "LBFGS",
    "NewtonCG",
    "SAM",
    "AveragedModel",
    "get_ema_multi_avg_fn",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "hessian_operator",
    "to_torch_state_dict",
]
