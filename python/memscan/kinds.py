"""Page kinds, migratetypes and block states as Python enums (same numbers as the core)."""

from __future__ import annotations

import enum


class PageKind(enum.IntEnum):
    """Low 4 bits of a page byte. See src/page.rs for what each reads as in the kernel."""

    FREE = 0
    LRU = 1
    MOVABLE = 2
    PINNED = 3
    THP_HEAD = 4
    THP_TAIL = 5
    HWPOISON = 6
    BUDDY = 7
    UNMOVABLE = 8
    OFFLINE = 9
    HUGETLB_HEAD = 10
    HUGETLB_TAIL = 11
    RESERVED = 12
    ZEROED = 13
    UNINIT = 14
    NOMEMMAP = 15


#: ZEROED field marking the memmap of a hole (unavailable range) in a present section.
ZEROED_HOLE = 1
#: Bit 3 of a hugetlb page's field: free in the pool.
HUGETLB_FREE = 8
#: UNMOVABLE field: an LRU page still in a per-CPU batch, not PG_lru until drained (page.rs).
LRU_BATCH = 1


def page_byte(kind: PageKind, field: int = 0) -> int:
    """Pack a kind and its 4-bit field (buddy order, hstate index, ...) into a page byte."""
    if not 0 <= int(field) < 16:
        from .errors import ArgumentError

        raise ArgumentError(f"page field {field} does not fit in 4 bits")
    return (int(kind) & 0x0F) | (int(field) << 4)


class MigrateType(enum.IntEnum):
    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    HIGHATOMIC = 3
    CMA = 4
    ISOLATE = 5


class BlockState(enum.IntEnum):
    ABSENT = 0
    ONLINE = 1
    OFFLINE = 2
    GOING_OFFLINE = 3

    @property
    def sysfs(self) -> str:
        return {0: "absent", 1: "online", 2: "offline", 3: "going-offline"}[int(self)]


ZONE_NAMES = ["DMA", "DMA32", "Normal", "Movable", "Device"]
