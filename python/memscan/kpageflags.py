"""/proc/kpageflags files: export a modeled machine, import one into a machine's layout.

The format is one little-endian u64 per pfn from pfn 0 (fs/proc/page.c). The mapping both
ways, and what the format cannot tell (pcp free pages, order-0 kernel pages and non-LRU
movable pages all read 0; long-term pins are invisible), is documented in src/kpageflags.rs.
Files are streamed in chunks, so memory stays bounded whatever the machine size.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any, BinaryIO, Dict, Optional, Union

import numpy as np

from . import kinds
from .errors import ArgumentError, ParseError
from .progress import Progress

CHUNK_PFNS = 1 << 20  # 8 MiB of flags per step

#: bit numbers of include/uapi/linux/kernel-page-flags.h used by memscan (src/kpageflags.rs)
KPF = kinds.KPF


#: an export larger than this needs ``force=True`` (CLI ``--force``): 1 GiB of flags is a
#: 512 GiB machine; 32 TiB would write 64 GiB
EXPORT_LIMIT_BYTES = 1 << 30
#: runs of zero words this long are left as file holes (seeked over, not written)
SPARSE_WORDS = 512  # 4 KiB, the usual file-system block


def check_export(machine: Any, path: Union[str, os.PathLike[str]], force: bool = False) -> int:
    """The checks of ``export_kpageflags``, cheap enough to run before populating a machine:
    returns the file's size in bytes, or raises ArgumentError (see there)."""
    from .sizes import human
    from .sysfs import refuse_real_proc_sys

    path = os.fspath(path)
    refuse_real_proc_sys(path)
    if os.path.isdir(path):
        raise ArgumentError(f"{path}: is a directory; give the kpageflags file's path")
    total = machine.geometry.max_pfn
    nbytes = 8 * total
    if nbytes > EXPORT_LIMIT_BYTES and not force:
        raise ArgumentError(
            f"{path}: would write {human(nbytes)} (8 bytes per pfn up to max_pfn "
            f"{total:#x}); pass force=True (memscan kpageflags export --force) to write it"
        )
    where = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(where).free
    except OSError as e:
        raise ArgumentError(f"{path}: cannot use {where}: {e.strerror}") from None
    if nbytes > free:
        raise ArgumentError(
            f"{path}: needs up to {human(nbytes)} but {where} has {human(free)} free"
        )
    return nbytes


def export_kpageflags(
    machine: Any,
    path: Union[str, os.PathLike[str]],
    progress: Optional[bool] = None,
    force: bool = False,
) -> Dict[str, int]:
    """Write ``path`` in kpageflags format for pfns 0 .. max_pfn, as the kernel's file reads
    (fs/proc/page.c: one word per pfn up to max_pfn, KPF_NOPAGE where no online memmap is).

    The file is 8 bytes per pfn whatever the machine holds. Above ``EXPORT_LIMIT_BYTES`` it
    is refused unless ``force``; it is always refused where the file system has no room for
    it. Absent memory is not zero in this format (it reads NOPAGE, as the kernel's does), so
    only 4 KiB runs of zero words (order-0 kernel pages, per-CPU free pages) are left as
    holes of a sparse file. The file appears whole or not at all (written beside ``path``,
    then renamed).

    Returns ``{"pfns", "bytes", "sparse_bytes"}``: pfns written, the file's size, and how
    much of it was left as holes.

    Raises:
        ArgumentError: ``path`` is under /proc or /sys, is a directory, would exceed the
            limit without ``force``, or does not fit on its file system.
    """
    path = os.fspath(path)
    nbytes = check_export(machine, path, force)
    total = nbytes // 8
    where = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(where, f".{os.path.basename(path)}.memscan-{os.getpid()}")
    sparse = 0
    bar = Progress(total, "kpageflags", enabled=progress)
    try:
        with open(tmp, "wb") as f:
            for start in range(0, total, CHUNK_PFNS):
                n = min(CHUNK_PFNS, total - start)
                words = machine.kpageflags_words(start, n).astype("<u8", copy=False)
                sparse += 8 * _write_sparse(f, start * 8, words)
                bar.update(n)
            f.truncate(nbytes)  # a trailing hole still counts in the size
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        bar.close()
    return {"pfns": total, "bytes": nbytes, "sparse_bytes": sparse}


def _write_sparse(f: BinaryIO, offset: int, words: np.ndarray) -> int:
    """Write ``words`` at byte ``offset`` of ``f``, seeking over SPARSE_WORDS-aligned runs
    that are all zero; returns how many words were left as holes."""
    n = len(words)
    whole = n - n % SPARSE_WORDS
    zero = np.zeros(-(-n // SPARSE_WORDS), dtype=bool)
    if whole:
        zero[: whole // SPARSE_WORDS] = ~words[:whole].reshape(-1, SPARSE_WORDS).any(axis=1)
    # runs of equal zero-ness, each written or skipped in one call
    edges = np.flatnonzero(np.diff(zero.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), len(zero)]
    skipped = 0
    for a, b in zip(bounds, bounds[1:]):
        lo, hi = a * SPARSE_WORDS, min(b * SPARSE_WORDS, n)
        if zero[a]:
            skipped += hi - lo
            continue
        f.seek(offset + lo * 8)
        f.write(words[lo:hi].tobytes())
    return skipped


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
    machine: Any,
    path: Union[str, os.PathLike[str], np.ndarray],
    progress: Optional[bool] = None,
    start_pfn: int = 0,
    count: Optional[int] = None,
    kpagecount: Union[str, os.PathLike[str], np.ndarray, None] = None,
) -> Dict[str, Any]:
    """Set the page kinds of ``machine`` (its layout decides where memory is) from kpageflags:
    a file (a whole /proc/kpageflags copy, whose word N is pfn N) or an array of words. The
    pfns ``[start_pfn, start_pfn + count)`` are imported (default: all the source covers
    from ``start_pfn``); an array holds the words of those pfns only. ``kpagecount`` (a file
    or array laid out the same way) tells free hugetlb pool pages from mapped ones. Returns
    counts of what could not be told apart.

    Raises:
        ParseError: the file is truncated or misaligned (not a whole number of u64 words), or
            covers more pfns than the machine has, or ends before the range asked for.
        ArgumentError: a negative start or count.
    """
    if not isinstance(start_pfn, int) or start_pfn < 0:
        raise ArgumentError(f"start_pfn {start_pfn!r}: want a non-negative integer")
    if count is not None and (not isinstance(count, int) or count < 0):
        raise ArgumentError(f"count {count!r}: want a non-negative integer")
    stats = _empty_stats()
    max_pfn = machine.geometry.max_pfn
    if isinstance(path, np.ndarray):
        words = np.ascontiguousarray(path, dtype="<u8")
        n = len(words) if count is None else count
        if n > len(words):
            raise ParseError(f"<array>: {len(words)} words, fewer than the {n} pfns asked for")
        counts = _counts(kpagecount, start_pfn, n, True)
        return import_words(machine, words[:n], start_pfn, stats, counts)
    p = os.fspath(path)
    try:
        size = os.path.getsize(p)
    except OSError as e:
        raise ParseError(f"{p}: cannot read kpageflags: {e.strerror}") from None
    pfns = check_kpageflags_size(p, size, max_pfn)
    end = pfns if count is None else start_pfn + count
    if end > pfns:
        raise ParseError(f"{p}: covers pfns up to {pfns:#x}, not to {end:#x} as asked")
    bar = Progress(max(0, end - start_pfn), "kpageflags", enabled=progress)
    with open(p, "rb") as f:
        f.seek(start_pfn * 8)
        start = start_pfn
        while start < end:
            n = min(CHUNK_PFNS, end - start)
            words = np.frombuffer(f.read(n * 8), dtype="<u8")
            if len(words) != n:
                raise ParseError(f"{p}: ended early at pfn {start + len(words):#x}")
            import_words(machine, words, start, stats, _counts(kpagecount, start, n, False))
            start += n
            bar.update(n)
    bar.close()
    return stats


def _counts(
    src: Union[str, os.PathLike[str], np.ndarray, None], start: int, n: int, relative: bool
) -> Optional[np.ndarray]:
    """kpagecount words for pfns [start, start + n): from an array (``relative``: index 0 is
    the first pfn imported) or a whole /proc/kpagecount copy (word N is pfn N)."""
    if src is None:
        return None
    if isinstance(src, np.ndarray):
        c = np.ascontiguousarray(src, dtype="<u8")
        c = c[:n] if relative else c[start : start + n]
    else:
        p = os.fspath(src)
        with open(p, "rb") as f:
            f.seek(start * 8)
            c = np.frombuffer(f.read(n * 8), dtype="<u8")
    if len(c) != n:
        raise ParseError(f"kpagecount: {len(c)} words where {n} pfns from {start:#x} need them")
    return c


def _empty_stats() -> Dict[str, Any]:
    return {
        "pages": 0,
        "nopage": 0,
        "ambiguous": 0,
        "ambiguous_free": 0,
        "lru_batch": 0,
        "hugetlb_mapped": 0,
        "hugetlb_unmapped": 0,
        "buddy_blocks": [0] * 16,
    }


#: the counters an import adds up (the core returns each)
STAT_KEYS = (
    "pages",
    "nopage",
    "ambiguous",
    "ambiguous_free",
    "lru_batch",
    "hugetlb_mapped",
    "hugetlb_unmapped",
)


def import_words(
    machine: Any,
    words: np.ndarray,
    start: int = 0,
    stats: Optional[Dict[str, Any]] = None,
    counts: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """Set page kinds from kpageflags words (and kpagecount ``counts``, same pfns) for pfns
    from ``start`` (in chunks); add what could not be told apart to ``stats``, return it."""
    stats = _empty_stats() if stats is None else stats
    for off in range(0, len(words), CHUNK_PFNS):
        cpart = None if counts is None else counts[off : off + CHUNK_PFNS]
        r = machine.set_pages_from_kpageflags(start + off, words[off : off + CHUNK_PFNS], cpart)
        for k in STAT_KEYS:
            stats[k] += r[k]
        stats["buddy_blocks"] = [a + b for a, b in zip(stats["buddy_blocks"], r["buddy_blocks"])]
    return stats
