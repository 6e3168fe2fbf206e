"""The slow, obviously faithful reference model: the same kernel functions as the Rust core,
written line by line after the v5.5/v5.6 source (kernel-semantics.md sections 2-4), over the
same page bytes. It is the oracle the core is tested against; never use it for speed.

Each function names the kernel function it follows. Costs are counted exactly as the core
counts them (one struct-page read per page a function looks at, per call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .kinds import ZONE_NAMES, PageKind

K = PageKind
MEMORY_OFFLINE = 0x1
X86_VMEMMAP_BASE = 0xFFFFEA0000000000

SEC_PRESENT, SEC_ONLINE, SEC_EARLY, SEC_DEVICE = 1, 2, 4, 8


class KernelFault(Exception):
    """Raised where the kernel would BUG, oops, or read garbage."""

    def __init__(self, function: str, access: str, pfn: int, kind: str, message: str):
        super().__init__(message)
        self.function, self.access, self.pfn, self.kind, self.message = (
            function,
            access,
            pfn,
            kind,
            message,
        )


@dataclass
class Profile:
    version: str  # "5.5", "5.6-rc", "5.6", "6.1"
    debug_vm: bool
    debug_vm_pgflags: bool
    memory_hotremove: bool

    @staticmethod
    def parse(spec: str, arch: str) -> Profile:
        s = spec.strip()
        debug = s.endswith("+debug")
        v = s[: -len("+debug")] if debug else s
        if v.startswith("5.6-rc"):
            version = "5.6-rc"
        elif v == "5.5" or v.startswith("5.5."):
            version = "5.5"
        elif v == "5.6" or v.startswith("5.6."):
            version = "5.6"
        elif v == "6.1" or v.startswith("6.1."):
            version = "6.1"
        else:
            raise ValueError(spec)
        hotremove = not (arch == "arm64" and version in ("5.5", "5.6-rc", "5.6"))
        return Profile(version, debug, debug, hotremove)

    def removable_scans(self) -> bool:
        return self.version in ("5.5", "5.6-rc")

    def holes_zeroed(self) -> bool:
        return self.version in ("5.5", "5.6-rc", "5.6")


@dataclass
class Cost:
    struct_pages_read: int = 0
    pageblocks_visited: int = 0
    sections_scanned: int = 0


@dataclass
class Snapshot:
    """Everything the kernel functions read, copied out of a Machine."""

    arch: str
    page_shift: int
    pfn_section_shift: int
    pageblock_order: int
    max_order: int
    sections_per_block: int
    pages: Any  # indexable pfn -> page byte
    section_flags: Any
    section_nid: Any
    pageblock_bits: Any
    zones: Dict[Tuple[int, str], Tuple[int, int]]
    nodes_online: List[bool]
    hstates: List[Tuple[int, bool]]
    block_states: Any

    @staticmethod
    def of(machine: Any) -> Snapshot:
        g = machine.geometry
        core = machine._core
        secs = core.sections()
        return Snapshot(
            arch=g.arch,
            page_shift=g.page_shift,
            pfn_section_shift=g.section_size_bits - g.page_shift,
            pageblock_order=g.pageblock_order,
            max_order=g.max_order,
            sections_per_block=g.sections_per_block,
            pages=core.page_bytes(0, g.max_pfn),
            section_flags=secs["flags"],
            section_nid=secs["nid"],
            pageblock_bits=core.pageblock_bits(),
            zones={(nid, z): (s, e) for nid, z, s, e in core.zones()},
            nodes_online=list(core.nodes_online()),
            hstates=list(core.hstates()),
            block_states=core.block_states(),
        )


@dataclass
class Result:
    value: Optional[int]
    fault: Optional[Dict[str, Any]]
    note: Optional[Dict[str, Any]]
    scanned: bool
    cost: Cost = field(default_factory=Cost)


class Reference:
    def __init__(self, snap: Snapshot, profile: Profile):
        self.s = snap
        self.p = profile
        self.cost = Cost()
        self.note: Optional[KernelFault] = None

    # -- struct page ------------------------------------------------------------------------
    def _addr(self, pfn: int) -> str:
        if self.s.arch == "x86_64":
            return f"{X86_VMEMMAP_BASE + pfn * 64:x}"
        return f"<struct page of pfn {pfn:#x}>"

    def _byte(self, pfn: int) -> int:
        if pfn >= len(self.s.pages):
            return int(K.NOMEMMAP)
        return int(self.s.pages[pfn])

    def memmap(self, pfn: int) -> Tuple[str, int, str, bool]:
        """("valid"|"poisoned"|"garbage"|"missing", nid, zone, zeroed)."""
        b = self._byte(pfn)
        k, f = b & 15, b >> 4
        if k == K.NOMEMMAP:
            return ("missing", 0, "", False)
        if k == K.UNINIT:
            return ("poisoned" if self.p.debug_vm else "garbage", 0, "", False)
        if k == K.ZEROED and not (f == 1 and not self.p.holes_zeroed()):
            return ("valid", 0, "DMA", True)
        sec = pfn >> self.s.pfn_section_shift
        zone = ZONE_NAMES[int(self.s.pageblock_bits[pfn >> self.s.pageblock_order]) >> 4]
        return ("valid", int(self.s.section_nid[sec]), zone, False)

    def _bug(self, function: str, access: str, pfn: int) -> KernelFault:
        return KernelFault(
            function,
            access,
            pfn,
            "bug",
            f"page:{self._addr(pfn)} is uninitialized and poisoned; "
            "kernel BUG: VM_BUG_ON_PAGE(PagePoisoned(p))",
        )

    def _missing(self, function: str, pfn: int) -> KernelFault:
        return KernelFault(
            function,
            "pfn_to_page",
            pfn,
            "oops",
            f"Oops: unable to handle page fault in vmemmap (no memmap for this section) "
            f"(struct page {self._addr(pfn)})",
        )

    def page_zone(self, pfn: int, function: str) -> Tuple[int, str, bool]:
        """page_zone(): &NODE_DATA(page_to_nid(page))->node_zones[page_zonenum(page)]."""
        st, nid, zone, zeroed = self.memmap(pfn)
        if st == "valid":
            return nid, zone, zeroed
        if st == "poisoned" and self.p.debug_vm_pgflags:
            raise self._bug(function, "page_zone -> page_to_nid", pfn)
        if st == "poisoned":
            raise KernelFault(
                function,
                "page_zone",
                pfn,
                "oops",
                "Oops: NULL pointer dereference: NODE_DATA() of the poisoned node id "
                f"(struct page {self._addr(pfn)})",
            )
        if st == "garbage":
            raise KernelFault(
                function,
                "page_zone",
                pfn,
                "oops",
                "Oops: wild pointer from the garbage node/zone bits of an uninitialized "
                f"struct page (struct page {self._addr(pfn)})",
            )
        raise self._missing(function, pfn)

    def page_to_nid(self, pfn: int, function: str) -> Optional[Tuple[int, bool]]:
        """page_to_nid(); None is the poisoned node id (no node has it)."""
        st, nid, _, zeroed = self.memmap(pfn)
        if st == "valid":
            return nid, zeroed
        if st == "poisoned" and self.p.debug_vm_pgflags:
            raise self._bug(function, "page_to_nid", pfn)
        if st == "poisoned":
            return None
        if st == "garbage":
            raise KernelFault(
                function,
                "page_to_nid",
                pfn,
                "undefined",
                f"node id read from the garbage of uninitialized struct page {self._addr(pfn)}",
            )
        raise self._missing(function, pfn)

    def zone_span(self, nid: int, zone: str) -> Tuple[int, int]:
        return self.s.zones.get((nid, zone), (0, 0))

    def node_online(self, nid: int) -> bool:
        return 0 <= nid < len(self.s.nodes_online) and self.s.nodes_online[nid]

    def _note_zeroed(self, function: str, access: str, pfn: int, nid: int, zone: str) -> None:
        sec = pfn >> self.s.pfn_section_shift
        real = (
            int(self.s.section_nid[sec]),
            ZONE_NAMES[int(self.s.pageblock_bits[pfn >> self.s.pageblock_order]) >> 4],
        )
        if self.note is None and real != (nid, zone):
            self.note = KernelFault(
                function,
                access,
                pfn,
                "wrong-answer",
                f"zeroed struct page {self._addr(pfn)} reads as node 0, zone DMA",
            )

    # -- mm/page_alloc.c ----------------------------------------------------------------------
    def has_unmovable_pages(
        self, zone: str, pfn: int, count: int, migratetype: str, flags: int
    ) -> Optional[Tuple[int, str]]:
        """has_unmovable_pages() v5.5 (v5.6: no count, returns the page; same outcomes)."""
        F = "has_unmovable_pages"
        nr = 1 << self.s.pageblock_order
        # is_migrate_cma_page(page)
        if int(self.s.pageblock_bits[pfn >> self.s.pageblock_order]) & 15 == 4:
            if migratetype == "CMA":
                return None
            return (pfn, "CMA page" if self.p.version == "5.5" else "unmovable page")
        found = 0
        it = 0
        while it < nr:
            check = pfn + it
            # pfn_valid_within(check): always true here.
            self.cost.struct_pages_read += 1
            st = self.memmap(check)[0]
            if st == "missing":
                raise self._missing(F, check)
            if st == "poisoned" and self.p.debug_vm_pgflags:
                raise self._bug(F, "PageReserved", check)
            if st == "poisoned":
                return (check, "unmovable page")  # all flags set: PageReserved
            if st == "garbage":
                raise KernelFault(
                    F,
                    "PageReserved",
                    check,
                    "undefined",
                    f"flags read from the garbage of uninitialized struct page {self._addr(check)}",
                )
            b = self._byte(check)
            k, f = b & 15, b >> 4
            # PageReserved(page)
            if k == K.RESERVED or (k == K.ZEROED and f == 1 and not self.p.holes_zeroed()):
                return (check, "unmovable page")
            # if (zone_idx(zone) == ZONE_MOVABLE) continue;
            if zone == "Movable":
                it += 1
                continue
            # PageHuge(page)
            if k in (K.HUGETLB_HEAD, K.HUGETLB_TAIL):
                idx = f & 7
                if idx >= len(self.s.hstates):
                    return (check, "unmovable page")
                order, migratable = self.s.hstates[idx]
                if not migratable:
                    return (check, "unmovable page")
                head = check & ~((1 << order) - 1)
                skip = (1 << order) - (check - head)
                it += skip - 1
                it += 1
                continue
            # if (!page_ref_count(page)) { if (PageBuddy(page)) iter += (1 << page_order(page)) - 1; continue; }
            if k in (K.FREE, K.THP_TAIL, K.ZEROED, K.BUDDY):
                if k == K.BUDDY:
                    it += (1 << f) - 1
                it += 1
                continue
            # if ((flags & MEMORY_OFFLINE) && PageHWPoison(page)) continue;
            if (flags & MEMORY_OFFLINE) and k == K.HWPOISON:
                it += 1
                continue
            # if (__PageMovable(page)) continue;
            if k == K.MOVABLE:
                it += 1
                continue
            # if (!PageLRU(page)) found++;
            if k not in (K.LRU, K.PINNED, K.THP_HEAD):
                found += 1
            if found > count:
                return (check, "unmovable page")
            it += 1
        return None

    # -- mm/memory_hotplug.c (v5.5) --------------------------------------------------------------
    def is_pageblock_removable_nolock(self, pfn: int) -> bool:
        F = "is_pageblock_removable_nolock"
        self.cost.pageblocks_visited += 1
        self.cost.struct_pages_read += 1
        r = self.page_to_nid(pfn, F)
        if r is None:
            return False
        nid, zeroed = r
        if not self.node_online(nid):
            return False
        _, zone, _ = self.page_zone(pfn, F)
        if zeroed:
            self._note_zeroed(F, "page_to_nid", pfn, nid, zone)
        s, e = self.zone_span(nid, zone)
        if not (s <= pfn < e):
            return False
        return self.has_unmovable_pages(zone, pfn, 0, "MOVABLE", MEMORY_OFFLINE) is None

    def next_active_pageblock(self, pfn: int) -> int:
        nr = 1 << self.s.pageblock_order
        if pfn & (nr - 1):
            raise KernelFault(
                "next_active_pageblock",
                "BUG_ON(pfn & (pageblock_nr_pages - 1))",
                pfn,
                "bug",
                f"kernel BUG: pfn {pfn:#x} is not pageblock-aligned",
            )
        self.cost.struct_pages_read += 1
        b = self._byte(pfn)
        if b & 15 == K.BUDDY and (b >> 4) >= self.s.pageblock_order:
            order = b >> 4
            if order < self.s.max_order and order >= self.s.pageblock_order:
                return pfn + (1 << order)
        return pfn + nr

    def is_mem_section_removable(self, start_pfn: int, nr_pages: int) -> bool:
        F = "is_mem_section_removable"
        self.cost.sections_scanned += 1
        self.cost.struct_pages_read += 1
        nid, zone, zeroed = self.page_zone(start_pfn, F)
        if zeroed:
            self._note_zeroed(F, "page_zone", start_pfn, nid, zone)
        end_pfn = min(start_pfn + nr_pages, self.zone_span(nid, zone)[1])
        pfn = start_pfn
        while pfn < end_pfn:
            if not self.is_pageblock_removable_nolock(pfn):
                return False
            pfn = self.next_active_pageblock(pfn)
        return True

    # -- drivers/base/memory.c ----------------------------------------------------------------
    def removable_show(self, block: int) -> Result:
        state = int(self.s.block_states[block])
        if not self.p.removable_scans():
            return Result(int(self.p.memory_hotremove), None, None, False)
        if state != 1:  # MEM_OFFLINE, MEM_GOING_OFFLINE
            return Result(1, None, None, False)
        ret = 1
        spb = self.s.sections_per_block
        pps = 1 << self.s.pfn_section_shift
        for i in range(spb):
            nr = block * spb + i
            if not (int(self.s.section_flags[nr]) & SEC_PRESENT):
                continue
            if not self.p.memory_hotremove:
                ret &= 0
                continue
            try:
                ret &= int(self.is_mem_section_removable(nr << self.s.pfn_section_shift, pps))
            except KernelFault as f:
                return Result(
                    None, _fault_dict(self, f), _fault_dict(self, self.note), True, self.cost
                )
        return Result(ret, None, _fault_dict(self, self.note), True, self.cost)


def _fault_dict(ref: Reference, f: Optional[KernelFault]) -> Optional[Dict[str, Any]]:
    if f is None:
        return None
    s = ref.s
    return {
        "function": f.function,
        "access": f.access,
        "pfn": f.pfn,
        "phys": f.pfn << s.page_shift,
        "section": f.pfn >> s.pfn_section_shift,
        "block": (f.pfn >> s.pfn_section_shift) // s.sections_per_block,
        "kind": f.kind,
        "message": f.message,
    }


def removable(machine: Any, block: int, kernel: str, snap: Optional[Snapshot] = None) -> Result:
    """Reference ``removable_show()`` of one block of a Machine."""
    snap = snap or Snapshot.of(machine)
    return Reference(snap, Profile.parse(kernel, snap.arch)).removable_show(block)
