"""The results memscan returns: plain dataclasses, built from the core's dicts and numpy
columns in one place each (the field names come from the core's vocabulary), and where a
machine came from (``Origin``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .kinds import VOCABULARY

#: The work counters of a removable read and of an offline, in the core's order
#: (src/cost.rs ScanCost::FIELDS, src/kernel/offline OfflineWork::FIELDS).
SCAN_COUNTERS: List[str] = list(VOCABULARY["scan_counters"])
OFFLINE_COUNTERS: List[str] = list(VOCABULARY["offline_counters"])


@dataclass(frozen=True)
class Geometry:
    """Sizes of the modeled machine (kernel terms; ``max_order`` is exclusive, as in v5.5)."""

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

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def section_size(self) -> int:
        return 1 << self.section_size_bits


@dataclass(frozen=True)
class Fault:
    """What the kernel does when a modeled read hits a bad struct page."""

    function: str
    access: str
    pfn: int
    phys: int
    section: int
    block: int
    kind: str  # "bug", "oops", "undefined", "wrong-answer"
    message: str

    def describe(self) -> str:
        return (
            f"{self.function}: {self.access} on pfn {self.pfn:#x} (phys {self.phys:#x}, "
            f"section {self.section:#x}, memory{self.block}): {self.message}"
        )


@dataclass(frozen=True)
class Removable:
    """One read of ``memoryN/removable``.

    ``value`` is 0 or 1 as printed, or ``None`` when the read never returned (BUG/oops) or
    its answer is undefined; then ``fault`` says why. ``note`` is a silently wrong read that
    did not stop the scan. The counters are what the kernel touched.
    """

    block: int
    kernel: str
    value: Optional[int]
    fault: Optional[Fault]
    note: Optional[Fault]
    scanned: bool
    first_unmovable: Optional[Dict[str, Any]]
    struct_pages_read: int
    pageblocks_visited: int
    sections_scanned: int


@dataclass
class ScanResult:
    """``removable`` of many blocks: numpy columns (``value`` is -1 where the read faulted)."""

    kernel: str
    block: np.ndarray
    value: np.ndarray
    scanned: np.ndarray
    struct_pages_read: np.ndarray
    pageblocks_visited: np.ndarray
    sections_scanned: np.ndarray
    faults: List[Fault]
    notes: List[Fault]

    def __len__(self) -> int:
        return len(self.block)

    def total(self, column: str = "struct_pages_read") -> int:
        return int(np.asarray(getattr(self, column), dtype=np.uint64).sum())


@dataclass(frozen=True)
class Offline:
    """The answer to ``echo offline > memoryN/state``.

    ``errno`` is None on success, else "EINVAL", "EBUSY", "EPERM" or "EINTR"; ``reason`` is
    the kernel's reason ("memory holes", "failure to isolate range", "signal backoff", ...) or
    the refusal before ``offline_pages`` ("non-present sections", "already offline"); ``pfn``
    the page that decided it; ``detail`` why, in plain words. The counters are the kernel's
    work until the outcome; EINTR counts ``patience_rounds`` migration passes.
    """

    block: int
    kernel: str
    errno: Optional[str]
    reason: Optional[str]
    pfn: Optional[int]
    detail: Optional[str]
    fault: Optional[Fault]
    applied: bool
    struct_pages_read: int
    pageblocks_isolated: int
    pages_migrated: int
    migration_rounds: int
    lru_add_drain_all: int
    drain_all_pages: int

    @property
    def ok(self) -> bool:
        return self.errno is None


@dataclass
class Prediction:
    """Per block: pre-patch ``removable`` (-1 = fault), post-patch ``removable``, and the
    predicted offline outcome, side by side."""

    kernel: str
    post_kernel: str
    offline_kernel: str
    block: np.ndarray
    removable_pre: np.ndarray
    removable_post: np.ndarray
    offline: List[Offline]
    #: the two scans behind ``removable_pre`` and ``removable_post`` (work counters, faults)
    scan_pre: Optional[ScanResult] = field(default=None, repr=False, compare=False)
    scan_post: Optional[ScanResult] = field(default=None, repr=False, compare=False)

    def confusion(self, which: str = "pre") -> Dict[str, Any]:
        """Confusion matrix of ``removable`` (``which`` = "pre" or "post") against the offline
        outcome: a positive is removable = 1, a true one an offline that succeeds. Faulted
        reads are counted apart. The reasons behind the false answers are tallied."""
        col = self.removable_pre if which == "pre" else self.removable_post
        out: Dict[str, Any] = {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "fault": 0, "fp_reasons": {}}
        for v, o in zip(col.tolist(), self.offline):
            if v < 0:
                out["fault"] += 1
                continue
            key = ("tp" if o.ok else "fp") if v == 1 else ("fn" if o.ok else "tn")
            out[key] += 1
            if key == "fp":
                why = f"{o.errno} {o.reason}" + (f" ({o.detail})" if o.detail else "")
                out["fp_reasons"][why] = out["fp_reasons"].get(why, 0) + 1
        return out


@dataclass(frozen=True)
class ValidZones:
    """One read of ``memoryN/valid_zones``: ``value`` is None when ``fault`` stopped it."""

    block: int
    kernel: str
    value: Optional[str]
    fault: Optional[Fault]


def _fault(d: Optional[Dict[str, Any]]) -> Optional[Fault]:
    return None if d is None else Fault(**d)


def removable_from_core(d: Dict[str, Any], kernel: str) -> Removable:
    """A ``Removable`` from the core's dict of one read."""
    return Removable(
        block=d["block"],
        kernel=kernel,
        value=d["value"],
        fault=_fault(d["fault"]),
        note=_fault(d["note"]),
        scanned=d["scanned"],
        first_unmovable=d["first_unmovable"],
        **{k: d[k] for k in SCAN_COUNTERS},
    )


def scan_from_core(parts: List[Dict[str, Any]], kernel: str) -> ScanResult:
    """A ``ScanResult`` from the core's column dicts of consecutive chunks of blocks."""

    def col(name: str, dtype: Any) -> np.ndarray:
        if not parts:
            return np.zeros(0, dtype=dtype)
        return np.concatenate([p[name] for p in parts]).astype(dtype, copy=False)

    return ScanResult(
        kernel=kernel,
        block=col("block", np.uint64),
        value=col("value", np.int8),
        scanned=col("scanned", np.bool_),
        **{k: col(k, np.uint64) for k in SCAN_COUNTERS},
        faults=[Fault(**f) for p in parts for f in p["faults"]],
        notes=[Fault(**f) for p in parts for f in p["notes"]],
    )


def offline_from_core(d: Dict[str, Any], kernel: str) -> Offline:
    """An ``Offline`` from the core's dict of one decision."""
    return Offline(
        block=d["block"],
        kernel=kernel,
        errno=d["errno"],
        reason=d["reason"],
        pfn=d["pfn"],
        detail=d["detail"],
        fault=_fault(d["fault"]),
        applied=d["applied"],
        **{k: int(d[k]) for k in OFFLINE_COUNTERS},
    )


def offlines_from_columns(ids: List[int], d: Dict[str, Any], kernel: str) -> List[Offline]:
    """``Offline`` per block from the core's columns of many dry-run decisions."""
    cols = ("errno", "reason", "pfn", "detail", "fault", *OFFLINE_COUNTERS)
    return [
        offline_from_core({"block": b, "applied": False, **{k: d[k][i] for k in cols}}, kernel)
        for i, b in enumerate(ids)
    ]


@dataclass
class Origin:
    """Where a machine came from, and what its source told beyond the layout.

    ``kind``: "seed", "iomem", "synthetic", "layout", "sysfs" or "snapshot"; ``source`` names
    the input (a path, "<iomem>", the synthetic size). For machines read from sysfs,
    ``sysfs_removable`` holds the kernel's own ``removable`` answers (block -> 0/1/None) and
    ``sysfs_tree`` the parsed tree; for snapshots, ``snapshot_info`` what was known, missing
    and uncertain. ``storage_increment`` (s390x only): the SCLP storage increment (rzm) in
    bytes. ``phys_device`` of a block is its start address / rzm on s390x
    (arch_get_memory_phys_device, sclp_cmd.c since 57b552ba0b2f, 2010; still in 6.1), 0 when
    rzm is unknown, and 0 on every other arch.
    """

    kind: str = "layout"
    source: str = ""
    sysfs_removable: Optional[Dict[int, Optional[int]]] = None
    sysfs_tree: Any = None
    snapshot_info: Optional[Dict[str, Any]] = None
    storage_increment: Optional[int] = None
