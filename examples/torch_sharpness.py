"""Sharpness of a torch model trained three ways, measured with optkern's curvature (needs torch).

    python examples/torch_sharpness.py

The same torch MLP on the digits data from the same start: SGD with momentum, SAM around it and
adaptive SAM (``optkern.torch.SGD`` / ``optkern.torch.SAM``), then full-batch L-BFGS
(``optkern.torch.LBFGS``, torch's code with the import changed). For each final model the loss
Hessian on the training set becomes an operator (``optkern.torch.hessian_operator``), and optkern's
estimators give its top eigenvalues (block Lanczos) and trace (Hutch++): what PyHessian measures,
with exact products. At about the same training loss, SAM's runs end flatter (a smaller top
eigenvalue and trace) than plain SGD's. L-BFGS's 20 full-batch iterations reach a lower loss, where
the cross-entropy's curvature shrinks with it: its sharpness is not comparable with theirs.
"""

import torch

import optkern.torch as ot
from optkern import hessian
from optkern.datasets import load_digits

F = torch.nn.functional


def model_like():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)).double()


def batches(n, size, epoch):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
    return [order[i : i + size] for i in range(0, n, size)]


def train_first_order(opt_for, x, y, epochs):
    model = model_like()
    opt = opt_for(model.parameters())
    for epoch in range(epochs):
        for idx in batches(len(y), 64, epoch):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            if isinstance(opt, ot.SAM):
                opt.step(lambda idx=idx: F.cross_entropy(model(x[idx]), y[idx]).backward())
            else:
                opt.step()
    return model


def train_lbfgs(x, y, steps):
    model = model_like()
    opt = ot.LBFGS(model.parameters(), max_iter=20, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return model


def sharpness(model, x, y):
    H = ot.hessian_operator(lambda: F.cross_entropy(model(x), y), model.parameters())
    with torch.no_grad():
        loss = float(F.cross_entropy(model(x), y))
    top = hessian.top_eigenvalues(H, 2).eigenvalues
    return loss, float(top[0]), float(top[1]), hessian.trace(H, "hutch++", 60).estimate


def main(epochs=8, lbfgs_steps=1):
    torch.set_num_threads(1)
    data = load_digits()
    x, y = torch.from_numpy(data.x).double(), torch.from_numpy(data.y).long()
    sgd = {"lr": 0.05, "momentum": 0.9}
    models = {
        "SGD momentum": train_first_order(lambda ps: ot.SGD(ps, **sgd), x, y, epochs),
        "SAM (rho 0.05)": train_first_order(lambda ps: ot.SAM(ps, ot.SGD, rho=0.05, **sgd), x, y, epochs),
        "ASAM (rho 1.0)": train_first_order(lambda ps: ot.SAM(ps, ot.SGD, rho=1.0, adaptive=True, **sgd), x, y, epochs),
        "L-BFGS, full batch": train_lbfgs(x, y, lbfgs_steps),
    }
    out = {}
    print(f"{'':20s} {'train loss':>10s} {'top eig':>9s} {'2nd eig':>9s} {'trace':>9s}")
    for name, model in models.items():
        out[name] = sharpness(model, x, y)
        print(f"{name:20s} {out[name][0]:10.4f} {out[name][1]:9.3f} {out[name][2]:9.3f} {out[name][3]:9.2f}")
    return out


if __name__ == "__main__":
    main()
