"""A read-only snapshot of the running machine, and models built from one.

``capture(out)`` reads (never writes) /proc/iomem, /proc/zoneinfo, /proc/pagetypeinfo,
/proc/buddyinfo, /sys/devices/system/memory (with node entries), /proc/kpageflags and
/proc/kpagecount (these two need root; without it the rest is captured and the snapshot says
so), the kernel release and page size, into one gzip-compressed tarball. kpageflags is
streamed in chunks through a temporary file, so memory stays bounded whatever the machine.
With ``memmap=True`` it also reads the raw struct pages of all System RAM from /proc/kcore
(``memscan.sources.kcore``), which ``Machine.from_snapshot`` decodes over kpageflags' kinds
where memscan knows the kernel's struct page layout: they settle most of what follows.

``OpenSnapshot(path)`` gives what ``Machine.from_snapshot`` builds a model from: RAM and reserved ranges from iomem, zone spans and nodes from
zoneinfo (exact ``start_pfn`` and ``spanned``), block size and states from sysfs, page kinds
from kpageflags (mapping in src/kpageflags.rs), free blocks cross-checked against buddyinfo.

What a snapshot cannot tell, kept as documented uncertainty rather than guesses:
- pages on per-CPU free lists and order-0 kernel allocations both read no flags (counted as
  ``ambiguous``; taken as kernel pages in pageblocks that hold slab or page-table pages, as
  per-CPU free pages elsewhere, ``ambiguous_free``: src/kpageflags.rs says why); pages in
  per-CPU LRU batches read MMAP/ANON without LRU (unmovable until drained, counted as
  ``lru_batch``);
- /proc/kpagecount is the map count, not the reference count: long-term pins are invisible;
- pageblock migratetypes are not exported per pageblock (pagetypeinfo only counts them): every
  pageblock is modeled MIGRATE_MOVABLE, so CMA areas are not seen;
- the files are read one after another on a running kernel, so they are not one instant.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import re
import tarfile
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from .. import _core
from ..errors import MemscanError, ParseError
from ..kernel import MEMMAP_LAYOUTS, Kernel, memmap_layout
from ..kinds import MEMORY_ZONES, ZONE_DEVICE
from ..kpageflags import check_kpageflags_size
from ..progress import Progress
from .iomem import layout_from_iomem
from .layout import ARCH_ALIASES
from .sysfs_tree import MAX_VALUE_BYTES, excerpt

PROC_FILES = ["iomem", "zoneinfo", "pagetypeinfo", "buddyinfo"]
CHUNK = 1 << 20  # pfns per read of kpageflags
MEMMAP_CHUNK_PFNS = 1 << 18  # pfns per struct page import (1 GiB of 4 KiB pages; 16 MiB)
MAX_TEXT_BYTES = 256 << 20  # /proc/iomem, zoneinfo, meta.json, ...: far above any real one
_ZONE_HDR = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+)")


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _section_pfns(arch: str, page_size: int, release: Optional[str]) -> int:
    """Pages per memory section of this arch, page size and kernel (the core's default
    geometry: arm64's depends on both); 128 MiB for an arch memscan does not model."""
    shift = int(page_size).bit_length() - 1
    try:
        g = _core.default_geometry(arch, {"page_shift": shift}, 0, release)
        bits = int(g["section_size_bits"])
    except MemscanError:
        bits = 27
    return 1 << max(0, bits - shift)


def system_ram_pfns(iomem: str, page_size: int) -> List[Tuple[int, int]]:
    """[start, end) pfns of every System RAM resource in /proc/iomem text, nested ones
    included (virtio-mem and kmem add theirs under their device), in address order."""
    spans = []
    for line in iomem.splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) : System RAM( \(\S+\))?$", line.strip())
        if m:
            spans.append((int(m.group(1), 16) // page_size, (int(m.group(2), 16) + 1) // page_size))
    return sorted(spans)


def _memmap_spans(iomem: str, page_size: int, section_pfns: int) -> List[Tuple[int, int]]:
    """The System RAM pfns widened to whole sections (a section's struct pages exist for its
    holes too) and merged."""
    out: List[Tuple[int, int]] = []
    for s, e in system_ram_pfns(iomem, page_size):
        s, e = s // section_pfns * section_pfns, -(-e // section_pfns) * section_pfns
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif s < e:
            out.append((s, e))
    return out


def config_nodes_shift(proc: str) -> Optional[int]:
    """CONFIG_NODES_SHIFT of the running kernel from ``proc``/config.gz (IKCONFIG_PROC), 0
    where NUMA is off, None where the config cannot be read: the width of the node bits
    ``import_memmap`` checks struct pages against."""
    import gzip

    try:
        with gzip.open(os.path.join(proc, "config.gz"), "rt") as f:
            text = f.read()
    except (OSError, EOFError):
        return None
    m = re.search(r"^CONFIG_NODES_SHIFT=(\d+)$", text, re.M)
    if m:
        return int(m.group(1))
    return 0 if re.search(r"^# CONFIG_NUMA is not set$", text, re.M) else None


def _capture_memmap(
    tar: tarfile.TarFile,
    proc: str,
    iomem: Optional[str],
    meta: Dict[str, Any],
    section_pfns: int,
    progress: Optional[bool],
) -> None:
    """The struct pages of every System RAM section, read from /proc/kcore into members
    ``memmap/<start pfn>-<end pfn>`` (hex), and ``meta["memmap"]`` saying where they came from;
    what stops it goes to ``meta["missing"]`` with the reason."""
    from .kcore import STRUCT_PAGE, Kcore, vmemmap_base

    spans = _memmap_spans(iomem or "", meta["page_size"], section_pfns)
    if meta["arch"] != "x86_64" or meta["page_size"] != 4096:
        meta["missing"].append(
            f"memmap (struct pages are read on x86_64 with 4 KiB pages only, not "
            f"{meta['arch']} with {meta['page_size']}-byte pages)"
        )
        return
    if not spans:
        meta["missing"].append("memmap (no System RAM in proc/iomem to read struct pages of)")
        return
    try:
        kc = Kcore(os.path.join(proc, "kcore"))
    except ParseError as err:
        meta["missing"].append(f"memmap ({err}; reading /proc/kcore needs root)")
        return
    with kc:
        try:
            # probed at the first RAM pfn's struct page (kcore lists the vmemmap of RAM only)
            first = system_ram_pfns(iomem or "", meta["page_size"])[0][0]
            base, where = vmemmap_base(kc, _read_text(os.path.join(proc, "kallsyms")), first)
        except ParseError as err:
            meta["missing"].append(f"memmap ({err})")
            return
        gap = 0
        with Progress(sum(e - s for s, e in spans), "memmap", enabled=progress) as bar:
            for s, e in spans:
                with tempfile.TemporaryFile() as tmp:
                    for data, ok in kc.chunks(base + s * STRUCT_PAGE, (e - s) * STRUCT_PAGE):
                        tmp.write(data)
                        gap += 0 if ok else len(data)
                        bar.update(len(data) // STRUCT_PAGE)
                    info = tarfile.TarInfo(f"memmap/{s:x}-{e:x}")
                    info.size = tmp.tell()
                    tmp.seek(0)
                    tar.addfile(info, tmp)
    meta["memmap"] = {
        "vmemmap_base": base,
        "vmemmap_source": where,
        "struct_page": STRUCT_PAGE,
        "ranges": [[s, e] for s, e in spans],
        # struct pages no kcore segment held, written as zeroes (left as modeled on import)
        "gap_bytes": gap,
        # the node bits' width, for the import's node/zone check (None: every width tried)
        "nodes_shift": config_nodes_shift(proc),
    }


def capture(
    out: Union[str, os.PathLike[str]],
    root: str = "/",
    progress: Optional[bool] = None,
    memmap: bool = False,
) -> Dict[str, Any]:
    """Capture the machine under ``root`` (``"/"``: this machine) into ``out`` (.tar.gz).
    ``memmap``: also the raw struct pages of all System RAM, from /proc/kcore (root; 64 bytes
    per page: 1/64 of RAM before compression). Returns the snapshot's meta record."""
    out = os.fspath(out)
    proc = os.path.join(root, "proc")
    sysmem = os.path.join(root, "sys", "devices", "system", "memory")
    release = _read_text(os.path.join(proc, "sys", "kernel", "osrelease"))
    meta: Dict[str, Any] = {
        "format": "memscan-snapshot-1",
        "kernel_release": release.strip()
        if release
        else (platform.release() if root == "/" else None),
        "arch": ARCH_ALIASES.get(platform.machine().lower(), platform.machine()),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "missing": [],
    }
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        texts = {}
        for name in PROC_FILES:
            t = _read_text(os.path.join(proc, name))
            if t is None:
                meta["missing"].append(f"proc/{name}")
                continue
            texts[name] = t
            _add_bytes(tar, f"proc/{name}", t.encode())
        # vm.min_free_kbytes, under the name the ground-truth harness uses
        t = _read_text(os.path.join(proc, "sys/vm/min_free_kbytes"))
        if t is None:
            meta["missing"].append("proc/min_free_kbytes")
        else:
            _add_bytes(tar, "proc/min_free_kbytes", t.encode())
        if os.path.isdir(sysmem):
            for dirpath, dirnames, filenames in os.walk(sysmem):
                rel = os.path.relpath(dirpath, root)
                depth = rel.count(os.sep) - os.path.join(
                    "sys", "devices", "system", "memory"
                ).count(os.sep)
                if depth > 1:
                    dirnames[:] = []
                    continue
                dirnames[:] = [d for d in dirnames if d.startswith("memory")]
                for fn in filenames:
                    if fn in (
                        "uevent",
                        "probe",
                        "soft_offline_page",
                        "hard_offline_page",
                        "auto_online_blocks",
                    ):
                        continue
                    t = _read_text(os.path.join(dirpath, fn))
                    if t is not None:
                        _add_bytes(tar, os.path.join(rel, fn), t.encode())
                for d in os.listdir(dirpath):
                    if re.match(r"^node\d+$", d) and os.path.islink(os.path.join(dirpath, d)):
                        info = tarfile.TarInfo(os.path.join(rel, d))
                        info.type = tarfile.SYMTYPE
                        info.linkname = os.path.join("..", "..", "node", d)
                        tar.addfile(info)
        else:
            meta["missing"].append("sys/devices/system/memory")
        # kpageflags / kpagecount up to the end of System RAM, rounded up to a section
        section_pfns = _section_pfns(meta["arch"], meta["page_size"], meta["kernel_release"])
        # kpageflags is read up to the last System RAM resource
        end_pfn = max(
            (e for _, e in system_ram_pfns(texts.get("iomem", ""), meta["page_size"])), default=0
        )
        end_pfn = -(-end_pfn // section_pfns) * section_pfns
        for name in ("kpageflags", "kpagecount"):
            path = os.path.join(proc, name)
            try:
                src = open(path, "rb")  # noqa: SIM115 - closed below
            except OSError as e:
                meta["missing"].append(f"proc/{name} ({e.strerror}; reading it needs root)")
                continue
            with src, tempfile.TemporaryFile() as tmp:
                bar = Progress(end_pfn, name, enabled=progress)
                done = 0
                while done < end_pfn:
                    chunk = src.read(min(CHUNK, end_pfn - done) * 8)
                    if not chunk:
                        break
                    tmp.write(chunk)
                    done += len(chunk) // 8
                    bar.update(len(chunk) // 8)
                bar.close()
                size = tmp.tell()
                tmp.seek(0)
                info = tarfile.TarInfo(f"proc/{name}")
                info.size = size
                tar.addfile(info, tmp)
        if memmap:
            _capture_memmap(tar, proc, texts.get("iomem"), meta, section_pfns, progress)
        _add_bytes(tar, "meta.json", json.dumps(meta, indent=1).encode())
    return meta


def parse_zoneinfo(text: str, source: str = "zoneinfo") -> List[Tuple[int, str, int, int]]:
    """(nid, zone, start_pfn, end_pfn) of every zone with a non-zero span."""
    zones = []
    cur: Optional[Tuple[int, str]] = None
    spanned = None
    for no, line in enumerate(text.splitlines(), 1):
        m = _ZONE_HDR.match(line)
        if m:
            cur, spanned = (int(m.group(1)), m.group(2)), None
            continue
        s = line.split()
        if cur and len(s) == 2 and s[0] == "spanned":
            try:
                spanned = int(s[1])
            except ValueError:
                raise ParseError(f"{source}:{no}: spanned {s[1]!r} is not a number") from None
        elif cur and len(s) == 2 and s[0] == "start_pfn:":
            try:
                start = int(s[1])
            except ValueError:
                raise ParseError(f"{source}:{no}: start_pfn {s[1]!r} is not a number") from None
            if spanned and cur[1] == ZONE_DEVICE:
                # ZONE_DEVICE (pmem, as on the seed's machine): modeled from iomem's
                # "Persistent Memory" ranges, not from its span here
                continue
            if spanned:
                if cur[1] not in MEMORY_ZONES:
                    raise ParseError(f"{source}:{no}: zone {cur[1]!r} is not modeled")
                zones.append((cur[0], cur[1], start, start + spanned))
    if not zones:
        raise ParseError(f"{source}: no zone with a start_pfn and a non-zero span")
    return zones


def parse_zone_watermarks(text: str, source: str = "zoneinfo") -> List[Dict[str, Any]]:
    """Per zone with managed pages: nid, zone, and its min / low / high watermarks and managed
    pages, in pages, as /proc/zoneinfo prints them (the first of each per zone)."""
    out: List[Dict[str, Any]] = []
    cur: Optional[Dict[str, Any]] = None
    for no, line in enumerate(text.splitlines(), 1):
        m = _ZONE_HDR.match(line)
        if m:
            cur = {"nid": int(m.group(1)), "zone": m.group(2)}
            out.append(cur)
            continue
        s = line.split()
        if cur is not None and len(s) == 2 and s[0] in ("min", "low", "high", "managed"):
            if s[0] in cur:
                continue
            try:
                cur[s[0]] = int(s[1])
            except ValueError:
                raise ParseError(f"{source}:{no}: {s[0]} {s[1]!r} is not a number") from None
    return [z for z in out if z.get("managed") and "min" in z]


def parse_buddyinfo(text: str) -> List[int]:
    """Free blocks per order, summed over nodes and zones."""
    total: List[int] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[0] == "Node":
            counts = [int(x) for x in parts[4:]]
            total = [a + b for a, b in zip(total, counts)] if total else counts
    return total


#: compressed snapshots up to this size are decompressed once, into an anonymous temporary
#: file, and read from there: tarfile's random access into an xz or gzip stream restarts the
#: decompression at every backward seek (replaying a recorded run spent 10 of its 12 s
#: there). Bigger ones (a live capture of a large machine) are streamed, not doubled on disk.
UNPACK_LIMIT = 64 << 20
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "lzma"), (b"BZh", "bz2"))


class _UnpackedTar(tarfile.TarFile):
    """A tar read from a decompressed temporary copy, which closing it deletes."""

    unpacked: Any = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.unpacked is not None:
                self.unpacked.close()


def open_tar(path: str) -> tarfile.TarFile:
    """A snapshot tarball opened for reading (see ``UNPACK_LIMIT``). Raises OSError or
    tarfile.TarError as ``tarfile.open`` does."""
    import bz2
    import gzip
    import lzma
    import shutil

    with open(path, "rb") as f:
        magic = f.read(6)
    kind = next((k for m, k in _COMPRESSED if magic.startswith(m)), None)
    if kind is None or os.path.getsize(path) > UNPACK_LIMIT:
        return tarfile.open(path)
    opener = {"gzip": gzip.open, "lzma": lzma.open, "bz2": bz2.open}[kind]
    tmp = tempfile.TemporaryFile()
    try:
        with opener(path, "rb") as src:
            shutil.copyfileobj(src, tmp, 1 << 20)
        tmp.seek(0)
        tar = _UnpackedTar.open(fileobj=tmp, mode="r:")
    except (OSError, EOFError, lzma.LZMAError, tarfile.TarError) as e:
        tmp.close()
        raise tarfile.ReadError(f"{kind} data: {e}") from None
    tar.unpacked = tmp
    return tar


class Snapshot:
    """An opened snapshot tarball."""

    def __init__(self, path: Union[str, os.PathLike[str]]):
        self.path = os.fspath(path)
        try:
            self.tar = open_tar(self.path)
        except (OSError, tarfile.TarError) as e:
            raise ParseError(f"{self.path}: not a readable snapshot: {e}") from None
        try:
            members = self.tar.getmembers()
        except (OSError, EOFError, tarfile.TarError) as e:
            self.tar.close()
            raise ParseError(f"{self.path}: not a readable snapshot: {e}") from None
        for mem in members:
            if mem.name.startswith("/") or ".." in mem.name.split("/"):
                self.tar.close()
                raise ParseError(
                    f"{self.path}: member {excerpt(mem.name)} points outside the archive root"
                )
            # a member's size is checked before anything is read or extracted from it:
            # sysfs values are one line, the /proc text files a few MiB on the largest
            # machines; only kpageflags and kpagecount grow with the machine
            cap = (
                MAX_VALUE_BYTES
                if mem.name.startswith("sys/")
                else None
                if mem.name in ("proc/kpageflags", "proc/kpagecount")
                or mem.name.startswith("memmap/")
                else MAX_TEXT_BYTES
            )
            if cap is not None and mem.size > cap:
                self.tar.close()
                raise ParseError(
                    f"{self.path}: member {excerpt(mem.name)} is {mem.size} bytes, more than "
                    f"a snapshot's {cap} for it"
                )
        meta = self.text("meta.json")
        if meta is None:
            self.tar.close()
            raise ParseError(f"{self.path}: meta.json is missing (not a memscan snapshot)")
        try:
            self.meta = json.loads(meta)
        except ValueError as e:
            self.tar.close()
            raise ParseError(f"{self.path}: meta.json is not JSON: {e}") from None
        if not isinstance(self.meta, dict):
            self.tar.close()
            raise ParseError(f"{self.path}: meta.json is not a JSON object")

    def text(self, name: str) -> Optional[str]:
        try:
            f = self.tar.extractfile(name)
        except KeyError:
            return None
        return None if f is None else f.read().decode("ascii", errors="replace")

    def need(self, name: str) -> str:
        t = self.text(name)
        if t is None:
            raise ParseError(f"{self.path}: {name} is missing from the snapshot")
        return t

    def close(self) -> None:
        self.tar.close()


class OpenSnapshot:
    """A snapshot opened for building a model: the layout (RAM and reserved ranges from
    iomem, nodes and exact zone spans from zoneinfo, block size and states from sysfs) and
    the sysfs tree as plain data, the page words streamed by ``page_chunks``, and
    ``describe`` comparing what was captured with a model built from it. Only the Machine
    facade builds the model (``Machine.from_snapshot``). A context manager."""

    def __init__(self, path: Union[str, os.PathLike[str]]):
        from .sysfs_tree import read_sysfs_tree

        self.snap = snap = Snapshot(path)
        try:
            self.path = snap.path
            self.meta = snap.meta
            iomem = snap.need("proc/iomem")
            self.zoneinfo = snap.need("proc/zoneinfo")
            zones = parse_zoneinfo(self.zoneinfo, f"{snap.path}: proc/zoneinfo")
            arch = snap.meta.get("arch", "x86_64")
            page_shift = int(snap.meta.get("page_size", 4096)).bit_length() - 1
            with tempfile.TemporaryDirectory() as tmp:
                members = [m for m in snap.tar.getmembers() if m.name.startswith("sys/")]
                snap.tar.extractall(tmp, members=members, filter="data")
                self.tree = read_sysfs_tree(tmp)
            layout = layout_from_iomem(
                iomem, arch=arch, block_size=self.tree.block_size, source=f"{snap.path}: proc/iomem"
            )
            if page_shift != 12:
                layout.geometry["page_shift"] = page_shift
            # nodes and zones from zoneinfo: split RAM ranges at node boundaries
            shift = layout.page_shift()
            node_spans: Dict[int, Tuple[int, int]] = {}
            for nid, _, s, e in zones:
                lo, hi = node_spans.get(nid, (s, e))
                node_spans[nid] = (min(lo, s), max(hi, e))
            ranges = []
            for r in layout.ranges:
                placed = False
                for nid, (s, e) in sorted(node_spans.items()):
                    a, b = max(r.start, s << shift), min(r.end, e << shift)
                    if a < b:
                        ranges.append(dataclasses.replace(r, start=a, end=b, nid=nid))
                        placed = True
                if not placed:
                    ranges.append(r)
            layout.ranges = ranges
            layout.zones = zones
            layout.offline_blocks = [b.block for b in self.tree.blocks if b.state == "offline"]
            layout.name = f"snapshot {snap.path} ({snap.meta.get('kernel_release')})"
            self.layout = layout
            fill = snap.meta.get("uninit_memmap")
            #: what a ground-truth run's guest's never-initialised memmap held, if it says
            self.uninit_memmap: Optional[str] = fill if fill in ("zero", "garbage") else None
            self.missing: List[str] = list(snap.meta.get("missing", []))
            self.memmap = self._memmap_meta()
        except BaseException:
            snap.close()
            raise

    def _memmap_meta(self) -> Optional[Dict[str, Any]]:
        """``meta["memmap"]`` checked against the members it names, with the struct page
        layout of the captured kernel (``layout`` None where memscan does not decode it)."""
        mm = self.meta.get("memmap")
        if mm is None:
            return None
        where = f"{self.path}: meta.json memmap"
        if not isinstance(mm, dict):
            raise ParseError(f"{where}: not a JSON object")
        base, ranges = mm.get("vmemmap_base"), mm.get("ranges")
        if not isinstance(base, int) or isinstance(base, bool) or not 0 < base < 1 << 64:
            raise ParseError(f"{where}: vmemmap_base {excerpt(repr(base))} is not an address")
        if mm.get("struct_page") != 64:
            raise ParseError(
                f"{where}: struct_page {excerpt(repr(mm.get('struct_page')))}: memscan decodes "
                "64-byte struct pages only"
            )
        if not isinstance(ranges, list) or not all(
            isinstance(r, list)
            and len(r) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
            and 0 <= r[0] < r[1]
            for r in ranges
        ):
            raise ParseError(f"{where}: ranges is not a list of [start, end) pfn pairs")
        for s, e in ranges:
            name = f"memmap/{s:x}-{e:x}"
            try:
                size = self.snap.tar.getmember(name).size
            except KeyError:
                raise ParseError(f"{self.path}: {name} is missing from the snapshot") from None
            if size != (e - s) * 64:
                raise ParseError(
                    f"{self.path}: {name} is {size} bytes, not the {(e - s) * 64} of "
                    f"{e - s} struct pages (truncated?)"
                )
        ns = mm.get("nodes_shift")
        if ns is not None and (
            not isinstance(ns, int) or isinstance(ns, bool) or not 0 <= ns <= 10
        ):
            raise ParseError(f"{where}: nodes_shift {excerpt(repr(ns))} is not 0..10 or null")
        release = self.meta.get("kernel_release")
        layout = memmap_layout(release, str(self.meta.get("arch", "x86_64")))
        if layout is None:
            self.missing.append(
                f"memmap: struct pages of kernel {release} are not decoded (memscan decodes "
                f"{', '.join(MEMMAP_LAYOUTS.values())}): page kinds are from kpageflags"
            )
        return {
            "vmemmap_base": base,
            "ranges": [tuple(r) for r in ranges],
            "layout": layout,
            "nodes_shift": ns,
        }

    def memmap_chunks(self, max_pfn: int) -> Iterator[Tuple[int, bytes]]:
        """(start pfn, struct pages) of the captured memmap up to ``max_pfn``, in chunks whose
        boundaries are 1 GiB-aligned pfns, so no compound page (naturally aligned, at most a
        1 GiB gigantic page) is split between two chunks."""
        if self.memmap is None or self.memmap["layout"] is None:
            return
        align = MEMMAP_CHUNK_PFNS
        for s, e in self.memmap["ranges"]:
            f = self.snap.tar.extractfile(f"memmap/{s:x}-{e:x}")
            assert f is not None  # a regular member, checked in _memmap_meta
            pos = s
            while pos < min(e, max_pfn):
                n = min(e, max_pfn, (pos // align + 1) * align) - pos
                data = f.read(n * 64)
                if len(data) != n * 64:
                    raise ParseError(f"{self.path}: memmap/{s:x}-{e:x} ended early at pfn {pos:#x}")
                yield pos, data
                pos += n

    def memmap_pfns(self, max_pfn: int) -> int:
        """The pfn count ``memmap_chunks`` yields."""
        if self.memmap is None or self.memmap["layout"] is None:
            return 0
        return sum(max(0, min(e, max_pfn) - s) for s, e in self.memmap["ranges"])

    def captured_min_free_kbytes(self) -> Optional[int]:
        """vm.min_free_kbytes as captured, or None where the snapshot has none."""
        mfk = self.snap.text("proc/min_free_kbytes")
        if mfk is None:
            return None
        try:
            return int(mfk.strip())
        except ValueError:
            raise ParseError(
                f"{self.path}: proc/min_free_kbytes: {mfk.strip()[:40]!r} is not a number"
            ) from None

    def kpageflags_pfns(self, max_pfn: int) -> int:
        """The pfn count ``page_chunks`` yields for a model ending at ``max_pfn`` (0 when the
        snapshot has no kpageflags); the same check as import_kpageflags, on the member's
        size before reading it."""
        try:
            size = self.snap.tar.getmember("proc/kpageflags").size
        except KeyError:
            return 0
        return check_kpageflags_size(f"{self.path}: proc/kpageflags", size, max_pfn)

    def page_chunks(self, max_pfn: int) -> Iterator[Tuple[int, np.ndarray, Optional[np.ndarray]]]:
        """(start pfn, kpageflags words, kpagecount words or None) in chunks, streamed so
        memory stays bounded whatever the machine size; what is absent goes to ``missing``."""
        snap = self.snap
        try:
            kpf = snap.tar.extractfile("proc/kpageflags")
        except KeyError:
            kpf = None
        if kpf is None:
            self.missing.append("proc/kpageflags: page kinds are the boot state (all free)")
            return
        limit = self.kpageflags_pfns(max_pfn)
        # kpagecount beside it (same pfns) tells free hugetlb pool pages from mapped ones
        kpc = None
        try:
            if snap.tar.getmember("proc/kpagecount").size >= limit * 8:
                kpc = snap.tar.extractfile("proc/kpagecount")
        except KeyError:
            pass
        if kpc is None:
            self.missing.append(
                "proc/kpagecount: free hugetlb pool pages cannot be told from mapped ones "
                "(all taken as in use)"
            )
        start = 0
        while start < limit:
            data = kpf.read(min(CHUNK, limit - start) * 8)
            if not data:
                raise ParseError(f"{snap.path}: proc/kpageflags ended early at pfn {start:#x}")
            words = np.frombuffer(data[: len(data) // 8 * 8], dtype="<u8")
            counts = None
            if kpc is not None:
                counts = np.frombuffer(kpc.read(len(words) * 8), dtype="<u8")
                if len(counts) != len(words):
                    raise ParseError(f"{snap.path}: proc/kpagecount ended early at pfn {start:#x}")
            yield start, words, counts
            start += len(words)

    def describe(
        self,
        machine: Any,
        kpageflags: Optional[Dict[str, Any]],
        build_seconds: float,
        memmap: Optional[Dict[str, int]] = None,
    ) -> Dict[str, Any]:
        """What was known, missing and uncertain, and the captured watermarks, min_free_kbytes
        and buddyinfo beside what ``machine`` (the model built from this snapshot) makes of
        them; ``kpageflags`` is the page import's counts (None without kpageflags)."""
        snap, m = self.snap, machine
        info: Dict[str, Any] = {"missing": list(self.missing), "meta": snap.meta}
        if kpageflags is not None:
            info["kpageflags"] = kpageflags
        # the model's build and the page import (decompressing the snapshot included)
        info["build_seconds"] = build_seconds
        # min_free_kbytes as captured, beside the model's own (boot rules, THP raise): kept as
        # information, not as a setting, since a 5.x kernel recomputes it (and drops
        # khugepaged's raise) at the next online or offline while a sysctl value would stay
        # per-zone watermarks as captured, beside the model's share of its min watermark
        # (__setup_per_zone_wmarks: min_free spread over the non-highmem zones, ZONE_MOVABLE
        # included, by managed pages, here the captured managed counts)
        wm = parse_zone_watermarks(self.zoneinfo, f"{snap.path}: proc/zoneinfo")
        try:
            kern = Kernel.parse(str(snap.meta.get("kernel_release") or "6.1"), m.geometry.arch)
        except MemscanError:
            kern = Kernel.parse("6.1", m.geometry.arch)
        mine = m.min_free_kbytes(kern) * 1024 >> m.geometry.page_shift
        total = sum(z["managed"] for z in wm if z["zone"] != ZONE_DEVICE) or 1
        for z in wm:
            z["model_min"] = mine * z["managed"] // total if z["zone"] != ZONE_DEVICE else None
        info["zone_watermarks"] = wm
        mfk = self.captured_min_free_kbytes()
        if mfk is not None:
            info["min_free_kbytes"] = {
                "captured": mfk,
                "model_5x": m.min_free_kbytes("5.5"),
                "model_6_1": m.min_free_kbytes("6.1"),
                # read from the captured value on 5.x: a block onlined or offlined since boot
                "hotplugged": m.hotplugged,
            }
        bi = snap.text("proc/buddyinfo")
        if bi is not None and kpageflags is not None:
            want = parse_buddyinfo(bi)
            got = info["kpageflags"]["buddy_blocks"][: len(want)]
            free_want = sum(c << o for o, c in enumerate(want))
            free_got = sum(c << o for o, c in enumerate(got))
            info["buddyinfo"] = {
                "blocks_per_order_buddyinfo": want,
                "blocks_per_order_kpageflags": got,
                "free_pages_buddyinfo": free_want,
                "free_pages_kpageflags": free_got,
                "agreement": (min(free_want, free_got) / max(free_want, free_got))
                if max(free_want, free_got)
                else 1.0,
            }
        if memmap is not None:
            assert self.memmap is not None
            info["memmap"] = {
                **memmap,
                "layout": self.memmap["layout"],
                "vmemmap_base": self.memmap["vmemmap_base"],
            }
            # the struct pages tell refcounts (per-CPU free pages, pins, pagevec pages) and
            # destructors; what neither source holds stays
            info["uncertain"] = [
                "pageblock migratetypes are not exported: all modeled MIGRATE_MOVABLE (CMA unseen)",
                "the files and the memmap are read one after another, not at one instant",
            ]
            return info
        info["uncertain"] = [
            "per-CPU free pages and order-0 kernel pages both read no flags (taken by pageblock: "
            "kernel pages beside slab or page tables, per-CPU free pages elsewhere)",
            "pages in per-CPU LRU batches read MMAP/ANON without LRU (taken as LRU)",
            "kpagecount is the map count: long-term pins are invisible",
            "pageblock migratetypes are not exported: all modeled MIGRATE_MOVABLE (CMA unseen)",
            "the files are read one after another, not at one instant",
        ]
        return info

    def close(self) -> None:
        self.snap.close()

    def __enter__(self) -> OpenSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
