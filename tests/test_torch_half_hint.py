"""A half param given to an optkern.torch optimizer built without master weights: the TypeError
says what to do (master_weights=True), as well as what it got."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("cls", ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"])
def test_a_half_param_without_master_weights_names_the_option(cls, dtype):
    p = torch.nn.Parameter(torch.zeros(3, dtype=getattr(torch, dtype)))
    with pytest.raises(TypeError, match=rf"params'\]\[0\]: expected .*got torch\.{dtype} .*master_weights=True"):
        getattr(ot, cls)([p], lr=0.1)
    getattr(ot, cls)([p], lr=0.1, master_weights=True)  # what the message says works


def test_other_dtypes_get_no_half_hint():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.int32), requires_grad=False)
    with pytest.raises(TypeError) as e:
        ot.Adam([p])
    assert "master_weights" not in str(e.value)
