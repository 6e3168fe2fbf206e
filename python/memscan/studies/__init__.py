"""Studies: client emulation, the cost model, the trade-off of the removable patch."""

from .clients import ClientRun, blind, chmem_size, drmgr, lsmem
from .cost import CostModel, calibrate
from .tradeoff import (
    Case,
    as_array,
    as_dataframe,
    break_even,
    break_even_blocks,
    fragmentation_workload,
    plot,
    tradeoff,
)

__all__ = [
    "Case",
    "ClientRun",
    "as_array",
    "as_dataframe",
    "CostModel",
    "blind",
    "break_even",
    "break_even_blocks",
    "calibrate",
    "chmem_size",
    "drmgr",
    "fragmentation_workload",
    "lsmem",
    "plot",
    "tradeoff",
]
