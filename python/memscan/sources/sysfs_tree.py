"""Import a memory sysfs tree: a live ``/sys`` (read-only), a directory holding
``sys/devices/system/memory``, or a tarball of one (the layout of util-linux's lsmem test
dumps).

What a tree tells: the block size, which blocks exist (gaps where the kernel made none),
their states, their nodes (``memoryN/nodeX`` entries), their zones (``valid_zones``), and the
kernel's own ``removable`` answers, kept for comparison with the model's. What it cannot tell:
holes inside a block, reserved pages, the pages themselves. Every block is taken as System
RAM of its node; online blocks get the zone their ``valid_zones`` names (a block reading
"none" takes the zone the arch's limits give its address).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tarfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from ..errors import LayoutError, ParseError
from ..kinds import MEMORY_ZONES, ZONE_NAMES
from .layout import Layout, Range, canonical_arch, default_page_shift, page_shift_of, zone_limits

MEMORY_DIR = os.path.join("sys", "devices", "system", "memory")
_BLOCK = re.compile(r"^memory(\d+)$")
_NODE = re.compile(r"^node(\d+)$")
#: valid_zones tokens: the modeled zones, Highmem (32-bit only) and "none"
ZONE_TOKENS = {*ZONE_NAMES, "Highmem", "none"}


@dataclass
class SysfsBlock:
    block: int
    state: str
    nid: Optional[int]
    valid_zones: Optional[str]
    removable: Optional[int]
    phys_device: Optional[int] = None


@dataclass
class SysfsTree:
    source: str
    block_size: int
    blocks: List[SysfsBlock] = field(default_factory=list)

    def removable(self) -> Dict[int, Optional[int]]:
        return {b.block: b.removable for b in self.blocks}


#: The most a sysfs attribute file can hold: sysfs_emit() writes into one page
#: (fs/sysfs/file.c, PAGE_SIZE; 4 KiB on x86, 64 KiB on ppc64). Value files longer than this,
#: or tar members larger than it, did not come from sysfs.
MAX_VALUE_BYTES = 64 << 10


def excerpt(text: str, limit: int = 40) -> str:
    """A short, escaped quote of untrusted file content for an error message."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class _Reader:
    """Read files from a directory or from tar members, by relative path.

    A directory is walked one component at a time relative to the directory fds, without
    following symlinks (O_NOFOLLOW): nothing outside the tree is read, whatever links it
    holds. Only regular files are read (a FIFO or a device would block or never end), opened
    O_NONBLOCK, and at most MAX_VALUE_BYTES of each. A tarball's members are indexed once
    (name -> member, directory -> children), and a member larger than a sysfs value is
    refused before anything is decompressed from it.
    """

    def __init__(self, src: str):
        self.src = src
        self.tar: Optional[Dict[str, tarfile.TarInfo]] = None
        self.children: Dict[str, set] = {}
        self.data: Dict[str, bytes] = {}
        self.prefix = ""
        self._tf: Optional[tarfile.TarFile] = None
        self._root_fd: Optional[int] = None
        self._dirs: Dict[str, int] = {}
        self._last: Optional[Tuple[str, int]] = None
        if os.path.isfile(src):
            try:
                self._tf = tarfile.open(src)
                members: Dict[str, tarfile.TarInfo] = {}
                for mem in self._tf:
                    name = os.path.normpath(mem.name).lstrip("/")
                    if (
                        name.startswith("..")
                        or os.path.isabs(mem.name)
                        or "/../" in f"/{mem.name}/"
                    ):
                        raise ParseError(
                            f"{src}: member {excerpt(mem.name)} points outside the archive root"
                        )
                    if mem.isfile() and mem.size > MAX_VALUE_BYTES:
                        raise ParseError(
                            f"{src}: member {excerpt(mem.name)} is {mem.size} bytes; a sysfs "
                            f"tree holds files of at most {MAX_VALUE_BYTES} bytes"
                        )
                    members[name] = mem
                    if mem.isfile():
                        # read now, in archive order: a compressed tarball cannot seek, and
                        # reading members in any other order decompresses from the start
                        # again for each (quadratic); values are small, capped above
                        f = self._tf.extractfile(mem)
                        self.data[name] = b"" if f is None else f.read()
            except tarfile.TarError as e:
                self.close()
                raise ParseError(f"{src}: not a directory or a readable tarball: {e}") from None
            except (ParseError, OSError, EOFError) as e:
                self.close()
                if isinstance(e, ParseError):
                    raise
                raise ParseError(f"{src}: cannot read the tarball: {e}") from None
            # the tree may sit under one top directory (e.g. "x86_64-16G/sys/...")
            prefix = ""
            for name in members:
                i = name.find(MEMORY_DIR)
                if i >= 0:
                    prefix = name[:i]
                    break
            self.prefix = prefix
            self.tar = {k[len(prefix) :]: v for k, v in members.items() if k.startswith(prefix)}
            self.data = {k[len(prefix) :]: v for k, v in self.data.items() if k.startswith(prefix)}
            for name in self.tar:
                parts = name.split("/")
                for i in range(1, len(parts)):
                    self.children.setdefault("/".join(parts[:i]), set()).add(parts[i])
        elif os.path.isdir(src):
            try:
                self._root_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                raise ParseError(f"{src}: cannot open: {e.strerror}") from None
        else:
            raise ParseError(f"{src}: no such directory or tarball")

    def close(self) -> None:
        if self._tf is not None:
            self._tf.close()
            self._tf = None
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs = {}
        if self._last is not None:
            os.close(self._last[1])
            self._last = None
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def _dir_fd(self, rel: str) -> Optional[int]:
        """The fd of directory ``rel`` of the tree, opened component by component without
        following symlinks; None if it does not exist."""
        rel = rel.strip("/")
        if not rel:
            return self._root_fd
        if rel in self._dirs:
            return self._dirs[rel]
        if self._last is not None and self._last[0] == rel:
            return self._last[1]
        pfd, name = self._parent_fd(rel)
        if pfd is None:
            return None
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd
            )
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ParseError(
                    f"{self.src}: {rel} is a symlink or not a directory; memscan does not "
                    "follow links in a sysfs tree"
                ) from None
            raise ParseError(f"{self.src}: cannot open {rel}: {e.strerror}") from None
        if rel.count("/") <= 3:
            # sys, sys/devices, sys/devices/system, .../memory: kept open
            self._dirs[rel] = fd
        else:
            # a block's directory: its files are read together, one kept open at a time
            if self._last is not None:
                os.close(self._last[1])
            self._last = (rel, fd)
        return fd

    def _parent_fd(self, rel: str) -> Tuple[Optional[int], str]:
        """The fd of ``rel``'s directory (None if it does not exist) and ``rel``'s name."""
        parent, _, name = rel.rpartition("/")
        return self._dir_fd(parent), name

    def listdir(self, rel: str) -> List[str]:
        if self.tar is None:
            fd = self._dir_fd(rel)
            if fd is None:
                raise ParseError(f"{self.src}: cannot list {rel}: no such directory")
            try:
                return os.listdir(fd)
            except OSError as e:
                raise ParseError(f"{self.src}: cannot list {rel}: {e.strerror}") from None
        return sorted(self.children.get(rel.strip("/"), ()))

    def read(self, rel: str) -> Optional[str]:
        """The text of value file ``rel``, None if it does not exist."""
        if self.tar is None:
            pfd, name = self._parent_fd(rel)
            if pfd is None:
                return None
            try:
                fd = os.open(
                    name,
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    dir_fd=pfd,
                )
            except FileNotFoundError:
                return None
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise ParseError(
                        f"{self.src}: {rel} is a symlink; memscan reads only regular files "
                        "of the tree"
                    ) from None
                raise ParseError(f"{self.src}: cannot read {rel}: {e.strerror}") from None
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise ParseError(
                        f"{self.src}: {rel} is not a regular file (sysfs values are files)"
                    )
                data = os.read(fd, MAX_VALUE_BYTES + 1)
            except OSError as e:
                raise ParseError(f"{self.src}: cannot read {rel}: {e.strerror}") from None
            finally:
                os.close(fd)
            if len(data) > MAX_VALUE_BYTES:
                raise ParseError(
                    f"{self.src}: {rel} holds more than {MAX_VALUE_BYTES} bytes; a sysfs "
                    "value is one line"
                )
            return data.decode("ascii", errors="replace")
        mem = self.tar.get(rel)
        if mem is None or self._tf is None:
            return None
        if mem.issym():
            raise ParseError(
                f"{self.src}: member {rel} is a symlink; memscan reads only regular files of "
                "the tree"
            )
        if mem.islnk():
            # a hard link member: the content of the member it names, in this archive
            target = os.path.normpath(mem.linkname).lstrip("/")
            raw = self.data.get(
                target[len(self.prefix) :] if target.startswith(self.prefix) else ""
            )
            if raw is None:
                raise ParseError(f"{self.src}: member {rel} links to a member not in the tree")
        elif mem.isfile():
            raw = self.data[rel]
        else:
            raise ParseError(f"{self.src}: member {rel} is not a regular file")
        return raw.decode("ascii", errors="replace")

    def exists(self, rel: str) -> bool:
        if self.tar is None:
            pfd, name = self._parent_fd(rel.strip("/"))
            if pfd is None:
                return False
            try:
                os.stat(name, dir_fd=pfd, follow_symlinks=False)
                return True
            except OSError:
                return False
        rel = rel.strip("/")
        return rel in self.tar or rel in self.children


def read_sysfs_tree(src: Union[str, os.PathLike[str]]) -> SysfsTree:
    """Parse a memory sysfs tree (directory with ``sys/``, a live ``/`` root, or a tarball)."""
    src = os.fspath(src)
    r = _Reader(src)
    try:
        return _read_tree(r, src)
    finally:
        r.close()


def _read_tree(r: _Reader, src: str) -> SysfsTree:
    if not r.exists(MEMORY_DIR):
        raise ParseError(f"{src}: no {MEMORY_DIR} in it")
    bsb = r.read(os.path.join(MEMORY_DIR, "block_size_bytes"))
    if bsb is None:
        raise ParseError(
            f"{src}: {MEMORY_DIR}/block_size_bytes is missing (the system does not support memory blocks)"
        )
    try:
        block_size = int(bsb.strip(), 16)
    except ValueError:
        raise ParseError(
            f"{src}: block_size_bytes {excerpt(bsb.strip())} is not hexadecimal"
        ) from None
    if block_size <= 0 or block_size & (block_size - 1):
        raise ParseError(f"{src}: block_size_bytes {block_size:#x} is not a power of two")
    tree = SysfsTree(src, block_size)
    seen = set()
    for name in r.listdir(MEMORY_DIR):
        m = _BLOCK.match(name)
        if not m:
            continue
        n = int(m.group(1))
        if n in seen:
            raise ParseError(f"{src}: memory block {n} appears twice")
        seen.add(n)
        d = os.path.join(MEMORY_DIR, name)
        where = f"{src}: {d}"
        pi = r.read(os.path.join(d, "phys_index"))
        if pi is not None:
            try:
                index = int(pi.strip(), 16)
            except ValueError:
                raise ParseError(
                    f"{where}/phys_index {excerpt(pi.strip())} is not hexadecimal"
                ) from None
            if index != n:
                raise ParseError(f"{where}/phys_index reads {excerpt(pi.strip())}, not block {n}")
        state = (r.read(os.path.join(d, "state")) or "").strip()
        if state not in ("online", "offline", "going-offline"):
            raise ParseError(
                f"{where}/state reads {excerpt(state)} (want online, offline or going-offline)"
            )
        nids = sorted(int(x.group(1)) for x in map(_NODE.match, r.listdir(d)) if x)
        vz = r.read(os.path.join(d, "valid_zones"))
        if vz is not None:
            vz = vz.strip()
            bad = [t for t in vz.split() if t not in ZONE_TOKENS]
            if not vz or bad:
                raise ParseError(
                    f"{where}/valid_zones reads {excerpt(vz)}: unknown zone names {excerpt(' '.join(bad))}"
                )
        rem_text = r.read(os.path.join(d, "removable"))
        rem: Optional[int] = None
        if rem_text is not None:
            if rem_text.strip() not in ("0", "1"):
                raise ParseError(
                    f"{where}/removable reads {excerpt(rem_text.strip())} (want 0 or 1)"
                )
            rem = int(rem_text.strip())
        pd_text = r.read(os.path.join(d, "phys_device"))
        pd: Optional[int] = None
        if pd_text is not None:
            if not pd_text.strip().isdigit():
                raise ParseError(
                    f"{where}/phys_device reads {excerpt(pd_text.strip())} (want a decimal number)"
                )
            pd = int(pd_text.strip())
        tree.blocks.append(SysfsBlock(n, state, nids[0] if nids else None, vz, rem, pd))
    if not tree.blocks:
        raise ParseError(f"{src}: {MEMORY_DIR} has no memoryN directories")
    tree.blocks.sort(key=lambda b: b.block)
    return tree


def storage_increment_from_sysfs(tree: SysfsTree) -> Optional[int]:
    """s390x: the storage increment (rzm) implied by ``phys_device`` = start / rzm, or None
    when every block reads 0 (rzm unknown to the kernel).

    Raises:
        ParseError: blocks whose phys_device values imply different increments.
    """
    rzm: Optional[int] = None
    first = None
    for b in tree.blocks:
        if not b.phys_device:
            continue
        start = b.block * tree.block_size
        this = start // b.phys_device
        if this * b.phys_device != start or (rzm is not None and this != rzm):
            raise ParseError(
                f"{tree.source}: memory{b.block}/phys_device {b.phys_device} does not fit one "
                f"storage increment with memory{first} (start / phys_device)"
            )
        rzm, first = this, b.block if first is None else first
    return rzm


def layout_from_sysfs(
    tree: SysfsTree, arch: str = "x86_64", page_size: Optional[str] = None
) -> Tuple[Layout, Dict[int, Optional[int]]]:
    """A Layout from a parsed tree, and the kernel's removable answers by block. sysfs does
    not say the page size: ``page_size`` ("4K", "16K", "64K") gives it where the arch's
    default is wrong (arm64 16K, as util-linux's aarch64_16K dump)."""
    arch = canonical_arch(arch)
    bs = tree.block_size
    geometry: Dict[str, int] = {}
    if page_size is not None:
        geometry["page_shift"] = page_shift_of(page_size)
    page_shift = geometry.get("page_shift", default_page_shift(arch))
    ranges: List[Range] = []
    zones: Dict[Tuple[int, str], List[int]] = {}
    limits = (
        zone_limits(
            arch,
            min(b.block for b in tree.blocks) * bs,
            (max(b.block for b in tree.blocks) + 1) * bs,
        )
        if tree.blocks
        else []
    )
    prev_zone: Dict[int, Tuple[int, str]] = {}  # nid -> (block, zone) of the last zoned block
    for b in tree.blocks:
        nid = b.nid if b.nid is not None else 0
        start, end = b.block * bs, (b.block + 1) * bs
        ranges.append(Range(start, end, "ram", nid))
        zone = None
        if b.state != "offline" and b.valid_zones and b.valid_zones.split()[0] not in ("none",):
            zone = b.valid_zones.split()[0]
        if zone is None and nid in prev_zone and prev_zone[nid][0] == b.block - 1:
            zone = prev_zone[nid][1]  # "none" or offline: continue the zone of the block before
        if zone is not None and zone in MEMORY_ZONES:
            prev_zone[nid] = (b.block, zone)
        if zone is None or zone not in MEMORY_ZONES:
            # by address: the arch's zone limits (several zones may share a block)
            lo = 0
            for name, hi in limits:
                s, e = max(lo, start), min(hi, end)
                if s < e:
                    zones.setdefault((nid, name), []).extend([s >> page_shift, e >> page_shift])
                lo = hi
            continue
        zones.setdefault((nid, zone), []).extend([start >> page_shift, end >> page_shift])
    zone_specs = []
    for (nid, name), pfns in sorted(zones.items()):
        zone_specs.append((nid, name, min(pfns), max(pfns)))
    # spans of one node must not overlap: a kernel zone that interleaves with Movable is cut
    # at the Movable start (what is left of it lies below)
    by_node: Dict[int, List[Tuple[int, str, int, int]]] = {}
    for z in zone_specs:
        by_node.setdefault(z[0], []).append(z)
    fixed = []
    for nid, zs in by_node.items():
        zs.sort(key=lambda z: z[2])
        for i, z in enumerate(zs):
            end = z[3]
            if i + 1 < len(zs) and zs[i + 1][2] < end:
                end = zs[i + 1][2]
            if z[2] < end:
                fixed.append((nid, z[1], z[2], end))
    # merge adjacent RAM ranges of one node
    merged: List[Range] = []
    for rg in ranges:
        if merged and merged[-1].end == rg.start and merged[-1].nid == rg.nid:
            merged[-1].end = rg.end
        else:
            merged.append(rg)
    layout = Layout(
        arch=arch,
        ranges=merged,
        block_size=bs,
        geometry=geometry,
        zones=fixed,
        offline_blocks=[b.block for b in tree.blocks if b.state == "offline"],
        name=f"sysfs {tree.source}",
    )
    if not merged:
        raise LayoutError(f"{tree.source}: no blocks")
    return layout, tree.removable()
