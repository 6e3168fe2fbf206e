"""The cost model: modeled kernel time from the counters the kernel models keep.

Each constant is named and says where it comes from. Three are measured by ``calibrate()`` on
the machine it runs on (the defaults are such a measurement, machine stated below); the rest
are assumptions, marked as such, for work memscan counts but cannot time (locks, IPIs).
memscan's own run time is never part of these figures.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict

import numpy as np

#: where the default measured constants come from
DEFAULT_MACHINE = "2-core x86_64 KVM guest, 24 GiB (the memscan CI machine), 2026-11-26"


#: where each default constant comes from ({machine}: the defaults' measuring machine)
DEFAULT_ORIGINS = {
    "ns_per_struct_page": "measured by calibrate() on {machine}",
    "ns_per_page_copy": "measured by calibrate() on {machine}",
    "ns_per_page_migration_overhead": "assumption (no public measurement)",
    "ns_per_pageblock_isolation": "assumption",
    "ns_per_drain": "assumption (~20 us on a small machine)",
    "ns_per_migration_round": "assumption",
    "ns_per_syscall": "measured by calibrate() on {machine}",
    "ns_per_offline_attempt": "assumption (none beyond the syscall)",
}


@dataclass(frozen=True)
class CostModel:
    """Nanoseconds per unit of kernel work."""

    #: one struct page read (64-byte record) in the scan's order, memmap not in cache.
    #: Measured by calibrate() (memmap emulation).
    ns_per_struct_page: float = 2.3
    #: one 4 KiB page copied during migration. Measured by calibrate() (copy only; the unmap,
    #: TLB flush and remap around it are in ns_per_page_migration_overhead).
    ns_per_page_copy: float = 300.0
    #: unmap + remap + LRU isolation per migrated page. Assumption (no public measurement).
    ns_per_page_migration_overhead: float = 1500.0
    #: set_migratetype_isolate() per pageblock (zone->lock, move_freepages_block). Assumption.
    ns_per_pageblock_isolation: float = 500.0
    #: drain_all_pages() / lru_add_drain_all(): work queued on every CPU and waited for.
    #: Assumption: ~20 us on a small machine (scales with CPUs).
    ns_per_drain: float = 20000.0
    #: one pass of the migration loop beyond its page work (cond_resched, signal check).
    ns_per_migration_round: float = 1000.0
    #: one sysfs attribute read or write from user space (open, read/write, close), the
    #: attribute's own work excluded. Measured by calibrate(): reads of a real memory block's
    #: ``state`` attribute (memory_block state_show, no page walk) on the machine it runs on;
    #: 5.5 us on the default machine (it was an assumed 3 us before it was measured).
    ns_per_syscall: float = 5500.0
    #: an offline attempt's fixed work beyond the syscall (device_hotplug_lock, the memory
    #: notifier chain, zone and pcp updates, whatever its pages). Assumption: none; fitted
    #: from real-kernel records by ``memscan calibrate --groundtruth``.
    ns_per_offline_attempt: float = 0.0
    source: str = DEFAULT_MACHINE
    #: where each constant came from, where a cost file said (else ``DEFAULT_ORIGINS``)
    origins: Dict[str, str] = field(default_factory=dict)

    def origin(self, name: str) -> str:
        """Where constant ``name`` came from: measured, fitted, or an assumption."""
        return self.origins.get(name) or DEFAULT_ORIGINS[name].format(machine=self.source)

    def constants(self) -> Dict[str, float]:
        """The constants by name (ns per unit of work)."""
        return {k: getattr(self, k) for k in DEFAULT_ORIGINS}

    def removable_read_ns(self, struct_pages_read: int) -> float:
        return self.ns_per_syscall + struct_pages_read * self.ns_per_struct_page

    def offline_ns(self, o: Any) -> float:
        """Kernel time of one offline attempt (an ``Offline`` result)."""
        return (
            self.ns_per_syscall
            + self.ns_per_offline_attempt
            + o.struct_pages_read * self.ns_per_struct_page
            + o.pageblocks_isolated * self.ns_per_pageblock_isolation
            + o.pages_migrated * (self.ns_per_page_copy + self.ns_per_page_migration_overhead)
            + (o.lru_add_drain_all + o.drain_all_pages) * self.ns_per_drain
            + o.migration_rounds * self.ns_per_migration_round
        )

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_file(cls, path: str) -> CostModel:
        """Constants from a JSON file: the output of ``memscan calibrate --json`` (its
        ``measured`` constants over the defaults) or an object of CostModel fields.

        Raises:
            ArgumentError: not readable JSON, an unknown field, or a non-numeric value.
        """
        from ..errors import ArgumentError

        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            raise ArgumentError(f"{path}: not a readable cost file: {e}") from None
        if not isinstance(d, dict):
            raise ArgumentError(f"{path}: a cost file is a JSON object")
        if "cost" in d and "groundtruth_fit" in d:  # memscan calibrate --groundtruth --json
            d = dict(d["cost"])
        if "measured" in d:  # memscan calibrate --json
            measured = d["measured"]
            src = f"{path} (memscan calibrate on {measured.get('machine', '?')})"
            d = {
                k: measured[k]
                for k in ("ns_per_struct_page", "ns_per_page_copy", "ns_per_syscall")
                if measured.get(k) is not None
            }
            d["source"] = src
        fields = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ArgumentError(f"{path}: unknown cost fields {unknown} (known: {sorted(fields)})")
        origins = d.pop("origins", {})
        if not isinstance(origins, dict) or not all(
            k in DEFAULT_ORIGINS and isinstance(v, str) for k, v in origins.items()
        ):
            raise ArgumentError(f"{path}: origins must map constant names to strings")
        for k, v in d.items():
            if k != "source" and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ArgumentError(f"{path}: {k} = {v!r} is not a non-negative number")
        src = str(d.get("source", path))
        # a constant the file sets came from the file, unless the file says more
        origins = {**{k: f"from {src}" for k in d if k in DEFAULT_ORIGINS}, **origins}
        kw = {k: (str(v) if k == "source" else float(v)) for k, v in d.items()}
        return cls(**kw, origins=origins)


#: attribute files a sysfs read is timed on, first that exists (read-only)
SYSCALL_PROBES = (
    "/sys/devices/system/memory/memory0/state",
    "/sys/devices/system/memory/block_size_bytes",
    "/proc/self/stat",
)


def time_sysfs_read(reads: int = 2000) -> Dict[str, Any]:
    """ns per open + read + close of a real sysfs attribute (read-only), timed in the Rust
    core so no interpreter overhead is counted."""
    from .._core import CoreMachine

    for path in SYSCALL_PROBES:
        if os.access(path, os.R_OK):
            return {"ns": CoreMachine.time_attribute_reads(path, reads), "path": path}
    return {"ns": None, "path": None}


def calibrate(pages: int = 1 << 22, copies: int = 1 << 14, reads: int = 2000) -> Dict[str, Any]:
    """Measure on this machine what the kernel's access pattern costs.

    - ns_per_struct_page: a memmap emulation (``pages`` 64-byte records, one per page) walked
      in the order the removable scan walks it (every record, as in the worst case), reading
      the flags word of each;
    - ns_per_page_copy: ``copies`` 4 KiB copies between distinct pages;
    - ns_per_syscall: ``reads`` open + read + close of a real memory block attribute
      (``memory0/state``; falls back to another read-only file, named in the result).

    Returns the constants it would use, with the machine described.
    """
    memmap = np.ones((pages, 8), dtype=np.uint64)  # 64 bytes per struct page
    memmap[:, 0] = np.arange(pages, dtype=np.uint64)
    flags = memmap[:, 0]
    flags.sum()  # fault the pages in
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        s = int(flags.sum())  # one 8-byte read per 64-byte record, stride 64
        best = min(best, time.perf_counter() - t)
    assert s >= 0
    src = np.ones((copies, 512), dtype=np.uint64)  # 4 KiB pages
    dst = np.zeros_like(src)
    best_copy = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, copies, 64):
            dst[i : i + 64] = src[i : i + 64]
        best_copy = min(best_copy, time.perf_counter() - t)
    machine = (
        f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    )
    sysread = time_sysfs_read(reads)
    return {
        "ns_per_struct_page": best / pages * 1e9,
        "ns_per_page_copy": best_copy / copies * 1e9,
        "ns_per_syscall": sysread["ns"],
        "syscall_probe": sysread["path"],
        "pages": pages,
        "copies": copies,
        "machine": machine,
        "note": "drains, pageblock isolation, migration overhead and rounds are documented "
        "assumptions: timing them needs writes to the machine's memory-hotplug state, which "
        "memscan never makes",
    }
