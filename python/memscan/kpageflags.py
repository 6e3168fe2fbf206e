"""/proc/kpageflags files: export a modeled machine, import one into a machine's layout.

The format is one little-endian u64 per pfn from pfn 0 (fs/proc/page.c). The mapping both
ways, and what the format cannot tell (pcp free pages, order-0 kernel pages and non-LRU
movable pages all read 0; long-term pins are invisible), is documented in src/kpageflags.rs.
Files are streamed in chunks, so memory stays bounded whatever the machine size.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

import numpy as np

from .errors import ParseError
from .progress import Progress

CHUNK_PFNS = 1 << 20  # 8 MiB of flags per step

#: bit numbers of include/uapi/linux/kernel-page-flags.h used by memscan
KPF = {
    "LRU": 5,
    "SLAB": 7,
    "BUDDY": 10,
    "MMAP": 11,
    "ANON": 12,
    "SWAPBACKED": 14,
    "COMPOUND_HEAD": 15,
    "COMPOUND_TAIL": 16,
    "HUGE": 17,
    "HWPOISON": 19,
    "NOPAGE": 20,
    "THP": 22,
    "OFFLINE": 23,
    "PGTABLE": 26,
    "RESERVED": 32,
}


def export_kpageflags(
    machine: Any, path: Union[str, os.PathLike[str]], progress: Optional[bool] = None
) -> int:
    """Write ``path`` in kpageflags format for pfns 0 .. max_pfn; returns the pfn count."""
    total = machine.geometry.max_pfn
    bar = Progress(total, "kpageflags", enabled=progress)
    with open(os.fspath(path), "wb") as f:
        for start in range(0, total, CHUNK_PFNS):
            n = min(CHUNK_PFNS, total - start)
            words = machine._core.kpageflags_export(start, n)
            f.write(words.astype("<u8", copy=False).tobytes())
            bar.update(n)
    bar.close()
    return total


def check_kpageflags_size(source: str, size: int, max_pfn: int) -> int:
    """The pfn count of a kpageflags file of ``size`` bytes for a machine ending at
    ``max_pfn``; one check for every path that imports one (a file, a snapshot member).

    Raises:
        ParseError: empty, not a whole number of u64 words (truncated or misaligned), or
            covering more pfns than the machine has.
    """
    if size % 8:
        raise ParseError(
            f"{source}: {size} bytes is not a whole number of 8-byte words "
            "(truncated or misaligned)"
        )
    if size == 0:
        raise ParseError(f"{source}: empty (no pfns)")
    pfns = size // 8
    if pfns > max_pfn:
        raise ParseError(
            f"{source}: covers {pfns:#x} pfns but the machine ends at pfn {max_pfn:#x}"
        )
    return pfns


def import_kpageflags(
    machine: Any, path: Union[str, os.PathLike[str]], progress: Optional[bool] = None
) -> Dict[str, Any]:
    """Set the page kinds of ``machine`` (its layout decides where memory is) from a
    kpageflags file. Returns counts of what could not be told apart.

    Raises:
        ParseError: the file is truncated or misaligned (not a whole number of u64 words), or
            covers more pfns than the machine has.
    """
    p = os.fspath(path)
    try:
        size = os.path.getsize(p)
    except OSError as e:
        raise ParseError(f"{p}: cannot read kpageflags: {e.strerror}") from None
    pfns = check_kpageflags_size(p, size, machine.geometry.max_pfn)
    stats = _empty_stats()
    bar = Progress(pfns, "kpageflags", enabled=progress)
    with open(p, "rb") as f:
        start = 0
        while start < pfns:
            n = min(CHUNK_PFNS, pfns - start)
            words = np.frombuffer(f.read(n * 8), dtype="<u8")
            if len(words) != n:
                raise ParseError(f"{p}: ended early at pfn {start + len(words):#x}")
            import_words(machine, words, start, stats)
            start += n
            bar.update(n)
    bar.close()
    return stats


def _empty_stats() -> Dict[str, Any]:
    return {
        "pages": 0,
        "nopage": 0,
        "ambiguous": 0,
        "ambiguous_free": 0,
        "lru_batch": 0,
        "buddy_blocks": [0] * 16,
    }


def import_words(
    machine: Any, words: np.ndarray, start: int = 0, stats: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """Set page kinds from kpageflags words for pfns from ``start`` (in chunks); add what could
    not be told apart to ``stats`` and return it."""
    stats = _empty_stats() if stats is None else stats
    for off in range(0, len(words), CHUNK_PFNS):
        part = np.ascontiguousarray(words[off : off + CHUNK_PFNS], dtype=np.uint64)
        r = machine._core.kpageflags_import(start + off, part)
        for k in ("pages", "nopage", "ambiguous", "ambiguous_free", "lru_batch"):
            stats[k] += r[k]
        stats["buddy_blocks"] = [a + b for a, b in zip(stats["buddy_blocks"], r["buddy_blocks"])]
    return stats
