"""EarlyStopping: patience, min_delta, modes, best checkpoint in memory and in .npz."""

import copy

import numpy as np
import pytest

from optkern.regularize import EarlyStopping, load_state, save_state


def state(v):
    opt = {
        "state": {0: {"step": int(v), "exp_avg": np.arange(3.0) * v}},
        "param_groups": [{"lr": 0.1 * v, "betas": (0.9, 0.99)}],
    }
    return {"params": [np.full(3, v, np.float32)], "opt": opt}


def assert_state_equal(a, b):
    np.testing.assert_array_equal(a["params"][0], b["params"][0])
    np.testing.assert_array_equal(a["opt"]["state"][0]["exp_avg"], b["opt"]["state"][0]["exp_avg"])
    assert a["opt"]["state"][0]["step"] == b["opt"]["state"][0]["step"]
    assert a["opt"]["param_groups"] == b["opt"]["param_groups"]


@pytest.mark.parametrize("where", ["memory", "npz"])
def test_patience_and_best_checkpoint(where, tmp_path):
    path = tmp_path / "best.npz" if where == "npz" else None
    es = EarlyStopping(patience=2, min_delta=0.01, path=path)
    losses = [1.0, 0.8, 0.795, 0.9, 0.7, 0.71, 0.75, 0.72]
    stops = []
    for i, loss in enumerate(losses):
        live = state(i)
        stops.append(es.step(loss, state=lambda live=live: live))
        live["params"][0][:] = -1  # mutating the live model must not touch the kept copy
    # 0.795 is not 0.01 better than 0.8; improvements at 0, 1, 4; then 3 bad checks -> stop at index 7
    assert stops == [False] * 7 + [True]
    assert es.best == 0.7 and es.best_step == 4 and es.num_bad == 3
    assert_state_equal(es.restore(), state(4))
    if path is not None:
        assert path.exists()


def test_max_mode_and_nan():
    es = EarlyStopping(patience=0, mode="max")
    assert not es.step(0.5)
    assert es.step(float("nan"))
    es2 = EarlyStopping(patience=1, mode="max")
    assert [es2.step(a) for a in (0.1, 0.2, 0.2, 0.3, 0.25, 0.25)] == [False, False, False, False, False, True]


def test_state_dict_resume(tmp_path):
    es = EarlyStopping(patience=3, path=tmp_path / "c.npz")
    for v in (3.0, 2.0, 2.5):
        es.step(v, state=state(v))
    es2 = EarlyStopping(patience=3, path=tmp_path / "c.npz")
    es2.load_state_dict(es.state_dict())
    assert [es2.step(v) for v in (2.2, 2.1, 2.05)] == [False, False, True]
    assert_state_equal(es2.restore(), state(2.0))


def test_save_load_roundtrip_keeps_types(tmp_path):
    s = {"a": (1, 2.5, None, "x", True), 3: [np.float64(1.5), np.ones((2, 2), np.float32)]}
    save_state(tmp_path / "s.npz", s)
    back = load_state(tmp_path / "s.npz")
    assert back["a"] == (1, 2.5, None, "x", True) and back[3][0] == 1.5
    assert back[3][1].dtype == np.float32 and back[3][1].shape == (2, 2)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(min_delta=-0.1)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="lowest")
    with pytest.raises(RuntimeError, match="no checkpoint"):
        EarlyStopping().restore()
    with pytest.raises(TypeError, match="state"):
        save_state(tmp_path / "x.npz", {"f": object()})


def test_metric_as_a_torch_tensor():
    # a torch loop's val_loss is a 0-d tensor: it was a TypeError (a tensor's size is a method)
    torch = pytest.importorskip("torch")
    stopper = EarlyStopping(patience=0)
    assert not stopper.step(torch.tensor(0.5))
    assert stopper.step(torch.tensor([0.7], dtype=torch.float64))
    assert stopper.best == 0.5 and stopper.best_step == 0
    with pytest.raises(TypeError, match="^metric"):
        stopper.step(torch.ones(2))


def test_resume_before_any_improvement_ignores_a_stale_file(tmp_path):
    path = tmp_path / "best.npz"
    save_state(path, {"w": np.full(2, 99.0)})  # another run's checkpoint
    state = EarlyStopping(path=path).state_dict()  # this run: nothing kept yet
    resumed = EarlyStopping(path=path)
    resumed.load_state_dict(state)
    with pytest.raises(RuntimeError, match="no checkpoint"):  # as the uninterrupted run
        resumed.restore()
    resumed.step(1.0, state={"w": np.zeros(2)})
    np.testing.assert_array_equal(resumed.restore()["w"], np.zeros(2))


def _assert_torch_state_equal(a, b):
    torch = pytest.importorskip("torch")
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and b.dtype == a.dtype and b.device.type == "cpu"
        assert b.shape == a.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _assert_torch_state_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_torch_state_equal(x, y)
    else:
        assert a == b and type(a) is type(b)


def test_path_saves_and_restores_torch_model_and_optimizer_state_dicts(tmp_path):
    # a torch state_dict at path= was a TypeError naming state (tensors are not .npz-able as they are)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    def make():
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
        return model, torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99))

    model, opt = make()
    model.half_param = torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))  # a dtype NumPy lacks
    stopper = EarlyStopping(patience=1, path=tmp_path / "best.npz")
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    saved = None
    for loss_value in (1.0, 0.5, 0.7, 0.8):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
        if stopper.step(loss_value, state=state):
            break
        if loss_value == 0.5:
            saved = copy.deepcopy(state)  # Adam's moments change in place after this step
    best = stopper.restore()
    _assert_torch_state_equal(saved, best)
    fresh_model, fresh_opt = make()
    fresh_model.half_param = torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))
    fresh_model.load_state_dict(best["model"])
    fresh_opt.load_state_dict(best["optimizer"])
    _assert_torch_state_equal(saved["model"], fresh_model.state_dict())
    _assert_torch_state_equal(saved["optimizer"], fresh_opt.state_dict())
