"""Capturable steps: the step-dependent scalars computed on the GPU.

With ``capturable=True`` an optimizer keeps its step counter (and NAdam's
``mu_product``) in float64 device arrays and, at every step, one tiny kernel
advances the counter and writes the rule's step-dependent scalars into the
run's ``hp`` buffer; then the ``optkern._cuda.<rule>_capturable`` call reads
them from there (layouts in cuda/optim.cu). Both launches go to CuPy's current
stream and nothing is copied or synchronized, so ``Optimizer.step`` can be
captured in a CUDA graph and replayed.

The kernels evaluate the host formulas of :mod:`optkern.functional` in the same
order, compiled with ``--fmad=false`` so that every product and sum rounds
exactly as Python's float arithmetic does. Only ``pow`` differs: CUDA's
double ``pow`` (within 2 ulp) and the C library's (within 1 ulp) may disagree
in the last bit, so Adam's and NAdam's bias corrections can differ from the
plain step by an ulp of float64 (invisible after rounding to float32 in all
but rare cases). SGD, Adagrad, RMSprop and Adadelta give the same bits.
"""
from __future__ import annotations

import numpy as np

_SOURCE = r"""
// One thread per launch: advance the device step counter and write hp.
// Formulas and operation order follow optkern/functional.py (_*_call).
// Each kernel saves the counters it advances after the rule's scalars in hp
// (hp[n] = old step, hp[n + 1] = old mu_product) for `restore`.
__device__ __forceinline__ double lr_of(const double* lr_dev, int use_dev, double lr) {
  return use_dev ? lr_dev[0] : lr;
}

// hp = [lr, first]
extern "C" __global__ void sgd_hp(double* hp, const double* lr_dev, int use_dev, double lr, double first) {
  hp[0] = lr_of(lr_dev, use_dev, lr);
  hp[1] = first;
}

// RMSprop, Adadelta: hp = [lr]
extern "C" __global__ void lr_hp(double* step, double* hp, const double* lr_dev, int use_dev, double lr) {
  hp[1] = step[0];
  step[0] = step[0] + 1.0;
  hp[0] = lr_of(lr_dev, use_dev, lr);
}

// hp = [clr], clr = lr / (1 + (t - 1) lr_decay)
extern "C" __global__ void adagrad_hp(double* step, double* hp, const double* lr_dev, int use_dev, double lr,
                                      double lr_decay) {
  hp[1] = step[0];
  const double t = step[0] + 1.0;
  step[0] = t;
  hp[0] = lr_of(lr_dev, use_dev, lr) / (1.0 + (t - 1.0) * lr_decay);
}

// hp = [step_size, bc2_sqrt, decay]
extern "C" __global__ void adam_hp(double* step, double* hp, const double* lr_dev, int use_dev, double lr,
                                   double beta1, double beta2, double wd, int decoupled) {
  hp[3] = step[0];
  const double t = step[0] + 1.0;
  step[0] = t;
  const double l = lr_of(lr_dev, use_dev, lr);
  const double bc1 = 1.0 - pow(beta1, t);
  const double bc2 = 1.0 - pow(beta2, t);
  hp[0] = l / bc1;
  hp[1] = sqrt(bc2);
  hp[2] = decoupled ? 1.0 - l * wd : 1.0;
}

// hp = [c_grad, c_avg, bc2, decay]; mu_product <- mu_product * mu_t
extern "C" __global__ void nadam_hp(double* step, double* mu_product, double* hp, const double* lr_dev,
                                    int use_dev, double lr, double beta1, double beta2, double psi, double wd,
                                    int decoupled) {
  hp[4] = step[0];
  hp[5] = mu_product[0];
  const double t = step[0] + 1.0;
  step[0] = t;
  const double l = lr_of(lr_dev, use_dev, lr);
  const double mu = beta1 * (1.0 - 0.5 * pow(0.96, t * psi));
  const double mu_next = beta1 * (1.0 - 0.5 * pow(0.96, (t + 1.0) * psi));
  const double prod = mu_product[0] * mu;
  mu_product[0] = prod;
  hp[0] = -l * (1.0 - mu) / (1.0 - prod);
  hp[1] = -l * mu_next / (1.0 - prod * mu_next);
  hp[2] = 1.0 - pow(beta2, t);
  hp[3] = decoupled ? 1.0 - l * wd : 1.0;
}

// Undo the counters' advance when the native step refused its arguments.
extern "C" __global__ void restore(double* step, double* mu_product, const double* saved, int has_mu) {
  step[0] = saved[0];
  if (has_mu) mu_product[0] = saved[1];
}
"""

#: Length of the hp layout of each native rule (cuda/optim.cu); the buffers hold the saved
#: counters after it (one more slot: the step; NAdam two: step and mu_product).
HP_SIZE = {"sgd": 2, "adagrad": 1, "rmsprop": 1, "adadelta": 1, "adam": 3, "nadam": 4}
_SAVED = {"sgd": 0, "adagrad": 1, "rmsprop": 1, "adadelta": 1, "adam": 1, "nadam": 2}

_kernels: dict = {}  # (device id, name) -> cupy RawKernel


def _kernel(name: str, device_id: int):
    """The compiled kernel ``name`` for one device (compiled once per process and device)."""
    key = (device_id, name)
    k = _kernels.get(key)
    if k is None:
        import cupy

        with cupy.cuda.Device(device_id):
            module = cupy.RawModule(code=_SOURCE, options=("--fmad=false",))
            k = module.get_function(name)
            _kernels[key] = k
    return k


def _launch(name: str, device_id: int, args: tuple) -> None:
    """One thread on CuPy's current stream; the caller made ``device_id`` the current device."""
    _kernel(name, device_id)((1,), (1,), args)


def is_capturing(like) -> bool:
    """Whether CuPy's current stream (on ``like``'s device) is capturing a graph."""
    import cupy

    with cupy.cuda.Device(like.device.id):
        s = cupy.cuda.get_current_stream()
        f = getattr(s, "is_capturing", None)
        return bool(f()) if f is not None else False


def device_scalar(like, value: float):
    """A 0-d float64 array holding ``value`` on ``like``'s device (a step counter, mu_product)."""
    import cupy

    with cupy.cuda.Device(like.device.id):
        return cupy.full((), float(value), dtype=np.float64)


def hp_buffer(like, rule: str):
    import cupy

    with cupy.cuda.Device(like.device.id):
        return cupy.zeros(HP_SIZE[rule] + _SAVED[rule], dtype=np.float64)


def restore(dev: dict, rule: str) -> None:
    """Put back the counters that the last hp kernel advanced (its native step raised)."""
    if "step" not in dev:
        return
    h = dev["hp"]
    mu = dev.get("mu_product")
    _launch("restore", h.device.id, (dev["step"], h if mu is None else mu, h[HP_SIZE[rule]:],
                                     np.int32(mu is not None)))


def _native_hp(h, rule: str):
    """The part of the hp buffer the native step reads (the rest saves counters for ``restore``)."""
    return h[:HP_SIZE[rule]]


def _lr_args(hp_buf, lr: float, lr_dev):
    """(lr_dev pointer, use_dev flag, host lr) as the kernels take them."""
    if lr_dev is None:
        return hp_buf, np.int32(0), np.float64(lr)  # the pointer is never read
    return lr_dev, np.int32(1), np.float64(0.0)


# ---- one capturable step per rule (hp tuples as functional._check_* return them) ---------

def sgd(mod, params, grads, bufs, hp, first, dev, lr_dev=None):
    lr, momentum, dampening, wd, nesterov, maximize, textbook = hp
    h = dev["hp"]
    _launch("sgd_hp", h.device.id, (h, *_lr_args(h, lr, lr_dev), np.float64(1.0 if first else 0.0)))
    mod.sgd_capturable(params, grads, bufs if momentum != 0 else None, 0.0, momentum, dampening, wd, nesterov,
                       maximize, False, textbook, _native_hp(h, "sgd"))


def adagrad(mod, params, grads, sums, hp, dev, lr_dev=None):
    lr, lr_decay, wd, eps, maximize, _ = hp
    h = dev["hp"]
    _launch("adagrad_hp", h.device.id, (dev["step"], h, *_lr_args(h, lr, lr_dev), np.float64(lr_decay)))
    mod.adagrad_capturable(params, grads, sums, 0.0, eps, wd, maximize, _native_hp(h, "adagrad"))


def rmsprop(mod, params, grads, square_avgs, grad_avgs, bufs, hp, dev, lr_dev=None):
    lr, alpha, eps, wd, momentum, maximize, nesterov, centered = hp
    h = dev["hp"]
    _launch("lr_hp", h.device.id, (dev["step"], h, *_lr_args(h, lr, lr_dev)))
    mod.rmsprop_capturable(params, grads, square_avgs, grad_avgs if centered else None,
                           bufs if momentum > 0 else None, 0.0, alpha, eps, wd, momentum, nesterov, maximize,
                           _native_hp(h, "rmsprop"))


def adadelta(mod, params, grads, square_avgs, acc_deltas, hp, dev, lr_dev=None):
    lr, rho, eps, wd, maximize = hp
    h = dev["hp"]
    _launch("lr_hp", h.device.id, (dev["step"], h, *_lr_args(h, lr, lr_dev)))
    mod.adadelta_capturable(params, grads, square_avgs, acc_deltas, 0.0, rho, eps, wd, maximize,
                            _native_hp(h, "adadelta"))


def adam(mod, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, hp, dev, lr_dev=None):
    lr, beta1, beta2, eps, wd, amsgrad, maximize, decoupled = hp
    h = dev["hp"]
    _launch("adam_hp", h.device.id, (dev["step"], h, *_lr_args(h, lr, lr_dev), np.float64(beta1),
                                     np.float64(beta2), np.float64(wd), np.int32(decoupled)))
    l2 = 0.0 if decoupled else wd
    mod.adam_capturable(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None, 0.0, beta1,
                        beta2, eps, l2, 1.0, 1.0, maximize, _native_hp(h, "adam"))


def nadam(mod, params, grads, exp_avgs, exp_avg_sqs, hp, dev, lr_dev=None):
    lr, beta1, beta2, eps, wd, psi, maximize, decoupled = hp
    h = dev["hp"]
    _launch("nadam_hp", h.device.id, (dev["step"], dev["mu_product"], h, *_lr_args(h, lr, lr_dev),
                                      np.float64(beta1), np.float64(beta2), np.float64(psi), np.float64(wd),
                                      np.int32(decoupled)))
    l2 = 0.0 if decoupled else wd
    mod.nadam_capturable(params, grads, exp_avgs, exp_avg_sqs, 0.0, 0.0, beta1, beta2, eps, l2, 1.0, 1.0,
                         maximize, _native_hp(h, "nadam"))
