"""Result objects pickled by an older optkern load into today's classes (hunt 51d).

The bytes below were made by the code of commit 99bdc5f9 (the parent of 47d3c6a8, which moved
PowerResult from optkern.hessian.lanczos to optkern.hessian.power): that tree exported with
``git archive``, run with ``pickle.dumps({...}, protocol=2)`` over its own power_iteration,
top_eigenvalues (return_eigenvectors=True), trace, cg and spectral_density of ``diag(3, 1, 2)``.
So PowerResult and EigenResult are named ``optkern.hessian.lanczos`` in them. The report that
these no longer loaded did not reproduce (the old path is re-exported, and the dataclasses' fields
are the same); this pins it: a move or a field renamed without a way to read the old pickles fails
here.
"""

import base64
import dataclasses
import importlib
import pickle

import numpy as np
import pytest

from optkern import hessian as H
from optkern.hessian.cg import CGResult
from optkern.hessian.density import SpectralDensity
from optkern.hessian.lanczos import EigenResult
from optkern.hessian.power import PowerResult
from optkern.hessian.trace import TraceResult

OLD = """
gAJ9cQAoWAsAAABQb3dlclJlc3VsdHEBY29wdGtlcm4uaGVzc2lhbi5sYW5jem9zClBvd2VyUmVzdWx0CnECKYFxA31xBChYCgAA
AGVpZ2VudmFsdWVxBUdAB//////Xp1gLAAAAZWlnZW52ZWN0b3JxBmNudW1weS5fY29yZS5tdWx0aWFycmF5Cl9yZWNvbnN0cnVj
dApxB2NudW1weQpuZGFycmF5CnEISwCFcQljX2NvZGVjcwplbmNvZGUKcQpYAQAAAGJxC1gGAAAAbGF0aW4xcQyGcQ1ScQ6HcQ9S
cRAoSwFLA4VxEWNudW1weQpkdHlwZQpxElgCAAAAZjhxE4mIh3EUUnEVKEsDWAEAAAA8cRZOTk5K/////0r/////SwB0cRdiiWgK
WCcAAAAjw5zDv8O/w7/Dv8Ovwr92AT7Cj8K9w6lXPHHDi8K1w7hUw7TCtz5xGGgMhnEZUnEadHEbYlgKAAAAaXRlcmF0aW9uc3Ec
SyVYCQAAAGNvbnZlcmdlZHEdiHViWAsAAABFaWdlblJlc3VsdHEeY29wdGtlcm4uaGVzc2lhbi5sYW5jem9zCkVpZ2VuUmVzdWx0
CnEfKYFxIH1xIShYCwAAAGVpZ2VudmFsdWVzcSJoB2gISwCFcSNoDodxJFJxJShLAUsBhXEmaBJYAgAAAGY4cSeJiIdxKFJxKShL
A2gWTk5OSv////9K/////0sAdHEqYoloClgIAAAAAAAAAAAACEBxK2gMhnEsUnEtdHEuYlgMAAAAZWlnZW52ZWN0b3JzcS9oB2gI
SwCFcTBoDodxMVJxMihLAUsDSwGGcTNoKYloClgaAAAAAQAAAAAAw7DCvwAAAAAAAAAAAAAAAAAAAABxNGgMhnE1UnE2dHE3YlgJ
AAAAcmVzaWR1YWxzcThoB2gISwCFcTloDodxOlJxOyhLAUsBhXE8aCmJaApYCAAAAAAAAAAAAAAAcT1oDIZxPlJxP3RxQGJYBQAA
AHN0ZXBzcUFLA2gdiHViWAsAAABUcmFjZVJlc3VsdHFCY29wdGtlcm4uaGVzc2lhbi50cmFjZQpUcmFjZVJlc3VsdApxQymBcUR9
cUUoWAgAAABlc3RpbWF0ZXFGR0AYAAAAAAAAWAYAAABzdGRlcnJxR0cAAAAAAAAAAFgLAAAAbnVtX21hdHZlY3NxSEsDWAYAAABt
ZXRob2RxSVgKAAAAaHV0Y2hpbnNvbnFKWAcAAABzYW1wbGVzcUtoB2gISwCFcUxoDodxTVJxTihLAUsDhXFPaCmJaApYGAAAAAAA
AAAAABhAAAAAAAAAGEAAAAAAAAAYQHFQaAyGcVFScVJ0cVNidWJYCAAAAENHUmVzdWx0cVRjb3B0a2Vybi5oZXNzaWFuLmNnCkNH
UmVzdWx0CnFVKYFxVn1xVyhYAQAAAHhxWGgHaAhLAIVxWWgOh3FaUnFbKEsBSwOFcVxoElgCAAAAZjhxXYmIh3FeUnFfKEsDaBZO
Tk5K/////0r/////SwB0cWBiiWgKWCEAAABVVVVVVVXDlT/Dv8O/w7/Dv8O/w7/Drz8AAAAAAADDoD9xYWgMhnFiUnFjdHFkYlgE
AAAAaW5mb3FlSwBoHEsDWA0AAAByZXNpZHVhbF9ub3JtcWZHPIOYjhQJIS5YCAAAAHJlc2lkdWFscWdoB2gISwCFcWhoDodxaVJx
aihLAUsDhXFraF+JaApYGQAAAAAAAAAAAHA8AAAAAAAAcDwAAAAAAADCgDxxbGgMhnFtUnFudHFvYlgSAAAAbmVnYXRpdmVfY3Vy
dmF0dXJlcXCJWAkAAABkaXJlY3Rpb25xcWgHaAhLAIVxcmgOh3FzUnF0KEsBSwOFcXVoX4loClgkAAAAwrUewoXDq1HCuMKuPwvD
l8KjcD0Kw4c/CsOXwqNwPQrDh8K/cXZoDIZxd1JxeHRxeWJoSEsDdWJYDwAAAFNwZWN0cmFsRGVuc2l0eXF6Y29wdGtlcm4uaGVz
c2lhbi5kZW5zaXR5ClNwZWN0cmFsRGVuc2l0eQpxeymBcXx9cX0oWAQAAABncmlkcX5oB2gISwCFcX9oDodxgFJxgShLAUsEhXGC
aCmJaApYLgAAABERasKVFMOkw7E/XMKweMOcBkzDuz/Dk8Knw4PCkcO8WQJAeMO3SsK1w7UNB0Bxg2gMhnGEUnGFdHGGYlgHAAAA
ZGVuc2l0eXGHaAdoCEsAhXGIaA6HcYlScYooSwFLBIVxi2gpiWgKWDIAAADClcOtMy7Cv8OIcD/CqsOQB2HDssOsw74RwpfDrwdh
w7LDrMO+EcKRw6wzLsK/w4hwP3GMaAyGcY1ScY50cY9iWAUAAABub2Rlc3GQaAdoCEsAhXGRaA6HcZJScZMoSwFLAUsChnGUaCmJ
aApYFwAAAMOgw6nDuUfCocOvw7I/EAsDXC/CiAZAcZVoDIZxllJxl3RxmGJYBwAAAHdlaWdodHNxmWgHaAhLAIVxmmgOh3GbUnGc
KEsBSwFLAoZxnWgpiWgKWB4AAADDvsO/w7/Dv8O/w7/Dnz/DvsO/w7/Dv8O/w7/Dnz9xnmgMhnGfUnGgdHGhYlgFAAAAc2lnbWFx
okc/kLjLKP2M9nVidS4="""


@pytest.fixture(scope="module")
def old():
    return pickle.loads(base64.b64decode("".join(OLD.split())))


@pytest.mark.parametrize(
    "name, cls", [(c.__name__, c) for c in (PowerResult, EigenResult, TraceResult, CGResult, SpectralDensity)]
)
def test_old_pickles_load_as_todays_classes_with_every_field(old, name, cls):
    r = old[name]
    assert type(r) is cls
    for f in dataclasses.fields(cls):
        assert f.name in vars(r), f.name
    again = pickle.loads(pickle.dumps(r))  # (and today's pickle of it loads too)
    assert type(again) is cls


def test_old_values_are_the_old_results(old):
    A = np.diag([3.0, 1.0, 2.0])
    p = old["PowerResult"]
    assert p.converged and p.iterations == 37 and p.eigenvalue == pytest.approx(3.0, rel=1e-10)
    assert abs(float(np.asarray(p.eigenvector)[0])) == pytest.approx(1.0, abs=1e-5)
    e = old["EigenResult"]
    np.testing.assert_allclose(e.eigenvalues, [3.0])
    assert e.converged and e.eigenvectors.shape == (3, 1)
    t = old["TraceResult"]
    assert t.estimate == 6.0 and t.method == "hutchinson"
    x, info = old["CGResult"]  # (today's CGResult unpacks and indexes the old one)
    assert info == 0 and old["CGResult"][0] is x
    np.testing.assert_allclose(A @ x, np.ones(3), rtol=1e-12)
    d = old["SpectralDensity"]
    assert d.cdf(np.array([-np.inf, np.inf])).tolist() == [0.0, 1.0]


def test_a_power_result_pickled_today_loads_and_the_old_path_is_kept():
    r = H.power_iteration(np.diag([3.0, 1.0, 2.0]), max_iter=60)
    back = pickle.loads(pickle.dumps(r))
    assert back.eigenvalue == r.eigenvalue and back.iterations == r.iterations
    assert importlib.import_module("optkern.hessian.lanczos").PowerResult is PowerResult
