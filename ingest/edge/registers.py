"""Modbus register decoding: 16-bit registers -> one engineering value.

Pure functions, no I/O, so every byte-order / word-order / type combination is table-tested.

Naming follows the usual PLC documentation: a 32-bit value `0xAABBCCDD` sent big-endian is the registers
`[0xAABB, 0xCCDD]` ("ABCD"). `byte_order: little` swaps the two bytes inside each register ("BADC" with
word order big), `word_order: little` reverses the order of the registers ("CDAB" with byte order big).
Both little is "DCBA". The register values themselves are what Modbus carries: unsigned 0..65535.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Literal

RegType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64"]
Order = Literal["big", "little"]

_FORMAT: dict[str, tuple[int, str]] = {
    "int16": (1, "h"), "uint16": (1, "H"),
    "int32": (2, "i"), "uint32": (2, "I"), "float32": (2, "f"),
    "float64": (4, "d"),
}


class RegisterDecodeError(ValueError):
    """The registers read cannot be turned into a value of the configured type."""


def register_count(kind: RegType) -> int:
    """How many 16-bit registers one value of this type occupies."""
    return _FORMAT[kind][0]


def _to_bytes(registers: Sequence[int], byte_order: Order, word_order: Order) -> bytes:
    words = list(registers)
    if word_order == "little":
        words.reverse()
    out = bytearray()
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise RegisterDecodeError(f"register value {w} is not 16-bit")
        hi, lo = w >> 8, w & 0xFF
        out += bytes((lo, hi)) if byte_order == "little" else bytes((hi, lo))
    return bytes(out)


def decode(registers: Sequence[int], kind: RegType, byte_order: Order = "big", word_order: Order = "big") -> float:
    """The raw value (before scale/offset) the registers encode."""
    n, fmt = _FORMAT[kind]
    if len(registers) != n:
        raise RegisterDecodeError(f"{kind} needs {n} registers, got {len(registers)}")
    (value,) = struct.unpack(">" + fmt, _to_bytes(registers, byte_order, word_order))
    return float(value)


def encode(value: float, kind: RegType, byte_order: Order = "big", word_order: Order = "big") -> list[int]:
    """The registers a device holding `value` serves (the simulated PLC's side of `decode`)."""
    n, fmt = _FORMAT[kind]
    raw = struct.pack(">" + fmt, int(round(value)) if fmt in "hHiI" else value)
    words = []
    for i in range(0, len(raw), 2):
        hi, lo = raw[i], raw[i + 1]
        words.append((lo << 8 | hi) if byte_order == "little" else (hi << 8 | lo))
    if word_order == "little":
        words.reverse()
    assert len(words) == n
    return words


def engineering(raw: float, scale: float, offset: float) -> float:
    """raw * scale + offset: how PLCs ship fixed-point values (e.g. 0.1 °C per count)."""
    return raw * scale + offset


__all__ = ["Order", "RegType", "RegisterDecodeError", "decode", "encode", "engineering", "register_count"]
