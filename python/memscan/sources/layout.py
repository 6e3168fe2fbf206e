"""The declarative layout every source produces, and its build into the native model.

A layout is byte ranges of kinds ``ram`` (System RAM), ``reserved`` (memblock-reserved pages
inside RAM: kernel image, crash kernel, firmware data in RAM), ``device`` (pmem hot-added as
ZONE_DEVICE) on NUMA nodes, plus geometry, zones (derived from the arch's zone limits unless
given), offline blocks and hugetlb sizes. As a dict or JSON file::

    {"arch": "x86_64", "block_size": "2G",
     "ranges": [{"start": "0x100000000", "end": "0x3040000000", "kind": "ram", "nid": 0},
                {"start": "0x3040000000", "size": "16G", "kind": "ram", "driver": "virtio_mem"},
                {"start": "0x3060000000", "size": "1512G", "kind": "device"}],
     "offline_blocks": [], "geometry": {"pageblock_order": 9}}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from .. import kinds
from ..errors import LayoutError
from ..sizes import parse_size

#: Zone limits per arch (upper bound in bytes, exclusive), in zone order. x86_64 DMA < 16 MiB,
#: DMA32 < 4 GiB; s390x DMA < 2 GiB; ppc64 pseries: everything in Normal. [R] arm64 depends on
#: where DRAM starts: see ``zone_limits``.
ZONE_LIMITS: Dict[str, List[Tuple[str, int]]] = {
    "x86_64": [("DMA", 16 << 20), ("DMA32", 4 << 30), ("Normal", 1 << 62)],
    "s390x": [("DMA", 2 << 30), ("Normal", 1 << 62)],
    "ppc64": [("Normal", 1 << 62)],
}

#: arm64 zone_dma_bits: min(32, the DT's and IORT's DMA limits). 32 unless firmware narrows
#: it (a Raspberry Pi 4's dma-ranges give 30).
ARM64_ZONE_DMA_BITS = 32


def zone_limits(arch: str, dram_start: int, dram_end: int) -> List[Tuple[str, int]]:
    """The arch's zone limits for DRAM spanning [dram_start, dram_end) bytes.

    arm64 follows zone_sizes_init() / max_zone_phys() as read at torvalds/linux 019bc1f
    (arch/arm64/mm/init.c; the first release with this rule was not checked, [R] v5.1x):
    a zone of N bits ends at 2^N, but at 4 GiB when DRAM starts above 2^N, and covers all
    DRAM when DRAM starts above 4 GiB; never past the end of DRAM. So ZONE_DMA (32 bits)
    holds everything below 4 GiB and ZONE_DMA32 is empty, and a machine whose DRAM starts
    above 4 GiB is all DMA (util-linux's aarch64_16K_16g dump: DRAM at 1 TiB, every block's
    valid_zones "DMA"). v5.5 (1a8e1cef7603, [R]) placed a 30-bit DMA window at DRAM's start
    rounded down instead; zones are a boot-time property of the layout here and follow
    today's rule for both kernel profiles.
    """
    arch = canonical_arch(arch)
    if arch != "arm64":
        return ZONE_LIMITS[arch]

    def max_zone_phys(bits: int) -> int:
        mask = (1 << bits) - 1
        if dram_start > 0xFFFF_FFFF:
            mask = (1 << 64) - 1
        elif dram_start > mask:
            mask = 0xFFFF_FFFF
        return min(mask, dram_end - 1) + 1

    dma = max_zone_phys(ARM64_ZONE_DMA_BITS)
    return [("DMA", dma), ("DMA32", max(dma, max_zone_phys(32))), ("Normal", 1 << 62)]


#: arch names and their aliases (from the core's vocabulary, src/geometry.rs)
ARCH_ALIASES = kinds.ARCH_ALIASES

PAGE_SHIFTS = {"4K": 12, "16K": 14, "64K": 16}


def page_shift_of(page_size: str) -> int:
    """log2 of a page size given as "4K", "16K" or "64K" (ArgumentError otherwise)."""
    try:
        return PAGE_SHIFTS[str(page_size).upper()]
    except KeyError:
        from ..errors import ArgumentError

        raise ArgumentError(f"page_size {page_size!r} is not 4K, 16K or 64K") from None


def default_page_shift(arch: str) -> int:
    """The arch's default page shift, from the core's default geometry (64K on ppc64)."""
    from .. import _core

    return int(_core.default_geometry(canonical_arch(arch))["page_shift"])


def canonical_arch(arch: str) -> str:
    try:
        return ARCH_ALIASES[arch.lower()]
    except (KeyError, AttributeError):
        from ..errors import GeometryError

        raise GeometryError(f"unknown arch {arch!r} (known: {', '.join(kinds.ARCHES)})") from None


@dataclass
class Range:
    """A byte range [start, end) of one kind on one node."""

    start: int
    end: int
    kind: str
    nid: int = 0
    #: for ``device``: bytes at its start whose struct pages are never initialised (the
    #: altmap reserve that holds the memmap); ``None`` computes it.
    uninit: Optional[int] = None
    #: for ``ram``: the driver that added it with add_memory_driver_managed() (iomem
    #: "System RAM (virtio_mem)" → "virtio_mem"); None for boot RAM and plain add_memory()
    driver: Optional[str] = None


@dataclass
class Layout:
    arch: str = "x86_64"
    ranges: List[Range] = field(default_factory=list)
    block_size: Optional[int] = None
    geometry: Dict[str, int] = field(default_factory=dict)
    zones: Optional[List[Tuple[int, str, int, int]]] = None  # (nid, zone, start_pfn, end_pfn)
    offline_blocks: List[int] = field(default_factory=list)
    hstates: List[Tuple[int, bool]] = field(default_factory=list)
    name: str = "layout"
    #: the kernel whose geometry defaults apply where versions differ (arm64 sections:
    #: 1 GiB up to v5.11, 128/512 MiB from v5.12); None takes v5.5's
    kernel: Optional[str] = None

    def page_shift(self) -> int:
        if "page_shift" in self.geometry:
            return int(self.geometry["page_shift"])
        return default_page_shift(self.arch)

    # -- derived pieces ---------------------------------------------------------------------
    def pfn_ranges(self) -> Dict[str, List[Tuple[int, int, int, int]]]:
        """(start_pfn, end_pfn, nid, uninit_pages) per kind. RAM is rounded inwards (a
        partial page is a hole), reserved outwards."""
        shift = self.page_shift()
        page = 1 << shift
        out: Dict[str, List[Tuple[int, int, int, int]]] = {"ram": [], "reserved": [], "device": []}
        for r in self.ranges:
            if r.kind not in out:
                raise LayoutError(
                    f"{self.name}: range {r.start:#x}-{r.end:#x} has unknown kind {r.kind!r} "
                    "(ram, reserved, device)"
                )
            if r.end <= r.start:
                raise LayoutError(f"{self.name}: empty or inverted range {r.start:#x}-{r.end:#x}")
            if r.kind == "reserved":
                s, e = r.start >> shift, (r.end + page - 1) >> shift
            else:
                s, e = (r.start + page - 1) >> shift, r.end >> shift
            if e <= s:
                continue
            uninit = 0
            if r.kind == "device":
                uninit = (
                    r.uninit if r.uninit is not None else default_altmap_bytes(r.start, shift)
                ) >> shift
            out[r.kind].append((s, e, r.nid, uninit))
        for k in out:
            out[k].sort()
        # Reserved ranges are rounded outwards, so two resources that share a page (iomem's
        # "Kernel code 01000000-01e01040" and "Kernel data 01e01041-...") meet in that page:
        # memblock reserves a page if any byte of it is reserved, so they merge.
        merged: List[Tuple[int, int, int, int]] = []
        for s, e, nid, u in out["reserved"]:
            if merged and s < merged[-1][1] and nid == merged[-1][2]:
                ps, pe, pn, pu = merged[-1]
                merged[-1] = (ps, max(pe, e), pn, pu)
            else:
                merged.append((s, e, nid, u))
        out["reserved"] = merged
        return out

    def driver_managed_pfns(self) -> List[Tuple[int, int, str]]:
        """(start_pfn, end_pfn, driver) of the RAM ranges a driver added, rounded inwards
        as RAM is."""
        shift = self.page_shift()
        page = 1 << shift
        out = []
        for r in self.ranges:
            if r.kind == "ram" and r.driver:
                s, e = (r.start + page - 1) >> shift, r.end >> shift
                if s < e:
                    out.append((s, e, r.driver))
        return sorted(out)

    def derived_zones(
        self, ram: List[Tuple[int, int, int, int]]
    ) -> List[Tuple[int, str, int, int]]:
        """Zone spans as free_area_init() computes them: per node, each zone's limits clipped
        to the node's first and last RAM pfn; zones with no RAM are left out."""
        shift = self.page_shift()
        limits = zone_limits(
            self.arch, min(r[0] for r in ram) << shift, max(r[1] for r in ram) << shift
        )
        zones = []
        by_node: Dict[int, List[Tuple[int, int, int, int]]] = {}
        for r in ram:  # grouped once: a per-node filter is quadratic in nodes
            by_node.setdefault(r[2], []).append(r)
        for nid in sorted(by_node):
            mine = by_node[nid]
            node_start, node_end = min(r[0] for r in mine), max(r[1] for r in mine)
            lo = 0
            for name, hi_bytes in limits:
                hi = hi_bytes >> shift
                s, e = max(lo, node_start), min(hi, node_end)
                if s < e and any(r[0] < e and s < r[1] for r in mine):
                    zones.append((nid, name, s, e))
                lo = hi
        return zones

    def boot_mem_end(self) -> int:
        ends = [r.end for r in self.ranges if r.kind == "ram"]
        return max(ends) if ends else 0


def default_altmap_bytes(start: int, page_shift: int) -> int:
    """Bytes at the start of a pmem namespace in "memmap on device" (fsdax, ``--map=dev``)
    mode whose struct pages are never initialised: the altmap reserve only.

    5.4.59 and v5.5-rc5 drivers/nvdimm/pfn_devs.c: the altmap base is the namespace start
    aligned down to a sub-section (2 MiB, ``init_altmap_base``), and the reserve is the 8 KiB
    info block (``info_block_reserve``, page-aligned) plus that misalignment
    (``init_altmap_reserve``). mm/page_alloc.c ``memmap_init_zone`` starts ZONE_DEVICE init
    at ``base_pfn + reserve`` and initialises the memmap's own pfns PG_reserved, and
    ``memmap_init_zone_device`` the rest: only the reserve stays uninitialised. (memscan
    before this took the whole device memmap, 64 bytes a page, as uninitialised; the seed's
    fault at its first pmem pfn is the same either way.)"""
    page = 1 << page_shift
    sub = 2 << 20
    info = -(-(8 << 10) // page) * page
    return info + (start - start // sub * sub)


def _num(v: Any, what: str) -> int:
    return parse_size(v, what)


def _int(v: Any, what: str, hi: int = (1 << 63) - 1) -> int:
    """A non-negative integer field of a layout (no bool, float or string casts)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise LayoutError(f"{what}: {v!r} is not an integer")
    if not 0 <= v <= hi:
        raise LayoutError(f"{what}: {v} is out of range 0..{hi}")
    return v


def _list(v: Any, what: str) -> List[Any]:
    if not isinstance(v, list):
        raise LayoutError(f"{what}: want a list, got {type(v).__name__}")
    return v


def _hstate(h: Any, what: str) -> Tuple[int, bool]:
    if not isinstance(h, (list, tuple)) or len(h) != 2 or not isinstance(h[1], bool):
        raise LayoutError(f"{what}: want [order, migration_supported (true/false)]")
    return (_int(h[0], f"{what}[0]", 30), h[1])


def layout_from_dict(d: Dict[str, Any], source: str = "<layout>") -> Layout:
    """A Layout from its dict form (see the module docstring)."""
    if not isinstance(d, dict):
        raise LayoutError(f"{source}: a layout is a JSON object / dict, got {type(d).__name__}")
    known = {
        "arch",
        "block_size",
        "ranges",
        "geometry",
        "zones",
        "offline_blocks",
        "hstates",
        "name",
        "page_size",
        "kernel",
    }
    unknown = set(d) - known
    if unknown:
        raise LayoutError(
            f"{source}: unknown layout keys {sorted(unknown)} (known: {sorted(known)})"
        )
    ranges = []
    for i, r in enumerate(_list(d.get("ranges", []), f"{source}: ranges")):
        where = f"{source}: ranges[{i}]"
        if not isinstance(r, dict) or "start" not in r or ("end" not in r and "size" not in r):
            raise LayoutError(f"{where}: needs start and end (exclusive) or size")
        start = _num(r["start"], f"{where}.start")
        end = (
            _num(r["end"], f"{where}.end")
            if "end" in r
            else start + _num(r["size"], f"{where}.size")
        )
        uninit = r.get("uninit")
        kind = r.get("kind", "ram")
        if not isinstance(kind, str):
            raise LayoutError(f"{where}.kind: {kind!r} is not a string")
        driver = r.get("driver")
        if driver is not None and (not isinstance(driver, str) or not driver or kind != "ram"):
            raise LayoutError(f"{where}.driver: {driver!r} must be a driver name on a ram range")
        ranges.append(
            Range(
                start,
                end,
                kind,
                _int(r.get("nid", 0), f"{where}.nid", 1023),
                None if uninit is None else _num(uninit, f"{where}.uninit"),
                driver,
            )
        )
    g = d.get("geometry", {})
    if not isinstance(g, dict):
        raise LayoutError(f"{source}: geometry: want an object, got {type(g).__name__}")
    geometry = {str(k): _int(v, f"{source}: geometry.{k}", 64) for k, v in g.items()}
    if "page_size" in d:
        ps = str(d["page_size"]).upper()
        if ps not in PAGE_SHIFTS:
            raise LayoutError(f"{source}: page_size {d['page_size']!r} is not 4K, 16K or 64K")
        geometry["page_shift"] = PAGE_SHIFTS[ps]
    zones = None
    if "zones" in d:
        zones = []
        for i, z in enumerate(_list(d["zones"], f"{source}: zones")):
            where = f"{source}: zones[{i}]"
            if not isinstance(z, dict) or not {"nid", "zone", "start_pfn", "end_pfn"} <= set(z):
                raise LayoutError(f"{where}: needs nid, zone, start_pfn and end_pfn")
            if not isinstance(z["zone"], str):
                raise LayoutError(f"{where}.zone: {z['zone']!r} is not a zone name")
            zones.append(
                (
                    _int(z["nid"], f"{where}.nid", 1023),
                    z["zone"],
                    _int(z["start_pfn"], f"{where}.start_pfn"),
                    _int(z["end_pfn"], f"{where}.end_pfn"),
                )
            )
    return Layout(
        arch=str(d.get("arch", "x86_64")),
        ranges=ranges,
        block_size=None
        if d.get("block_size") is None
        else _num(d["block_size"], f"{source}: block_size"),
        geometry=geometry,
        zones=zones,
        offline_blocks=[
            _int(b, f"{source}: offline_blocks[{i}]")
            for i, b in enumerate(_list(d.get("offline_blocks", []), f"{source}: offline_blocks"))
        ],
        hstates=[
            _hstate(h, f"{source}: hstates[{i}]")
            for i, h in enumerate(_list(d.get("hstates", []), f"{source}: hstates"))
        ],
        name=str(d.get("name", source)),
        kernel=None if d.get("kernel") is None else str(d["kernel"]),
    )


def load_layout(src: Union[Dict[str, Any], str, os.PathLike[str]]) -> Layout:
    """A Layout from a dict, or a JSON file path."""
    if isinstance(src, dict):
        return layout_from_dict(src)
    path = os.fspath(src)
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise LayoutError(f"{path}: not valid JSON: {e}") from None
    except OSError as e:
        raise LayoutError(f"{path}: cannot read layout: {e.strerror}") from None
    return layout_from_dict(d, source=path)
