"""Page kinds, migratetypes, block states, zones and section flags as Python values, built
from the core's vocabulary (``_core.vocabulary()``): the numbers and names have one home, the
Rust core (src/page.rs, src/topology.rs, src/sections.rs). kinds.pyi declares the members for
type checkers; ``mypy.stubtest`` in CI fails when it drifts from what is built here.
"""

from __future__ import annotations

import enum
from typing import Dict, List, Tuple

from . import _core

VOCABULARY = _core.vocabulary()

#: Low 4 bits of a page byte. See src/page.rs for what each reads as in the kernel.
PageKind = enum.IntEnum("PageKind", VOCABULARY["page_kinds"], module=__name__)  # type: ignore[misc]

_FIELDS: Dict[str, int] = dict(VOCABULARY["page_fields"])
#: ZEROED field marking the memmap of a hole (unavailable range) in a present section.
ZEROED_HOLE: int = _FIELDS["ZEROED_HOLE"]
#: Bit 3 of a hugetlb page's field: free in the pool.
HUGETLB_FREE: int = _FIELDS["HUGETLB_FREE"]
#: UNMOVABLE field: an LRU page still in a per-CPU batch, not PG_lru until drained (page.rs).
LRU_BATCH: int = _FIELDS["LRU_BATCH"]


def page_byte(kind: PageKind, field: int = 0) -> int:
    """Pack a kind and its 4-bit field (buddy order, hstate index, ...) into a page byte."""
    if not 0 <= int(field) < 16:
        from .errors import ArgumentError

        raise ArgumentError(f"page field {field} does not fit in 4 bits")
    return (int(kind) & 0x0F) | (int(field) << 4)


#: Pageblock migratetypes (v5.5 ``enum migratetype``); member names are the kernel's in
#: upper case (``HighAtomic`` is ``HIGHATOMIC``).
MigrateType = enum.IntEnum(  # type: ignore[misc]
    "MigrateType", [(n.upper(), v) for n, v in VOCABULARY["migratetypes"]], module=__name__
)


class _BlockStateBase(enum.IntEnum):
    @property
    def sysfs(self) -> str:
        """The text ``memoryN/state`` prints."""
        return _STATE_TEXT[int(self)]


_STATE_TEXT: Dict[int, str] = {v: n for n, v in VOCABULARY["block_states"]}
#: ``mem->state`` of a memory block, plus ABSENT for ids without a memoryN directory.
BlockState = _BlockStateBase(  # type: ignore[call-arg]
    "BlockState",  # type: ignore[arg-type]
    [(n.upper().replace("-", "_"), v) for n, v in VOCABULARY["block_states"]],
    module=__name__,
)

#: Zone names by ``enum zone_type`` index, as /proc/zoneinfo and valid_zones print them.
ZONE_NAMES: List[str] = list(VOCABULARY["zones"])
_ZONE = {z.upper(): z for z in ZONE_NAMES}
ZONE_MOVABLE: str = _ZONE["MOVABLE"]
ZONE_DEVICE: str = _ZONE["DEVICE"]
#: the zones System RAM is onlined to (every modeled zone but ZONE_DEVICE), lowest first
MEMORY_ZONES: Tuple[str, ...] = tuple(z for z in ZONE_NAMES if z != ZONE_DEVICE)
#: the kernel zones (MEMORY_ZONES without ZONE_MOVABLE)
KERNEL_ZONES: Tuple[str, ...] = tuple(z for z in MEMORY_ZONES if z != ZONE_MOVABLE)

#: Section flag bits (SECTION_MARKED_PRESENT, SECTION_IS_ONLINE, SECTION_IS_EARLY, and
#: ZONE_DEVICE memory) as ``Machine.sections()["flags"]`` holds them.
SECTION_FLAGS: Dict[str, int] = dict(VOCABULARY["section_flags"])
SEC_PRESENT: int = SECTION_FLAGS["PRESENT"]
SEC_ONLINE: int = SECTION_FLAGS["ONLINE"]
SEC_EARLY: int = SECTION_FLAGS["EARLY"]
SEC_DEVICE: int = SECTION_FLAGS["DEVICE"]

#: ``sizeof(struct page)`` on 64-bit kernels (src/cost.rs).
STRUCT_PAGE_BYTES: int = VOCABULARY["struct_page_bytes"]
#: /proc/kpageflags bit numbers (include/uapi/linux/kernel-page-flags.h) memscan reads or
#: writes (src/kpageflags.rs).
KPF: Dict[str, int] = dict(VOCABULARY["kpf_bits"])
#: Arch names and the aliases accepted for them (src/geometry.rs).
ARCHES: List[str] = list(VOCABULARY["arches"])
ARCH_ALIASES: Dict[str, str] = {**{a: a for a in ARCHES}, **dict(VOCABULARY["arch_aliases"])}
