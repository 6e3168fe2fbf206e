"""memscan: model Linux memory hot-unplug.

The pre-v5.6 ``removable`` scan (removable_show, is_mem_section_removable,
next_active_pageblock, has_unmovable_pages), where it faults on uninitialised struct pages,
what it costs, and the post-patch answer (always 1)::

    import memscan
    m = memscan.Machine.seed()
    m.populate(memscan.Workload.preset("fragmented"), seed=7)
    r = m.removable(96, kernel="5.5+debug")   # the March 2020 crash: r.fault
"""

from __future__ import annotations

from . import _core
from .errors import (
    ArgumentError,
    GeometryError,
    InternalError,
    LayoutError,
    MemscanError,
    ModelMemoryError,
    NoSuchBlockError,
    ParseError,
    PfnRangeError,
)
from .kernel import Kernel
from .kinds import HUGETLB_FREE, ZEROED_HOLE, BlockState, MigrateType, PageKind, page_byte
from .machine import Machine
from .results import Fault, Geometry, Offline, Origin, Prediction, Removable, ScanResult, ValidZones
from .sizes import human, parse_size
from .workload import PRESETS, Workload

__version__: str = _core.VERSION

__all__ = [
    "ArgumentError",
    "BlockState",
    "Fault",
    "Geometry",
    "GeometryError",
    "HUGETLB_FREE",
    "InternalError",
    "Kernel",
    "LayoutError",
    "Machine",
    "MemscanError",
    "ModelMemoryError",
    "MigrateType",
    "NoSuchBlockError",
    "Offline",
    "Origin",
    "Prediction",
    "PRESETS",
    "PageKind",
    "ParseError",
    "PfnRangeError",
    "Removable",
    "ScanResult",
    "ValidZones",
    "Workload",
    "ZEROED_HOLE",
    "_core",
    "human",
    "page_byte",
    "parse_size",
]
