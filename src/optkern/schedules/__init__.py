"""Learning-rate, hyper-parameter and batch-size schedules.

Every schedule is a pure function of the step, ``sched(t) -> float`` (t an
int >= 0), composable like optax's (:func:`chain`, :func:`sequential`,
:func:`linear_warmup`), and drives an optimizer's param groups through
:class:`Scheduler` / ``sched.attach(optimizer)``::

    sched = optkern.schedules.linear_warmup(optkern.schedules.cosine(3e-3, T_max=1000), 50)
    scheduler = sched.attach(opt)        # group lr = sched(t): schedules are absolute
    for batch in data:
        ...; opt.step(grads); scheduler.step()

``Scheduler(opt, s, relative=True)`` multiplies each group's configured value
by ``s(t)`` instead (per-group ratios kept, as torch's ``LambdaLR``).

Unlike torch's schedulers, two Schedulers on one entry do not chain: torch's
chainable ones (``StepLR``, ``MultiStepLR``, ``ExponentialLR``...) each
multiply the current lr by their factor, so two of them on one optimizer give
the product; a Scheduler writes its own value, and the last one to step wins.
Combine the schedules instead, one Scheduler for the product::

    # torch: StepLR(opt, 30, 0.1) and ExponentialLR(opt, 0.99) on one optimizer
    Scheduler(opt, chain(step_decay(1.0, 30, 0.1), exponential(1.0, 0.99)), relative=True)

:class:`ReduceLROnPlateau` (torch's) cuts each group's lr when a metric stops improving.
"""

from .base import FunctionSchedule, Schedule, as_schedule, constant
from .batch import batch_size_schedule
from .combine import chain, linear_warmup, scale_lr, sequential, warmup_cosine
from .cyclic import cyclic, one_cycle
from .decay import cosine, cosine_restarts, exponential, inverse_time, linear, multi_step, polynomial, step_decay
from .plateau import ReduceLROnPlateau
from .scheduler import Scheduler, ScheduleScaleWarning, momentum_scheduler
from .swa import swalr

__all__ = [
    "Schedule",
    "Scheduler",
    "ReduceLROnPlateau",
    "ScheduleScaleWarning",
    "FunctionSchedule",
    "as_schedule",
    "momentum_scheduler",
    "constant",
    "linear",
    "step_decay",
    "multi_step",
    "exponential",
    "inverse_time",
    "polynomial",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "one_cycle",
    "linear_warmup",
    "warmup_cosine",
    "chain",
    "sequential",
    "scale_lr",
    "batch_size_schedule",
    "swalr",
]
