"""The native dropout_'s docstring (optkern._cpu, and the _cuda stub: cuda/dropout.cu says the same)
states the mask rule the kernels follow: the 32-bit Philox word of element offset + i against
round(p * 2**32) (philox::dropout_threshold), not the float32 uniform against float32(p) -- the
rule it still described after the kernels moved off it (a 2**-24 grid on the keep rate, and every p
within 2**-25 of 1 keeping nothing). The mask itself is checked against the rule in
test_dropout.py / test_hunt35_known.py; here the two documents are held to it."""

import re
from pathlib import Path

from optkern import _backend

_STUBS = Path(__file__).resolve().parents[1] / "src" / "optkern"


def _stub_doc(name: str) -> str:
    text = (_STUBS / name).read_text()
    m = re.search(r"def dropout_\(.*?\"\"\"(.*?)\"\"\"", text, re.S)
    assert m, f"no dropout_ in {name}"
    return " ".join(m.group(1).split())


def test_native_doc_and_stubs_state_the_32_bit_rule():
    doc = " ".join(_backend.cpu.dropout_.__doc__.split("\n", 1)[1].split())
    for text in (doc, _stub_doc("_cpu.pyi"), _stub_doc("_cuda.pyi")):
        assert "round(p * 2**32)" in text and "float32(p)" not in text, text
    assert _stub_doc("_cpu.pyi") == _stub_doc("_cuda.pyi")
