"""precheck_step_'s "its param is not a numpy.ndarray" names the param's type as every other check
does (call_args.hpp's type_name: module and name), not by its bare __name__: a decimal.Decimal read
"(got Decimal)", a torch.Tensor "(got Tensor)", which hid the wrong backend (47th hunt, p)."""

import decimal

import numpy as np
import pytest

from optkern import _cpu


@pytest.mark.parametrize(
    ("param", "name"),
    [(decimal.Decimal(1), "decimal.Decimal"), ([1.0], "list"), (None, "NoneType")],
    ids=["decimal", "list", "none"],
)
def test_param_type_named_with_its_module(param, name):
    g = np.ones(3, np.float32)
    g0 = g.copy()
    msg = rf"^grads\[0\]: its param is not a numpy.ndarray \(got {name}\)$"
    with pytest.raises(TypeError, match=msg):
        _cpu.precheck_step_([(np.dtype(np.float32), [], [], [g], [param], ["grads[0]"])])
    np.testing.assert_array_equal(g, g0)
