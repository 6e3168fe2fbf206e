"""Sizes with suffixes ("128M", "2G", "1T", "0x80000000") and their display."""

from __future__ import annotations

from typing import Union

from .errors import ArgumentError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}

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
    s = value.strip().upper().replace("IB", "").replace("B", "")
    try:
        if s.startswith("0X"):
            return int(s, 16)
        num, unit = s, ""
        if s and s[-1] in _UNITS:
            num, unit = s[:-1], s[-1]
        n = float(num)
    except ValueError:
        raise ArgumentError(f"{what}: cannot parse size {value!r} (try 128M, 2G, 1T)") from None
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
