"""Workload presets: named, seeded page-state recipes for online RAM.

Numbers are illustrative, not measured. They were chosen to reproduce the shapes kernel
developers describe for these situations (Mel Gorman's anti-fragmentation notes and the
/proc/pagetypeinfo outputs commonly posted in mm bug reports): an idle machine is mostly
whole free pageblocks; a long-running file server has little free memory, most of it in
low-order fragments, with unmovable allocations that fell back into movable pageblocks; a
kernel-heavy box (many sockets, dentries, page tables) has large unmovable pageblock runs.
Read the realised page counts with ``Machine.kind_counts()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List

from .errors import ArgumentError
from .kinds import VOCABULARY

#: The core's knobs (src/workload.rs ``KNOBS``): name -> (kind, default). The defaults have
#: their one home there; the fields below are declared for type checkers and documentation,
#: and tests/test_vocabulary.py fails when their names or order drift from the core's.
KNOBS: Dict[str, Any] = VOCABULARY["workload_knobs"]
_DEFAULT: Dict[str, Any] = {name: default for name, (_kind, default) in KNOBS.items()}


@dataclass(frozen=True)
class Workload:
    """Knobs of the workload model (fractions of RAM pages unless noted).

    Attributes:
        free: free pages.
        free_whole: share of free memory held as whole free pageblocks (merged up to
            MAX_ORDER-1); the rest is fragments inside used pageblocks.
        free_orders: relative weights of fragment orders 0, 1, 2, ...
        unmovable: unmovable kernel pages (slab, page tables).
        unmovable_clustered: share of them in MIGRATE_UNMOVABLE pageblocks; the rest pollute
            movable pageblocks (fallback allocations).
        polluted_pageblocks: share of movable pageblocks carrying such pollution.
        movable: share of user pages that are non-LRU movable (zsmalloc, balloon).
        thp: share of LRU memory in transparent huge pages.
        pinned: share of LRU pages with a long-term pin (RDMA, io_uring fixed buffers).
        hugetlb: share of RAM in hugetlb pages of size ``hugetlb_hstate`` (index into the
            machine's hstates; 0 is the PMD size), ``hugetlb_free`` of them free in the pool.
        cma_pages: pages of a CMA area at the top of node 0's Normal memory.
        hwpoison_pages, balloon_pages: scattered PageHWPoison / PG_offline pages.
        movable_node: nodes other than 0 become ZONE_MOVABLE (one node: its upper half).
        unmovable_spread: 1 places unmovable pageblocks at random; 0 at the lowest addresses,
            where boot and early kernel allocations cluster.
    """

    free: float = _DEFAULT["free"]
    free_whole: float = _DEFAULT["free_whole"]
    free_orders: List[float] = field(default_factory=lambda: list(_DEFAULT["free_orders"]))
    unmovable: float = _DEFAULT["unmovable"]
    unmovable_clustered: float = _DEFAULT["unmovable_clustered"]
    polluted_pageblocks: float = _DEFAULT["polluted_pageblocks"]
    movable: float = _DEFAULT["movable"]
    thp: float = _DEFAULT["thp"]
    pinned: float = _DEFAULT["pinned"]
    hugetlb: float = _DEFAULT["hugetlb"]
    hugetlb_hstate: int = _DEFAULT["hugetlb_hstate"]
    hugetlb_free: float = _DEFAULT["hugetlb_free"]
    cma_pages: int = _DEFAULT["cma_pages"]
    hwpoison_pages: int = _DEFAULT["hwpoison_pages"]
    balloon_pages: int = _DEFAULT["balloon_pages"]
    movable_node: bool = _DEFAULT["movable_node"]
    unmovable_spread: float = _DEFAULT["unmovable_spread"]

    @staticmethod
    def preset(name: str, **overrides: Any) -> Workload:
        """A named preset (see ``PRESETS``), with knobs overridden by keyword."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise ArgumentError(
                f"unknown workload preset {name!r} (known: {', '.join(sorted(PRESETS))})"
            ) from None
        try:
            return replace(base, **overrides)
        except TypeError as e:
            raise ArgumentError(f"workload preset {name!r}: {e}") from None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


PRESETS: Dict[str, Workload] = {
    # Just booted, nothing running: 90% free, nearly all in whole pageblocks; the kernel's
    # boot-time allocations clustered in a few unmovable pageblocks.
    "idle": Workload(
        free=0.9,
        free_whole=0.95,
        unmovable=0.02,
        unmovable_clustered=0.95,
        polluted_pageblocks=0.005,
        movable=0.0,
        thp=0.2,
    ),
    # Long-running file/database server: 25% free, mostly order 0-3 fragments; 8% kernel
    # memory of which half fell back into movable pageblocks, polluting 40% of them.
    "fragmented": Workload(
        free=0.25,
        free_whole=0.05,
        free_orders=[8, 4, 2, 1, 0.5, 0.25, 0.1, 0.05, 0.02],
        unmovable=0.08,
        unmovable_clustered=0.5,
        polluted_pageblocks=0.4,
        movable=0.03,
        thp=0.05,
        pinned=0.0005,
    ),
    # Network/filesystem-metadata heavy: 40% slab and page tables in long unmovable runs.
    "kernel-heavy": Workload(
        free=0.15,
        free_whole=0.2,
        unmovable=0.4,
        unmovable_clustered=0.85,
        polluted_pageblocks=0.3,
        movable=0.05,
        thp=0.05,
    ),
    # movable_node: hot-pluggable nodes (or the upper half of a one-node machine) in
    # ZONE_MOVABLE; kernel memory stays in the lower zones. About one long-term pinned page
    # (RDMA, io_uring fixed buffer) per 4 GiB.
    "movable-node": Workload(
        free=0.4,
        free_whole=0.5,
        unmovable=0.04,
        unmovable_clustered=0.9,
        polluted_pageblocks=0.2,
        movable=0.02,
        thp=0.3,
        pinned=0.000001,
        movable_node=True,
    ),
    # The scan's worst case: every page an LRU page in a Normal zone, nothing to skip.
    "worst-case": Workload(
        free=0.0,
        free_whole=0.0,
        unmovable=0.0,
        unmovable_clustered=0.0,
        polluted_pageblocks=0.0,
        movable=0.0,
        thp=0.0,
    ),
}
