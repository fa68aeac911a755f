"""LBFGS checkpoints in torch's layout: ``{"state": {0: {...}}, "param_groups": [{..., "params": [0, ...]}]}``.

torch keeps L-BFGS's global state under the first parameter; so does this. ``old_dirs`` are the
``y`` vectors and ``old_stps`` the ``s`` vectors (torch's names), oldest first. optkern adds
``gram_sy`` / ``gram_yy`` (the inner products it maintains); a torch checkpoint without them gets
them recomputed from the vectors.
"""

from __future__ import annotations

import numpy as np

from .. import _backend

_SCALARS = ("t", "H_diag", "prev_loss")


def state_dict(opt) -> dict:
    g = opt.param_groups[0]
    group = {k: v for k, v in g.items() if k != "params"}
    group["params"] = list(range(len(g["params"])))
    st = {"func_evals": opt.state["func_evals"], "n_iter": opt.state["n_iter"]}
    if opt.state["n_iter"] > 0:
        xp = opt._xp
        k = len(opt._S)
        st.update(
            {
                "d": xp.array(opt._d),
                "t": opt._t,
                "old_dirs": [xp.array(y) for y in opt._Y],
                "old_stps": [xp.array(s) for s in opt._S],
                "ro": list(opt._ro),
                "H_diag": opt._h_diag,
                "prev_flat_grad": xp.array(opt._prev_g),
                "prev_loss": opt._prev_loss,
                "gram_sy": opt._sy[:k, :k].copy(),
                "gram_yy": opt._yy[:k, :k].copy(),
            }
        )
        if opt._al is not None:
            st["al"] = list(opt._al)
    return {"state": {0: st} if st else {}, "param_groups": [group]}


def _vector(v, like, n, name):
    a = _backend.asarray_like(v, like)
    if a.shape != (n,):
        raise ValueError(f"state_dict: {name}: expected shape ({n},), got {tuple(a.shape)}")
    return a


def _real(v, name):
    v = float(_backend.to_numpy(v)) if hasattr(v, "shape") else v
    return _backend.real(f"state_dict: {name}", v)


def load_state_dict(opt, sd: dict) -> None:
    from .lbfgs import _NAMES, _check_group

    if not isinstance(sd, dict) or "state" not in sd or "param_groups" not in sd:
        raise ValueError("state_dict: expected a dict with 'state' and 'param_groups'")
    groups = sd["param_groups"]
    if len(groups) != 1 or len(groups[0].get("params", ())) != len(opt._params):
        raise ValueError(f"state_dict: expected one param group of {len(opt._params)} params")
    group = dict(opt.param_groups[0])
    group.update({k: groups[0][k] for k in _NAMES if k in groups[0]})
    _check_group(group)
    states = sd["state"]
    st = states.get(0, states.get("0", {})) if states else {}
    like, n = opt._params[0], opt._n
    new = {
        "func_evals": _backend.integer("state_dict: func_evals", st.get("func_evals", 0), lo=0),
        "n_iter": _backend.integer("state_dict: n_iter", st.get("n_iter", 0), lo=0),
    }
    loaded = {}
    if new["n_iter"] > 0:
        ys = [_vector(y, like, n, f"old_dirs[{i}]") for i, y in enumerate(st["old_dirs"])]
        ss = [_vector(s, like, n, f"old_stps[{i}]") for i, s in enumerate(st["old_stps"])]
        ro = [_real(r, f"ro[{i}]") for i, r in enumerate(st["ro"])]
        if not len(ys) == len(ss) == len(ro) or len(ys) > group["history_size"]:
            raise ValueError("state_dict: old_dirs, old_stps and ro must have the same length, at most history_size")
        loaded = {
            "d": _vector(st["d"], like, n, "d"),
            "prev_g": _vector(st["prev_flat_grad"], like, n, "prev_flat_grad"),
            "S": ss,
            "Y": ys,
            "ro": ro,
        }
        for name in _SCALARS:
            loaded[name] = _real(st[name], name)
        k = len(ys)
        if "gram_sy" in st and "gram_yy" in st:
            sy, yy = (
                np.asarray(_backend.to_numpy(st["gram_sy"]), float),
                np.asarray(_backend.to_numpy(st["gram_yy"]), float),
            )
            if sy.shape != (k, k) or yy.shape != (k, k) or not (np.isfinite(sy).all() and np.isfinite(yy).all()):
                raise ValueError(f"state_dict: gram_sy, gram_yy: expected finite ({k}, {k}) matrices")
        else:  # a torch checkpoint: the inner products from the vectors (float64)
            S = np.stack([_backend.to_numpy(s).astype(np.float64) for s in ss]) if k else np.zeros((0, n))
            Y = np.stack([_backend.to_numpy(y).astype(np.float64) for y in ys]) if k else np.zeros((0, n))
            sy, yy = S @ Y.T, Y @ Y.T
        loaded["sy"], loaded["yy"] = sy, yy
        loaded["al"] = (
            [float(a) for a in st["al"][:k]] if st.get("al") is not None and None not in st["al"][:k] else None
        )
    # everything checked: now change the optimizer
    opt.param_groups[0].update({k: group[k] for k in _NAMES})
    opt._reset()
    opt.state.update(new)
    if loaded:
        m = group["history_size"]
        k = len(loaded["S"])
        opt._S, opt._Y, opt._ro = loaded["S"], loaded["Y"], loaded["ro"]
        opt._sy, opt._yy = np.zeros((m, m)), np.zeros((m, m))
        opt._sy[:k, :k], opt._yy[:k, :k] = loaded["sy"], loaded["yy"]
        opt._d, opt._prev_g, opt._al = loaded["d"], loaded["prev_g"], loaded["al"]
        opt._t, opt._h_diag, opt._prev_loss = loaded["t"], loaded["H_diag"], loaded["prev_loss"]
