"""Sizes with suffixes ("128M", "2G", "1T", "0x80000000") and their display."""

from __future__ import annotations

import re
from typing import Union

from .errors import ArgumentError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE = re.compile(
    r"^\s*(?:0[xX](?P<hex>[0-9a-fA-F]+)|(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kKmMgGtTpP])?"
    r"(?:i?[bB])?)\s*$"
)

SizeLike = Union[int, str]


def parse_size(value: SizeLike, what: str = "size") -> int:
    """Bytes from an int or a string like "128M", "2GiB", "1T", "0x80000000"."""
    if isinstance(value, bool):
        raise ArgumentError(f"{what}: expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ArgumentError(f"{what}: negative size {value}")
        return value
    if not isinstance(value, str):
        raise ArgumentError(f"{what}: expected a size, got {value!r}")
    # hex bytes ("0x1b0000000"), or a decimal number with an optional binary unit
    # ("128M", "2GiB", "1.5T", "4096", "64KB"); nothing else
    m = _SIZE.match(value)
    if not m:
        raise ArgumentError(
            f"{what}: cannot parse size {value!r} (try 128M, 2G, 1T, 0x80000000)"
        ) from None
    if m.group("hex"):
        return int(m.group("hex"), 16)
    n = float(m.group("num"))
    unit = (m.group("unit") or "").upper()
    if n < 0:
        raise ArgumentError(f"{what}: negative size {value!r}")
    out = int(n * _UNITS[unit])
    if out != n * _UNITS[unit]:
        raise ArgumentError(f"{what}: {value!r} is not a whole number of bytes")
    return out


def human(n: int) -> str:
    """lsmem-style size: 2G, 128M, 1.5T, 0B."""
    if n == 0:
        return "0B"
    for unit, mult in (
        ("P", 1 << 50),
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ):
        if n >= mult:
            v = n / mult
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{n}B"
