"""The synthetic generator: machines of any size with one contiguous RAM range per node.

RAM starts where the arch usually starts it: 4 GiB on x86_64 (above the 32-bit PCI hole; the
low map is left out), 1 GiB on arm64, 0 on ppc64 and s390x. With ``nodes`` > 1 the RAM is
split evenly, at block boundaries. ``pmem`` adds a ZONE_DEVICE range after the RAM.
"""

from __future__ import annotations

from typing import Optional

from .. import _core
from ..errors import ArgumentError, GeometryError
from ..sizes import SizeLike, parse_size
from .layout import Layout, Range, canonical_arch, page_shift_of

RAM_START = {"x86_64": 4 << 30, "arm64": 1 << 30, "ppc64": 0, "s390x": 0}


def synthetic_layout(
    total: SizeLike,
    arch: str = "x86_64",
    block_size: Optional[SizeLike] = None,
    nodes: int = 1,
    pmem: SizeLike = 0,
    page_size: Optional[str] = None,
    kernel: Optional[str] = None,
) -> Layout:
    arch = canonical_arch(arch)
    size = parse_size(total, "total")
    bs = None if block_size is None else parse_size(block_size, "block_size")
    if size <= 0:
        raise ArgumentError("total: a machine needs some memory")
    if nodes < 1:
        raise ArgumentError(f"nodes: need at least one node, got {nodes}")
    if bs is not None and (bs <= 0 or bs & (bs - 1)):
        # refused before any per-node work (the core would refuse it after the layout)
        raise GeometryError(f"block_size {block_size}: {bs:#x} is not a power of two")
    geometry = {}
    if page_size is not None:
        geometry["page_shift"] = page_shift_of(page_size)
    start = RAM_START[arch]
    # nodes split at block boundaries: the core's default block size for this arch, page size
    # and kernel (x86's probe depends on the end of RAM: its smallest answer, 128 MiB, is a
    # boundary for every larger one)
    unit = bs or _core.default_geometry(arch, geometry, 0, kernel)["block_size"]
    per = (size // nodes) // unit * unit
    if per == 0:
        raise ArgumentError(f"total {total} is too small for {nodes} nodes of whole blocks")
    ranges = []
    pos = start
    for nid in range(nodes):
        length = per if nid < nodes - 1 else size - per * (nodes - 1)
        ranges.append(Range(pos, pos + length, "ram", nid))
        pos += length
    p = parse_size(pmem, "pmem")
    if p:
        pstart = (pos + unit - 1) // unit * unit
        ranges.append(Range(pstart, pstart + p, "device", nodes - 1))
    name = f"synthetic {total} {arch}" + (f", {nodes} nodes" if nodes > 1 else "")
    return Layout(
        arch=arch, ranges=ranges, block_size=bs, geometry=geometry, name=name, kernel=kernel
    )
