"""Register decoding against byte sequences written out by hand (not against our own encoder)."""

from __future__ import annotations

import math

import pytest

from ingest.edge.registers import RegisterDecodeError, decode, encode, engineering, register_count

# 123456.0 as float32 is 0x47F12000: bytes A=47 B=F1 C=20 D=00
F32 = [
    ("big", "big", [0x47F1, 0x2000]),        # ABCD
    ("little", "big", [0xF147, 0x0020]),     # BADC
    ("big", "little", [0x2000, 0x47F1]),     # CDAB
    ("little", "little", [0x0020, 0xF147]),  # DCBA
]


@pytest.mark.parametrize(("bo", "wo", "regs"), F32)
def test_float32_in_every_byte_and_word_order(bo: str, wo: str, regs: list[int]) -> None:
    assert decode(regs, "float32", bo, wo) == 123456.0  # type: ignore[arg-type]
    assert encode(123456.0, "float32", bo, wo) == regs  # type: ignore[arg-type]


@pytest.mark.parametrize(("regs", "kind", "bo", "wo", "want"), [
    ([0xFFFF], "int16", "big", "big", -1.0),
    ([0xFFFF], "uint16", "big", "big", 65535.0),
    ([0x8000], "int16", "big", "big", -32768.0),
    ([0x0080], "int16", "little", "big", -32768.0),
    ([0xFFFF, 0xFFFE], "int32", "big", "big", -2.0),
    ([0xFFFE, 0xFFFF], "int32", "big", "little", -2.0),
    ([0x0001, 0x0000], "uint32", "big", "big", 65536.0),
    ([0x0000, 0x0001], "uint32", "big", "little", 65536.0),
    ([0x0100, 0x0000], "uint32", "little", "big", 65536.0),
    ([0xFFFF, 0xFFFF], "uint32", "big", "big", 4294967295.0),
    # 1.5 as float64 is 0x3FF8000000000000
    ([0x3FF8, 0, 0, 0], "float64", "big", "big", 1.5),
    ([0, 0, 0, 0x3FF8], "float64", "big", "little", 1.5),
    ([0, 0, 0, 0xF83F], "float64", "little", "little", 1.5),
])
def test_integer_and_double_types(regs: list[int], kind: str, bo: str, wo: str, want: float) -> None:
    assert decode(regs, kind, bo, wo) == want  # type: ignore[arg-type]


def test_scale_and_offset_fixed_point() -> None:
    # a PLC holding 58.3 °C as 583 counts of 0.1 °C; a 4-20 mA-style offset
    assert math.isclose(engineering(decode([583], "int16"), 0.1, 0.0), 58.3)
    assert engineering(decode([0xFFF6], "int16"), 0.5, 100.0) == 95.0  # -10 counts


def test_wrong_register_count_and_out_of_range_registers_are_errors() -> None:
    with pytest.raises(RegisterDecodeError, match="needs 2 registers"):
        decode([1], "float32")
    with pytest.raises(RegisterDecodeError, match="16-bit"):
        decode([70000], "uint16")
    assert [register_count(k) for k in ("int16", "uint16", "int32", "uint32", "float32", "float64")] == \
        [1, 1, 2, 2, 2, 4]


def test_nan_registers_decode_to_nan_for_the_caller_to_refuse() -> None:
    assert math.isnan(decode([0x7FC0, 0x0000], "float32"))
