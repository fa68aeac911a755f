"""optkern.swa defects found in hunt 38c: ``AveragedParams.copy_to`` wrote the average into torch
tensors (which it takes, viewed as NumPy arrays) without bumping their version counters: a graph
saved before it differentiated the new values silently (a gradient of 6 for x * x where torch's own
in-place copy refuses the backward), as the optimizers' and SWALP's steps bump theirs; and
optkern.torch.AveragedModel paired the buffers it keeps in sync with ``zip(..., strict=True)``
(Python 3.10's: TypeError at every update on 3.9) after the fused average was written."""

import numpy as np
import pytest

from optkern.swa import AveragedParams

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("single", [False, True])
def test_copy_to_a_tensor_refuses_a_graph_saved_before(single):
    x = torch.nn.Parameter(torch.ones(3))
    avg = AveragedParams([x])
    avg.update([torch.full((3,), 3.0)])
    y = (x * x).sum()
    before = x._version
    avg.copy_to(x if single else [x])
    assert x._version > before
    np.testing.assert_array_equal(x.detach().numpy(), np.full(3, 3.0, np.float32))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_copy_to_a_generator_of_tensors_and_arrays():
    """A generator (read once), mixed with NumPy arrays: every tensor of it counted."""
    x, a = torch.zeros(2), np.zeros(4, np.float32)
    avg = AveragedParams([np.ones(2, np.float32), np.full(4, 2.0, np.float32)])
    before = x._version
    avg.copy_to(p for p in (x, a))
    assert x._version > before
    np.testing.assert_array_equal(x.numpy(), [1, 1])
    np.testing.assert_array_equal(a, [2, 2, 2, 2])


def test_a_refused_copy_to_changes_no_version():
    x = torch.zeros(3)
    avg = AveragedParams([np.ones(3, np.float32)])
    before = x._version
    with pytest.raises(ValueError, match=r"params\[0\]: expected shape"):
        avg.copy_to([x[:2]])
    assert x._version == before and not x.any()


def test_torch_averaged_model_refuses_a_model_of_other_buffers_before_writing():
    """optkern.torch.AveragedModel keeps the buffers in sync (use_buffers=False) after the fused
    average: a model with another count of buffers raised zip's ValueError there, after the averages
    were written and before ``n_averaged`` counted them (the next update then weighted them wrong)."""
    ot = pytest.importorskip("optkern.torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    avg = ot.AveragedModel(model)
    avg.update_parameters(model)
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))  # (the params' shapes, no buffers)
    before = [t.detach().clone() for t in list(avg.module.parameters()) + list(avg.module.buffers())]
    with pytest.raises(ValueError, match=r"^model: has 0 buffers, the averaged module 3"):
        avg.update_parameters(other)
    assert int(avg.n_averaged) == 1
    for a, b in zip(list(avg.module.parameters()) + list(avg.module.buffers()), before):
        assert torch.equal(a, b)


def test_no_zip_strict_in_the_package():
    """``zip(..., strict=True)`` is Python 3.10's: on 3.9 (``requires-python >= 3.9``) it raised
    TypeError, in optkern.torch.AveragedModel at every update after the first."""
    import ast
    import pathlib

    import optkern

    found = []
    for path in sorted(pathlib.Path(optkern.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip":
                if any(k.arg == "strict" for k in node.keywords):
                    found.append(f"{path.name}:{node.lineno}")
    assert not found, found
