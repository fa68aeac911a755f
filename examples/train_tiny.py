"""Train a tiny two-layer network on synthetic data with optkern.optim.Adam (NumPy only).

    python examples/train_tiny.py

The data are two interleaved spirals; the network is x -> tanh(x W1 + b1) W2 + b2 with a
logistic loss, gradients written out by hand. Prints the loss falling and the final
accuracy in a few seconds.
"""

import numpy as np

import optkern.optim


def spirals(n, rng):
    """n points per class on two interleaved noisy spirals; labels 0/1."""
    t = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi
    a = np.stack([t * np.cos(t), t * np.sin(t)], 1) / (3 * np.pi)
    x = np.concatenate([a, -a]) + rng.normal(0, 0.02, (2 * n, 2))
    y = np.concatenate([np.zeros(n), np.ones(n)])
    return x.astype(np.float32), y.astype(np.float32)


def loss_and_grads(params, x, y):
    """Mean logistic loss of the network and its gradients w.r.t. every parameter."""
    w1, b1, w2, b2 = params
    h = np.tanh(x @ w1 + b1)
    z = (h @ w2)[:, 0] + b2[0]
    loss = np.mean(np.logaddexp(0, z) - y * z)  # log(1 + e^z) - y z
    dz = (1 / (1 + np.exp(-z)) - y)[:, None] / len(y)
    dh = (dz @ w2.T) * (1 - h * h)
    grads = [x.T @ dh, dh.sum(0), h.T @ dz, dz.sum(0)]
    return float(loss), [g.astype(np.float32) for g in grads], z


def main():
    rng = np.random.default_rng(0)
    x, y = spirals(500, rng)
    hidden = 64
    params = [
        (rng.standard_normal((2, hidden)) * 2.0).astype(np.float32),
        np.zeros(hidden, np.float32),
        (rng.standard_normal((hidden, 1)) / np.sqrt(hidden)).astype(np.float32),
        np.zeros(1, np.float32),
    ]
    opt = optkern.optim.Adam(params, lr=0.02)
    steps = 500
    for step in range(1, steps + 1):
        loss, grads, z = loss_and_grads(params, x, y)
        opt.step(grads)  # updates params in place
        if step == 1 or step % (steps // 10) == 0:
            acc = np.mean((z > 0) == (y > 0.5))
            print(f"step {step:5d}  loss {loss:.4f}  accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
