"""Type stubs of the native module (hand-written; use memscan.Machine). mypy.stubtest runs
in CI against the built module (.ci/run)."""

from typing import Any, Callable, Dict, List, Optional, Tuple, TypedDict, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "CoreMachine",
    "default_geometry",
    "kernel_profile",
    "vocabulary",
    "X86_VMEMMAP_BASE",
    "VERSION",
]

X86_VMEMMAP_BASE: int
VERSION: str

class _GeometryDict(TypedDict):
    arch: str
    page_shift: int
    section_size_bits: int
    pageblock_order: int
    max_order: int
    block_size: int
    pages_per_section: int
    pageblock_nr_pages: int
    sections_per_block: int
    pages_per_block: int
    max_pfn: int

class _FaultDict(TypedDict):
    function: str
    access: str
    pfn: int
    phys: int
    section: int
    block: int
    kind: str
    message: str

class _UnmovableDict(TypedDict):
    pfn: int
    reason: str
    movable_zone_warning: bool

class _RemovableDict(TypedDict):
    block: int
    value: Optional[int]
    scanned: bool
    fault: Optional[_FaultDict]
    note: Optional[_FaultDict]
    first_unmovable: Optional[_UnmovableDict]
    struct_pages_read: int
    pageblocks_visited: int
    sections_scanned: int

class _ScanColumns(TypedDict):
    block: npt.NDArray[np.uint64]
    value: npt.NDArray[np.int8]
    scanned: npt.NDArray[np.bool_]
    struct_pages_read: npt.NDArray[np.uint64]
    pageblocks_visited: npt.NDArray[np.uint64]
    sections_scanned: npt.NDArray[np.uint64]
    faults: List[_FaultDict]
    notes: List[_FaultDict]

class _OfflineDict(TypedDict):
    block: int
    errno: Optional[str]
    reason: Optional[str]
    pfn: Optional[int]
    detail: Optional[str]
    fault: Optional[_FaultDict]
    applied: bool
    struct_pages_read: int
    pageblocks_isolated: int
    pages_migrated: int
    migration_rounds: int
    lru_add_drain_all: int
    drain_all_pages: int

class _OfflineColumns(TypedDict):
    block: npt.NDArray[np.uint64]
    errno: List[Optional[str]]
    reason: List[Optional[str]]
    pfn: List[Optional[int]]
    detail: List[Optional[str]]
    fault: List[Optional[_FaultDict]]
    struct_pages_read: npt.NDArray[np.uint64]
    pageblocks_isolated: npt.NDArray[np.uint64]
    pages_migrated: npt.NDArray[np.uint64]
    migration_rounds: npt.NDArray[np.uint64]
    lru_add_drain_all: npt.NDArray[np.uint64]
    drain_all_pages: npt.NDArray[np.uint64]

class _SectionsDict(TypedDict):
    flags: npt.NDArray[np.uint8]
    nid: npt.NDArray[np.uint16]

class _ValidZonesDict(TypedDict):
    value: Optional[str]
    fault: Optional[_FaultDict]

class _SectionRemovableDict(TypedDict):
    value: Optional[int]
    fault: Optional[_FaultDict]
    struct_pages_read: int
    pageblocks_visited: int
    sections_scanned: int

class _KpageflagsImportDict(TypedDict):
    pages: int
    nopage: int
    ambiguous: int
    ambiguous_free: int
    lru_batch: int
    hugetlb_mapped: int
    hugetlb_unmapped: int
    buddy_blocks: List[int]

class _MemmapImportDict(TypedDict):
    pages: int
    skipped: int
    pcp_free: int
    lru_pagevec: int
    pinned: int
    orphan_tails: int
    poisoned: int
    zeroed: int
    layout_checked: int
    layout_fits: List[Tuple[int, int]]

class _Vocabulary(TypedDict):
    page_kinds: List[Tuple[str, int]]
    page_fields: List[Tuple[str, int]]
    migratetypes: List[Tuple[str, int]]
    zones: List[str]
    block_states: List[Tuple[str, int]]
    section_flags: List[Tuple[str, int]]
    kpf_bits: List[Tuple[str, int]]
    scan_counters: List[str]
    offline_counters: List[str]
    kpageflags_import_counters: List[str]
    memmap_import_counters: List[str]
    errnos: List[str]
    workload_knobs: Dict[str, Tuple[str, Any]]
    arches: List[str]
    arch_aliases: List[Tuple[str, str]]
    geometry_keys: List[str]
    uninit_memmap: List[str]
    struct_page_bytes: int

class _KernelProfileDict(TypedDict):
    version: str
    arch: str
    name: str
    debug_vm: bool
    debug_vm_pgflags: bool
    memory_hotremove: bool
    removable_scans: bool
    holes_zeroed: bool
    holes_in_zone_initialised: bool
    holes_read_zone_zero: bool
    has_memory_holes_check: bool
    offline_path_6_1: bool
    has_is_mem_section_removable: bool
    warns_unmovable_in_zone_movable: bool
    cmm_isolate_notifier: bool
    cmm_balloon_compaction: bool
    zone_zero: str

def vocabulary() -> _Vocabulary: ...
def kernel_profile(spec: str, arch: str = "x86_64") -> _KernelProfileDict: ...

@final
class CoreMachine:
    @staticmethod
    def build(
        arch: str,
        geometry: Dict[str, int],
        boot_mem_end: int,
        ram: List[Tuple[int, int, int]],
        reserved: List[Tuple[int, int]],
        device: List[Tuple[int, int, int, int]],
        zones: List[Tuple[int, str, int, int]],
        offline_blocks: List[int],
        hstates: List[Tuple[int, bool]],
        kernel: Optional[str] = None,
    ) -> CoreMachine: ...
    def geometry(self) -> _GeometryDict: ...
    def block_states(self) -> npt.NDArray[np.uint8]: ...
    def set_block_state(self, block: int, state: str) -> None: ...
    def sections(self) -> _SectionsDict: ...
    def zones(self) -> List[Tuple[int, str, int, int]]: ...
    def system_ram(self) -> List[Tuple[int, int]]: ...
    @property
    def driver_managed(self) -> List[Tuple[int, int, str]]: ...
    def set_driver_managed(self, ranges: List[Tuple[int, int, str]]) -> None: ...
    def mem_zones(self) -> List[Optional[Tuple[int, str]]]: ...
    def standby_blocks(self) -> List[int]: ...
    def set_hugetlb_reserved(self, hstate: int, pages: int) -> None: ...
    def hugetlb_reserved(self) -> List[int]: ...
    uninit_memmap: str
    def memmap_import(
        self,
        start: int,
        raw: npt.NDArray[np.uint8],
        vmemmap: int,
        nodes_shift: Optional[int] = None,
    ) -> _MemmapImportDict: ...
    def nodes_online(self) -> List[bool]: ...
    def hstates(self) -> List[Tuple[int, bool]]: ...
    def page(self, pfn: int) -> int: ...
    def page_bytes(self, pfn: int, count: int) -> npt.NDArray[np.uint8]: ...
    def block_view(self, block: int) -> npt.NDArray[np.uint8]: ...
    def set_pages(self, pfn: int, count: int, value: int) -> None: ...
    def write_pages(self, pfn: int, values: npt.NDArray[np.uint8]) -> None: ...
    def set_migratetype(self, pfn: int, mt: int) -> None: ...
    def pageblock_bits(self) -> npt.NDArray[np.uint8]: ...
    def populate(
        self,
        workload: Dict[str, Any],
        seed: int,
        progress: Optional[Callable[[int, int], object]] = None,
        blocks: Optional[List[int]] = None,
    ) -> None: ...
    def kind_counts(self) -> List[int]: ...
    hugetlb_vmemmap_optimized: bool
    thp_enabled: bool
    hotplugged: bool
    def min_free_pages(self) -> Tuple[int, int]: ...
    def min_free_inputs(self) -> Tuple[Optional[int], bool, bool]: ...
    def set_min_free_kbytes(self, kbytes: Optional[int]) -> None: ...
    def memory_bytes(self) -> int: ...
    def populate_bytes(self, blocks: Optional[List[int]] = None) -> int: ...
    def copy(self) -> CoreMachine: ...
    def shared_bytes(self) -> int: ...
    def dense_blocks(self) -> int: ...
    def removable(self, block: int, kernel: str) -> _RemovableDict: ...
    def offline(
        self, block: int, kernel: str, dry_run: bool = True, patience_rounds: int = 1000
    ) -> _OfflineDict: ...
    def offline_many(
        self, blocks: List[int], kernel: str, patience_rounds: int = 1000
    ) -> _OfflineColumns: ...
    def online(self, block: int, online_type: str) -> Optional[str]: ...
    @staticmethod
    def write_sysfs_tree(
        root: str,
        block_size: int,
        blocks: List[Tuple[int, str, Optional[str], Optional[str], List[int], int]],
        link_limit: Optional[int] = None,
        progress: Optional[Callable[[int, int], object]] = None,
    ) -> None: ...
    @staticmethod
    def time_attribute_reads(path: str, reads: int) -> float: ...
    def kpageflags_export(self, start: int, count: int) -> npt.NDArray[np.uint64]: ...
    def kpageflags_import(
        self,
        start: int,
        flags: npt.NDArray[np.uint64],
        counts: Optional[npt.NDArray[np.uint64]] = None,
    ) -> _KpageflagsImportDict: ...
    def valid_zones(self, block: int, kernel: str) -> _ValidZonesDict: ...
    def valid_zones_many(self, blocks: List[int], kernel: str) -> List[Optional[str]]: ...
    def scan(self, blocks: List[int], kernel: str, parallel: bool = False) -> _ScanColumns: ...
    def is_mem_section_removable(
        self, start_pfn: int, nr_pages: int, kernel: str
    ) -> _SectionRemovableDict: ...

def default_geometry(
    arch: str,
    geometry: Dict[str, int] = ...,
    boot_mem_end: int = 0,
    kernel: Optional[str] = None,
) -> Dict[str, int]: ...
