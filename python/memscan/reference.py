"""The slow, obviously faithful reference model: the same kernel functions as the Rust core,
written line by line after the v5.5/v5.6 source (kernel-semantics.md sections 2-4), over the
same page bytes. It is the oracle the core is tested against; never use it for speed.

Each function names the kernel function it follows. Costs are counted exactly as the core
counts them (one struct-page read per page a function looks at, per call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ._core import X86_VMEMMAP_BASE
from .kernel import Kernel
from .kinds import (
    HUGETLB_FREE,
    KERNEL_ZONES,
    LRU_BATCH,
    MEMORY_ZONES,
    SEC_DEVICE,
    SEC_EARLY,
    SEC_ONLINE,
    SEC_PRESENT,
    STRUCT_PAGE_BYTES,
    VOCABULARY,
    ZEROED_HOLE,
    ZONE_NAMES,
    PageKind,
)

K = PageKind
MEMORY_OFFLINE = 0x1


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
    version: str  # "5.4", "5.5", "5.6-rc", "5.6", "6.1"
    debug_vm: bool
    debug_vm_pgflags: bool
    memory_hotremove: bool

    @staticmethod
    def parse(spec: Any, arch: str) -> Profile:
        # the name is read by the one parser (memscan.kernel); what each version does is this
        # oracle's own reading, in the methods below
        k = Kernel.parse(spec, arch)
        hotremove = not (arch == "arm64" and k.version in ("5.4", "5.5", "5.6-rc", "5.6"))
        return Profile(k.version, k.debug_vm, k.debug_vm_pgflags, hotremove)

    def removable_scans(self) -> bool:
        return self.version in ("5.4", "5.5", "5.6-rc")

    def holes_zeroed(self) -> bool:
        # zero_resv_unavail() in 5.4.18 and 5.5-rc5; 5.6-rc1 init_unavailable_mem(): reserved
        return self.version in ("5.4", "5.5")

    def holes_in_zone_initialised(self) -> bool:
        # memmap_init_zone() walks each zone span, holes of present sections included
        # (5.4.18, 5.5-rc5, 5.6.4); 6.1 walks memblock ranges only
        return self.version in ("5.4", "5.5", "5.6-rc", "5.6")

    def has_memory_holes_check(self) -> bool:
        # v5.5 __offline_pages: walk_system_ram_range + count_system_ram_pages_cb (not in 5.4)
        return self.version != "5.4"


@dataclass
class Cost:
    """What a removable read touched (the core's ScanCost::FIELDS; test_vocabulary checks)."""

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
    system_ram: List[Tuple[int, int]] = field(default_factory=list)
    #: (start_pfn, end_pfn, driver) of driver-managed RAM
    driver_managed: List[Tuple[int, int, str]] = field(default_factory=list)
    standby_blocks: List[int] = field(default_factory=list)
    hugetlb_reserved: List[int] = field(default_factory=list)
    #: what never-initialised struct pages hold without DEBUG_VM: "garbage" or "zero"
    uninit_memmap: str = "garbage"
    #: 6.1 mem->zone per block, (nid, zone) or None: state the kernel keeps, not derived
    mem_zone: List[Optional[Tuple[int, str]]] = field(default_factory=list)
    #: HugeTLB Vmemmap Optimization on (hugetlb_free_vmemmap=on)
    hvo: bool = False
    #: (user min_free_kbytes, THP enabled, hotplugged since boot)
    min_free_inputs: Tuple[Optional[int], bool, bool] = (None, True, False)

    @staticmethod
    def of(machine: Any) -> Snapshot:
        g = machine.geometry
        st = machine.model_state()
        return Snapshot(
            arch=g.arch,
            page_shift=g.page_shift,
            pfn_section_shift=g.section_size_bits - g.page_shift,
            pageblock_order=g.pageblock_order,
            max_order=g.max_order,
            sections_per_block=g.sections_per_block,
            pages=st["pages"],
            section_flags=st["section_flags"],
            section_nid=st["section_nid"],
            pageblock_bits=st["pageblock_bits"],
            zones={(nid, z): (s, e) for nid, z, s, e in st["zones"]},
            nodes_online=st["nodes_online"],
            hstates=st["hstates"],
            block_states=st["block_states"],
            system_ram=st["system_ram"],
            driver_managed=st["driver_managed"],
            standby_blocks=st["standby_blocks"],
            hugetlb_reserved=st["hugetlb_reserved"],
            uninit_memmap=st["uninit_memmap"],
            mem_zone=[None if z is None else (int(z[0]), z[1]) for z in st["mem_zones"]],
            hvo=st["hvo"],
            min_free_inputs=st["min_free_inputs"],
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
            return f"{X86_VMEMMAP_BASE + pfn * STRUCT_PAGE_BYTES:x}"
        return f"<struct page of pfn {pfn:#x}>"

    def _byte(self, pfn: int) -> int:
        if pfn >= len(self.s.pages):
            return int(K.NOMEMMAP)
        b = int(self.s.pages[pfn])
        if b & 15 == K.UNINIT and self._uninit_zero():
            return int(K.ZEROED)  # a zeroed, never-initialised struct page reads as zeroed
        return b

    def _uninit_zero(self) -> bool:
        return not self.p.debug_vm and self.s.uninit_memmap == "zero"

    def memmap(self, pfn: int) -> Tuple[str, int, str, bool]:
        """("valid"|"poisoned"|"garbage"|"missing", nid, zone, zeroed)."""
        b = self._byte(pfn)
        k, f = b & 15, b >> 4
        if k == K.NOMEMMAP:
            return ("missing", 0, "", False)
        if k == K.UNINIT:
            return ("poisoned" if self.p.debug_vm else "garbage", 0, "", False)
        if k == K.ZEROED and f != ZEROED_HOLE:
            return ("valid", 0, self.zone_zero(), True)
        if k == K.ZEROED and self.p.version != "6.1" and self.hole_as(pfn) != "in-use":
            # zeroed (5.4/5.5) or initialised as node 0, zone 0, PG_reserved (5.6)
            return ("valid", 0, self.zone_zero(), True)
        sec = pfn >> self.s.pfn_section_shift
        zone = ZONE_NAMES[int(self.s.pageblock_bits[pfn >> self.s.pageblock_order]) >> 4]
        return ("valid", int(self.s.section_nid[sec]), zone, False)

    def zone_zero(self) -> str:
        """Zone index 0 of enum zone_type, as a zeroed struct page names it: pseries has no
        ZONE_DMA (powerpc Kconfig: only PPC_BOOK3E_64) nor DMA32, so Normal; arm64 got
        ZONE_DMA in 5.5, so 5.4's first zone is DMA32; DMA elsewhere."""
        if self.s.arch == "ppc64":
            return "Normal"
        if self.s.arch == "arm64" and self.p.version == "5.4":
            return "DMA32"
        return "DMA"

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
                "Oops: unable to handle page fault or NULL pointer dereference (which one "
                "depends on node_data[] past the last node): NODE_DATA() of the poisoned node "
                f"id (struct page {self._addr(pfn)})",
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

    def hole_as(self, pfn: int) -> str:
        """A hole's struct page: "in-use" (inside a zone span, 5.4..5.6: refcount 1, no
        flags), "zeroed" (5.4/5.5 elsewhere) or "reserved"."""
        if self.p.holes_in_zone_initialised():
            nid = int(self.s.section_nid[pfn >> self.s.pfn_section_shift])
            for (n, z), (lo, hi) in self.s.zones.items():
                if n == nid and z != "Device" and lo <= pfn < hi:
                    return "in-use"
        return "zeroed" if self.p.holes_zeroed() else "reserved"

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
                f"zeroed struct page {self._addr(pfn)} reads as node 0, zone {self.zone_zero()}",
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
            return (pfn, "CMA page" if self.p.version in ("5.4", "5.5") else "unmovable page")
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
            hole = self.hole_as(check) if (k == K.ZEROED and f == ZEROED_HOLE) else None
            if hole == "in-use":
                k = K.UNMOVABLE  # refcount 1, not LRU: found++ below
            if k == K.OFFLINE and self.s.arch == "ppc64" and self.p.version != "5.4":
                k = K.MOVABLE  # pseries CMM balloon page: __PageMovable
            # PageReserved(page)
            if k == K.RESERVED or hole == "reserved":
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


# -- offlining (kernel-semantics.md 6, kernel-6.1-offline.md 2-3) ---------------------------------


@dataclass
class OfflineResult:
    errno: Optional[str]
    reason: Optional[str]
    pfn: Optional[int]
    work: Dict[str, int]


class OfflineReference(Reference):
    """Dry-run ``echo offline > memoryN/state``, step by step after the kernel source."""

    def __init__(self, snap: Snapshot, profile: Profile, patience_rounds: int = 1000):
        super().__init__(snap, profile)
        self.patience = patience_rounds
        # the work counters, named as the core names them (OfflineWork::FIELDS)
        self.work: Dict[str, int] = dict.fromkeys(VOCABULARY["offline_counters"], 0)

    # helpers ------------------------------------------------------------------------------
    def _meta(self, pfn: int) -> Tuple[int, int]:
        sec = pfn >> self.s.pfn_section_shift
        if sec >= len(self.s.section_flags):
            return 0, 0
        return int(self.s.section_flags[sec]), int(self.s.section_nid[sec])

    def _zone_of(self, pfn: int) -> str:
        return ZONE_NAMES[int(self.s.pageblock_bits[pfn >> self.s.pageblock_order]) >> 4]

    def _mt(self, pfn: int) -> int:
        return int(self.s.pageblock_bits[pfn >> self.s.pageblock_order]) & 15

    def _virtio_mem(self, pfn: int) -> bool:
        """Whether pfn lies in RAM virtio-mem added (iomem "System RAM (virtio_mem)")."""
        return any(s <= pfn < e and d == "virtio_mem" for s, e, d in self.s.driver_managed)

    def _fail(self, errno: str, reason: Optional[str], pfn: Optional[int] = None) -> OfflineResult:
        return OfflineResult(errno, reason, pfn, dict(self.work))

    def _block_range(self, block: int) -> Tuple[int, int]:
        n = self.s.sections_per_block << self.s.pfn_section_shift
        return block * n, (block + 1) * n

    def _ram_pages(self, start: int, end: int) -> int:
        """walk_system_ram_range(): pages of "System RAM" resources in [start, end)."""
        return sum(max(0, min(e, end) - max(s, start)) for s, e in self.s.system_ram)

    def mem_zone(self, block: int) -> Optional[Tuple[int, str]]:
        """6.1 mem->zone: kept per block (boot value, then set by online, cleared by offline);
        never recomputed from zone spans."""
        return self.s.mem_zone[block] if block < len(self.s.mem_zone) else None

    def early_node_zone_for_memory_block(self, block: int) -> Optional[Tuple[int, str]]:
        """6.1 boot value of mem->zone: the one populated zone of the block's only node whose
        span intersects the block."""
        spb = self.s.sections_per_block
        nids: List[int] = []
        for sec in range(block * spb, (block + 1) * spb):
            f = int(self.s.section_flags[sec])
            if f & SEC_PRESENT and not f & SEC_DEVICE:
                nid = int(self.s.section_nid[sec])
                if nid not in nids:
                    nids.append(nid)
        if len(nids) != 1:
            return None
        s, e = self._block_range(block)
        hits = [
            z
            for z in MEMORY_ZONES
            if self.zone_span(nids[0], z)[0] < e and s < self.zone_span(nids[0], z)[1]
        ]
        return (nids[0], hits[0]) if len(hits) == 1 else None

    def test_pages_in_a_zone(self, start: int, end: int) -> Optional[Tuple[int, str]]:
        """v5.5 test_pages_in_a_zone(): sample each MAX_ORDER_NR_PAGES of present sections."""
        pps = 1 << self.s.pfn_section_shift
        step = 1 << (self.s.max_order - 1)
        found = None
        pfn = start
        while pfn < end:
            if not self._meta(pfn)[0] & SEC_PRESENT:
                pfn += pps
                continue
            # "if (zone && !zone_spans_pfn(zone, pfn)) return 0" before page_zone()
            if found is not None:
                s, e = self.zone_span(*found)
                if not (s <= pfn < e):
                    return None
            self.work["struct_pages_read"] += 1
            nid, zone, _ = self.page_zone(pfn, "test_pages_in_a_zone")
            if found is not None:
                if found != (nid, zone):
                    return None
            else:
                found = (nid, zone)
            pfn += step
        return found

    def has_unmovable_6_1(self, start: int, end: int) -> Optional[int]:
        """6.1 has_unmovable_pages(start, end, MIGRATE_MOVABLE, MEMORY_OFFLINE|REPORT_FAILURE)."""
        if self._mt(start) == 4:  # MIGRATE_CMA
            return start
        zone = self._zone_of(start)
        nr = 1 << self.s.pageblock_order
        pfn = start
        while pfn < end:
            self.work["struct_pages_read"] += 1
            st = self.memmap(pfn)[0]
            if st in ("missing", "garbage") or (st == "poisoned" and self.p.debug_vm_pgflags):
                raise KernelFault("has_unmovable_pages", "PageReserved", pfn, "bug", "memmap")
            if st == "poisoned":
                return pfn
            b = self._byte(pfn)
            k, f = b & 15, b >> 4
            if k == K.RESERVED or (k == K.ZEROED and f == ZEROED_HOLE):
                return pfn
            if zone == "Movable":
                pfn += 1
                continue
            if k in (K.HUGETLB_HEAD, K.HUGETLB_TAIL):
                idx = f & 7
                if idx >= len(self.s.hstates) or not self.s.hstates[idx][1]:
                    return pfn
                size = 1 << self.s.hstates[idx][0]
                pfn = (pfn // size) * size + size
                continue
            if k in (K.THP_HEAD, K.THP_TAIL):
                pfn = (pfn // nr) * nr + nr
                continue
            if k == K.BUDDY:
                pfn += 1 << f
                continue
            if k in (K.FREE, K.ZEROED, K.MOVABLE, K.LRU, K.PINNED, K.HWPOISON, K.OFFLINE):
                pfn += 1
                continue
            if k == K.UNMOVABLE and f == LRU_BATCH:  # drained by lru_cache_disable()
                pfn += 1
                continue
            return pfn
        return None

    def min_free_pages(self) -> int:
        """min_free_kbytes in pages: int_sqrt(lowmem_kbytes * 16) clamped to 128..65536 KiB
        (5.5-rc5 init_per_zone_wmark_min) or 128..262144 (6.1-rc6 calculate_min_free_kbytes),
        a user value kept when at least as large; then khugepaged's THP raise
        (set_recommended_min_free_kbytes: pageblocks x populated zones up to Normal x 11,
        at most 5% of lowmem), which 5.x recomputes away after a hotplug and 6.1 keeps."""
        import math

        page_kb = (1 << self.s.page_shift) // 1024
        low = 0
        nr = 1 << self.s.pageblock_order
        for sec, f in enumerate(self.s.section_flags.tolist()):
            if f & SEC_ONLINE and not f & SEC_DEVICE:
                base = sec << self.s.pfn_section_shift
                for pb in range(base, base + (1 << self.s.pfn_section_shift), nr):
                    if self._zone_of(pb) != "Movable":
                        low += nr
        v61 = self.p.version == "6.1"
        user, thp, hotplugged = self.s.min_free_inputs
        new_kb = int(math.sqrt(low * page_kb * 16))
        if user is not None and user >= new_kb:
            min_kb = user
        else:
            min_kb = min(max(new_kb, 128), 262144 if v61 else 65536)
        if thp and (v61 or not hotplugged):
            zones = sum(
                1 for (_, z), (lo, hi) in self.s.zones.items() if z in KERNEL_ZONES and lo < hi
            )
            min_kb = max(min_kb, min(nr * zones * 11, low // 20) * page_kb)
        return min_kb * 1024 // (1 << self.s.page_shift)

    # offline_pages ------------------------------------------------------------------------
    def offline(self, block: int) -> OfflineResult:
        """state_store(): an offline block → EINVAL; a going-offline block is being offlined
        under device_hotplug_lock, so lock_device_hotplug_sysfs() restarts this write until
        that offline ends: EINVAL (and no work of its own) if it succeeded, else the same
        failure again."""
        state = int(self.s.block_states[block])
        if state == 2:
            return self._fail("EINVAL", "already offline")
        if state == 3:
            r = self.offline_pages(block)
            if r.errno is None:
                self.work = {k: 0 for k in self.work}
                return self._fail("EINVAL", "already offline")
            return r
        return self.offline_pages(block)

    def offline_pages(self, block: int) -> OfflineResult:
        """__offline_pages() (5.x) / offline_pages() (6.1) of a block taken as online."""
        v61 = self.p.version == "6.1"
        if not self.p.memory_hotremove:
            return self._fail("EINVAL", "no CONFIG_MEMORY_HOTREMOVE")
        start, end = self._block_range(block)
        spb = self.s.sections_per_block
        if v61:
            zone = self.mem_zone(block)
            if zone is None:
                return self._fail("EINVAL", None)
            if self._ram_pages(start, end) != end - start:
                return self._fail("EINVAL", "memory holes")
            self.work["drain_all_pages"] += 1
            self.work["lru_add_drain_all"] += 1
        else:
            count = sum(
                1
                for sec in range(block * spb, (block + 1) * spb)
                if int(self.s.section_flags[sec]) & SEC_PRESENT
                and not int(self.s.section_flags[sec]) & SEC_DEVICE
            )
            if count != spb:
                return self._fail("EINVAL", "non-present sections")
            if self.p.has_memory_holes_check() and self._ram_pages(start, end) != end - start:
                return self._fail("EINVAL", "memory holes")
            try:
                found = self.test_pages_in_a_zone(start, end)
            except KernelFault as f:
                return self._fail("EINVAL", "multizone range", f.pfn)
            if found is None:
                return self._fail("EINVAL", "multizone range")
            zone = found
        # pseries CMM: the isolate notifier in 5.4.18; balloon compaction from 5.5 (its
        # pages __PageMovable: passed by has_unmovable_pages, migrated)
        cmm = self.s.arch == "ppc64" and self.p.version == "5.4"
        balloon = self.s.arch == "ppc64" and self.p.version != "5.4"
        # start_isolate_page_range()
        nr = 1 << self.s.pageblock_order
        pbs = list(range(start, end, nr))
        if v61 and len(pbs) > 1:
            pbs = [pbs[0], pbs[-1]] + pbs[1:-1]
        for pb in pbs:
            if not self._meta(pb)[0] & SEC_ONLINE:
                continue
            if self._mt(pb) == 5:  # MIGRATE_ISOLATE
                return self._fail("EBUSY", "failure to isolate range")
            if v61:
                try:
                    bad = self.has_unmovable_6_1(pb, pb + nr)
                except KernelFault as f:
                    return self._fail("EBUSY", "failure to isolate range", f.pfn)
            else:
                saved = self.cost.struct_pages_read
                try:
                    # v5.5 pseries: the CMM isolate notifier reports its loaned pages as `count`
                    count = (
                        sum(1 for p in range(pb, pb + nr) if self._byte(p) & 15 == K.OFFLINE)
                        if cmm
                        else 0
                    )
                    r = self.has_unmovable_pages(
                        self._zone_of(pb), pb, count, "MOVABLE", MEMORY_OFFLINE | 2
                    )
                except KernelFault as f:
                    self.work["struct_pages_read"] += self.cost.struct_pages_read - saved
                    return self._fail("EBUSY", "failure to isolate range", f.pfn)
                self.work["struct_pages_read"] += self.cost.struct_pages_read - saved
                bad = None if r is None else r[0]
            if bad is not None:
                return self._fail("EBUSY", "failure to isolate range", bad)
            self.work["pageblocks_isolated"] += 1
            if not v61:
                self.work["drain_all_pages"] += 1
        # MEM_GOING_OFFLINE notifiers: s390 sclp_mem_notifier refuses blocks with standby memory
        if self.s.arch == "s390x" and block in self.s.standby_blocks:
            return self._fail("EPERM", "notifier failure")
        # arm64 prevent_bootmem_remove_notifier (6.1)
        if v61 and self.s.arch == "arm64":
            if any(
                int(self.s.section_flags[sec]) & SEC_EARLY
                for sec in range(block * spb, (block + 1) * spb)
            ):
                return self._fail("EPERM", "notifier failure")
        # migration targets: N_MEMORY minus the source node, unless that leaves none
        src = zone[0]
        online_nodes = [n for n, on in enumerate(self.s.nodes_online) if on]
        allowed = [n for n in online_nodes if n != src] or [src]
        kernel_free = movable_free = 0
        by_order = [0] * 16
        for pfn in range(len(self.s.pages)):
            flags, nid = self._meta(pfn)
            if (
                not flags & SEC_ONLINE
                or flags & SEC_DEVICE
                or nid not in allowed
                or start <= pfn < end
            ):
                continue
            if self._mt(pfn) == 5:
                continue
            b = self._byte(pfn)
            if b & 15 in (K.FREE, K.BUDDY):
                if self._zone_of(pfn) == "Movable":
                    movable_free += 1
                else:
                    kernel_free += 1
                if b & 15 == K.BUDDY:
                    by_order[b >> 4] += 1
        # __setup_per_zone_wmarks(): every zone (ZONE_MOVABLE too, not highmem on 64-bit)
        # gets min_free in proportion to its managed pages; the allowed zones keep theirs
        managed: Dict[Tuple[int, int], int] = {}
        for pfn in range(0, len(self.s.pages), 1 << self.s.pageblock_order):
            flags, nid = self._meta(pfn)
            if flags & SEC_ONLINE and not flags & SEC_DEVICE:
                key = (nid, int(self._zone_of(pfn) == "Movable"))
                managed[key] = managed.get(key, 0) + (1 << self.s.pageblock_order)
        total = max(1, sum(managed.values()))
        mins = self.min_free_pages()
        kernel_free = max(
            0, kernel_free - mins * sum(managed.get((n, 0), 0) for n in allowed) // total
        )
        movable_free = max(
            0, movable_free - mins * sum(managed.get((n, 1), 0) for n in allowed) // total
        )
        # the hugetlb pool: free pages machine-wide and on allowed nodes outside the range
        pool_all: Dict[int, int] = {}
        pool_allowed: Dict[int, int] = {}
        for pfn in range(len(self.s.pages)):
            flags, nid = self._meta(pfn)
            b = self._byte(pfn)
            if flags & SEC_ONLINE and not flags & SEC_DEVICE and b & 15 == K.HUGETLB_HEAD:
                if (b >> 4) & HUGETLB_FREE:
                    h = (b >> 4) & 7
                    pool_all[h] = pool_all.get(h, 0) + 1
                    if nid in allowed and not start <= pfn < end:
                        pool_allowed[h] = pool_allowed.get(h, 0) + 1

        def resv(h: int) -> int:
            return self.s.hugetlb_reserved[h] if h < len(self.s.hugetlb_reserved) else 0

        moved = 0
        visible = offline_ref = invisible = None  # first pfn of each kind of blocker
        for pfn in range(start, end):
            b = self._byte(pfn)
            k, f = b & 15, b >> 4
            any_zone = self._zone_of(pfn) == "Movable"
            huge = None
            if (
                k in (K.LRU, K.MOVABLE)
                or (k == K.UNMOVABLE and f == LRU_BATCH)
                or (k == K.OFFLINE and balloon)
            ):
                need = 1
            elif k == K.THP_HEAD:
                need, any_zone = 1 << f, True
            elif k == K.HUGETLB_HEAD and not f & HUGETLB_FREE:
                idx = f & 7
                order = self.s.hstates[idx][0] if idx < len(self.s.hstates) else 0
                # alloc_huge_page_nodemask(): a free pool page on an allowed node while the
                # hstate's free pages exceed its reserved ones; else a fresh one from the buddy
                # allocator, which a gigantic page cannot get
                if pool_all.get(idx, 0) - resv(idx) > 0 and pool_allowed.get(idx, 0) > 0:
                    pool_all[idx] -= 1
                    pool_allowed[idx] -= 1
                    moved += 1 << order
                    continue
                if order >= self.s.max_order:
                    if visible is None:
                        visible = pfn
                    continue
                need, any_zone, huge = 1 << order, True, order
            elif k in (K.FREE, K.BUDDY, K.THP_TAIL, K.HUGETLB_TAIL, K.HWPOISON, K.HUGETLB_HEAD):
                continue
            elif k == K.OFFLINE and cmm:  # CMM gives loaned pages back in MEM_GOING_OFFLINE
                continue
            elif k == K.OFFLINE and v61 and self._virtio_mem(pfn):
                # 6.1 virtio_mem_fake_offline_going_offline(): MEM_GOING_OFFLINE drops the
                # reference, so scan_movable_pages() and test_pages_isolated() pass the page
                continue
            elif k == K.OFFLINE and v61:
                if offline_ref is None:
                    offline_ref = pfn
                continue
            elif k == K.PINNED:  # an LRU page: scan_movable_pages() returns it every pass
                if visible is None:
                    visible = pfn
                continue
            else:  # passed isolation, neither migratable nor free: the scan skips it
                if invisible is None:
                    invisible = pfn
                continue
            ok = True
            if huge is not None:
                o = next((o for o in range(huge, 16) if by_order[o] > 0), None)
                if o is None:
                    ok = False
                else:
                    by_order[o] -= 1
                    for j in range(huge, o):
                        by_order[j] += 1
            if ok:
                if any_zone:
                    from_mv = min(need, movable_free)
                    if kernel_free >= need - from_mv:
                        movable_free -= from_mv
                        kernel_free -= need - from_mv
                    else:
                        ok = False
                elif kernel_free >= need:
                    kernel_free -= need
                else:
                    ok = False
            if ok:
                moved += need
            elif visible is None:
                visible = pfn
        self.work["pages_migrated"] = moved

        def backoff(pfn: int) -> OfflineResult:
            self.work["migration_rounds"] = self.patience
            self.work["struct_pages_read"] += (end - pfn) * self.patience
            if not v61:
                self.work["lru_add_drain_all"] += self.patience
            return self._fail("EINTR", "signal backoff", pfn)

        # the scan meets a referenced PageOffline page (6.1: -EBUSY) or a page it finds on
        # every pass (the loop runs until a signal), whichever is first
        if offline_ref is not None and (visible is None or offline_ref < visible):
            self.work["migration_rounds"] += 1
            return self._fail("EBUSY", "unmovable page", offline_ref)
        if visible is not None:
            return backoff(visible)
        # dissolve_free_huge_pages(): free pool pages (less the ones migration took) minus
        # reserved ones must cover each one
        # 6.1 with HVO: hugetlb_vmemmap_restore() first needs the huge page's struct pages
        # back, less the one page kept, as order-0 GFP_KERNEL|__GFP_THISNODE pages: free
        # pages of kernel zones on its node, outside the (isolated) range, above min_free
        restore: Optional[Dict[int, int]] = None
        for pfn in range(start, end):
            b = self._byte(pfn)
            if b & 15 == K.HUGETLB_HEAD and (b >> 4) & HUGETLB_FREE:
                h = (b >> 4) & 7
                if pool_all.get(h, 0) <= resv(h):
                    self.work["migration_rounds"] += 1
                    return self._fail("EBUSY", "failure to dissolve huge pages", pfn)
                if v61 and self.s.hvo:
                    if restore is None:
                        restore = {}
                        for q in range(len(self.s.pages)):
                            fl, n = self._meta(q)
                            if (
                                fl & SEC_ONLINE
                                and not fl & SEC_DEVICE
                                and not start <= q < end
                                and self._zone_of(q) != "Movable"
                                and self._mt(q) != 5
                                and self._byte(q) & 15 in (K.FREE, K.BUDDY)
                            ):
                                restore[n] = restore.get(n, 0) + 1
                        restore = {
                            n: max(0, c - mins * managed.get((n, 0), 0) // total)
                            for n, c in restore.items()
                        }
                    order = self.s.hstates[h][0] if h < len(self.s.hstates) else 0
                    need = max(0, ((1 << order) * STRUCT_PAGE_BYTES >> self.s.page_shift) - 1)
                    nid = self._meta(pfn)[1]
                    if restore.get(nid, 0) < need:
                        self.work["migration_rounds"] += 1
                        return self._fail("ENOMEM", "failure to dissolve huge pages", pfn)
                    restore[nid] -= need
                pool_all[h] -= 1
        if invisible is not None:  # test_pages_isolated() fails on every outer round
            return backoff(invisible)
        self.work["migration_rounds"] = 1
        self.work["struct_pages_read"] += end - start
        if not v61:
            # a drain before each scan_movable_pages(): the rescan after moves is a second
            self.work["lru_add_drain_all"] += 2 if self.work["pages_migrated"] else 1
        return OfflineResult(None, None, None, dict(self.work))


def offline(
    machine: Any,
    block: int,
    kernel: str,
    snap: Optional[Snapshot] = None,
    patience_rounds: int = 1000,
) -> OfflineResult:
    """Reference dry-run offline of one block of a Machine."""
    snap = snap or Snapshot.of(machine)
    return OfflineReference(snap, Profile.parse(kernel, snap.arch), patience_rounds).offline(block)
