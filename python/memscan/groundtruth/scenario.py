"""Scenario files: what a ground-truth run sets up in the guest and what it tries.

A scenario is a small TOML file (see ``scenarios/*.toml``)::

    name = "seed-5.4"
    memory = "67G"                 # guest RAM (lazy on the host: memory-backend-ram reserve=off)
    append = "memmap=512M!0x1060000000"   # extra kernel command line
    pmem_fsdax = true              # legacy pmem -> fsdax with the memmap on the device
    reads = ["removable"]          # per-block attributes read as timed attempts, in block order
    memmap_blocks = [32]           # raw struct pages of these blocks from /proc/kcore
    attempt_memmap = false         # also copy a block's struct pages right before each read
    attempt_after = true           # copy the block again right after each offline write
                                   # (what it migrated, freed or offlined); the default
    reread = false                 # after each offline write, read every online block's
                                   # removable again (timed, with its pre-read copy): the
                                   # answer and its cost as memory moves
    timeout = 240                  # seconds of wall time before the run is called timed out
    dimms = ["1G"]                 # coldplugged pc-dimm devices (ACPI memory hotplug: their
                                   # blocks come up offline unless the kernel auto-onlines)
    hotadd = ["512M"]              # pc-dimm devices added at run time over QMP (object-add +
                                   # device_add) once the guest has booted, before onlining
    virtio_mem = "1G"              # a virtio-mem-pci device of this size (its driver, a module
    virtio_mem_requested = "320M"  # of the kernel, plugs this much; SBM plugs 2 MiB subblocks,
                                   # so a block can be partly plugged: its unplugged pages are
                                   # PageOffline, "fake offline")
    online = "online_movable"      # then every offline block is onlined this way
                                   # (online | online_kernel | online_movable)
    hugepages = 64                 # 2 MiB hugetlb pool pages reserved at boot (nr_hugepages)
    tmpfs_mb = 64                  # page cache: a file of this size on the guest's tmpfs
    offline = [30, 12]             # blocks to offline, in order ("all": every online block)
    offline_timeout = 10           # seconds before SIGALRM interrupts an offline write (EINTR)
    clients = ["lsmem", "agent-hint 2 7", "agent-blind 2 7", "chmem -d 256M"]
                                   # real tools run after the attempts, in order, timed:
                                   # util-linux lsmem/chmem (the host's, with their libraries),
                                   # agent-hint N SEED (a drmgr-like agent: reads every
                                   # removable, offlines removable blocks in a shuffled order
                                   # until N), agent-blind N SEED (the same walk, no hint)
    [[workload]]                   # hogs started before the snapshot
    kind = "anon"                  # anon | mlock | thp | hugetlb | pipe | iouring (fixed
                                   # buffers: long-term pins)
    mb = 256

Unknown keys are refused, so a typo never silently changes what runs.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Union

from ..errors import ParseError
from ..sizes import parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    import tomli as tomllib

SCENARIO_DIR = os.path.join(os.path.dirname(__file__), "scenarios")
READABLE = ("removable", "valid_zones")
HOG_KINDS = ("anon", "mlock", "thp", "hugetlb", "pipe", "iouring")
#: clients a scenario may run: util-linux tools from the host, and our two agents
CLIENTS = ("lsmem", "chmem", "agent-hint", "agent-blind")
#: host tools copied into the guest with their shared libraries
HOST_TOOLS = {"lsmem": "lsmem", "chmem": "chmem"}


@dataclass(frozen=True)
class Hog:
    kind: str
    mb: int


@dataclass(frozen=True)
class Scenario:
    name: str
    memory: int
    append: str = ""
    pmem_fsdax: bool = False
    pmem_align: int = 2 << 20
    reads: List[str] = field(default_factory=lambda: ["removable"])
    memmap_blocks: List[int] = field(default_factory=list)
    attempt_memmap: bool = False
    attempt_after: bool = True
    reread: bool = False
    dimms: List[int] = field(default_factory=list)
    hotadd: List[int] = field(default_factory=list)
    virtio_mem: int = 0
    virtio_mem_requested: int = 0
    online: str = ""
    hugepages: int = 0
    tmpfs_mb: int = 0
    offline: Union[str, List[int]] = field(default_factory=list)
    offline_timeout: int = 10
    clients: List[str] = field(default_factory=list)
    workload: List[Hog] = field(default_factory=list)
    timeout: float = 240.0
    smp: int = 2
    source: str = "<scenario>"

    @classmethod
    def from_dict(cls, d: Dict[str, Any], source: str = "<scenario>") -> Scenario:
        known = {
            "name",
            "memory",
            "append",
            "pmem_fsdax",
            "pmem_align",
            "reads",
            "memmap_blocks",
            "attempt_memmap",
            "attempt_after",
            "reread",
            "dimms",
            "hotadd",
            "virtio_mem",
            "virtio_mem_requested",
            "online",
            "hugepages",
            "tmpfs_mb",
            "offline",
            "offline_timeout",
            "clients",
            "workload",
            "timeout",
            "smp",
        }
        extra = sorted(set(d) - known)
        if extra:
            raise ParseError(f"{source}: unknown scenario keys {extra} (known: {sorted(known)})")
        if "name" not in d or "memory" not in d:
            raise ParseError(f"{source}: a scenario needs 'name' and 'memory'")

        def typed(key: str, want: Any, default: Any) -> Any:
            v = d.get(key, default)
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ParseError(
                    f"{source}: {key} = {v!r} is not a {getattr(want, '__name__', want)}"
                )
            return v

        reads = typed("reads", list, ["removable"])
        for r in reads:
            if r not in READABLE:
                raise ParseError(f"{source}: reads: {r!r} is not one of {list(READABLE)}")
        blocks = typed("memmap_blocks", list, [])
        if any(not isinstance(b, int) or isinstance(b, bool) or b < 0 for b in blocks):
            raise ParseError(f"{source}: memmap_blocks must be block numbers, got {blocks!r}")
        hogs = []
        for i, w in enumerate(typed("workload", list, [])):
            if not isinstance(w, dict) or set(w) - {"kind", "mb"} or "kind" not in w:
                raise ParseError(f"{source}: workload[{i}] wants kind and mb, got {w!r}")
            if w["kind"] not in HOG_KINDS:
                raise ParseError(
                    f"{source}: workload[{i}].kind {w['kind']!r} is not one of {HOG_KINDS}"
                )
            mb = w.get("mb", 64)
            if not isinstance(mb, int) or isinstance(mb, bool) or mb <= 0:
                raise ParseError(f"{source}: workload[{i}].mb {mb!r} is not a positive integer")
            hogs.append(Hog(w["kind"], mb))
        offline = d.get("offline", [])
        if offline != "all" and (
            not isinstance(offline, list)
            or any(not isinstance(b, int) or isinstance(b, bool) or b < 0 for b in offline)
        ):
            raise ParseError(f'{source}: offline must be "all" or block numbers, got {offline!r}')
        for key in ("hugepages", "tmpfs_mb", "offline_timeout"):
            v = d.get(key, 0)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ParseError(f"{source}: {key} = {v!r} is not a non-negative integer")
        dimms = [parse_size(x, f"{source}: dimms") for x in typed("dimms", list, [])]
        if any(x <= 0 or x % (128 << 20) for x in dimms):
            raise ParseError(f"{source}: dimms must be whole multiples of 128 MiB, got {dimms}")
        hotadd = [parse_size(x, f"{source}: hotadd") for x in typed("hotadd", list, [])]
        if any(x <= 0 or x % (128 << 20) for x in hotadd):
            raise ParseError(f"{source}: hotadd must be whole multiples of 128 MiB, got {hotadd}")
        vmem = parse_size(d.get("virtio_mem", 0), f"{source}: virtio_mem")
        vreq = parse_size(d.get("virtio_mem_requested", 0), f"{source}: virtio_mem_requested")
        if vmem % (128 << 20):
            raise ParseError(f"{source}: virtio_mem = {vmem} is not a whole multiple of 128 MiB")
        if vreq % (2 << 20) or vreq > vmem:
            raise ParseError(
                f"{source}: virtio_mem_requested = {vreq} must be a multiple of 2 MiB (the "
                f"device's block size) and at most virtio_mem ({vmem})"
            )
        online = typed("online", str, "")
        if online not in ("", "online", "online_kernel", "online_movable"):
            raise ParseError(
                f"{source}: online = {online!r} is not online/online_kernel/online_movable"
            )
        clients = typed("clients", list, [])
        for c in clients:
            if not isinstance(c, str) or c.split()[0] not in CLIENTS:
                raise ParseError(
                    f"{source}: clients: {c!r} is not one of {list(CLIENTS)} with arguments"
                )
        timeout = typed("timeout", (int, float), 240)
        if timeout <= 0:
            raise ParseError(f"{source}: timeout {timeout!r} must be positive")
        reread = typed("reread", bool, False)
        if reread and not d.get("offline"):
            raise ParseError(
                f"{source}: reread re-reads removable after offline writes: no offline"
            )
        return cls(
            name=typed("name", str, ""),
            memory=parse_size(d["memory"], f"{source}: memory"),
            append=typed("append", str, ""),
            pmem_fsdax=typed("pmem_fsdax", bool, False),
            pmem_align=parse_size(d.get("pmem_align", "2M"), f"{source}: pmem_align"),
            reads=list(reads),
            memmap_blocks=list(blocks),
            attempt_memmap=typed("attempt_memmap", bool, False),
            attempt_after=typed("attempt_after", bool, True),
            reread=reread,
            hugepages=d.get("hugepages", 0),
            tmpfs_mb=d.get("tmpfs_mb", 0),
            offline=offline if offline == "all" else list(offline),
            offline_timeout=d.get("offline_timeout", 10) or 10,
            clients=list(clients),
            dimms=dimms,
            hotadd=hotadd,
            virtio_mem=vmem,
            virtio_mem_requested=vreq,
            online=online,
            workload=hogs,
            timeout=float(timeout),
            smp=typed("smp", int, 2),
            source=source,
        )

    @classmethod
    def load(cls, spec: Union[str, os.PathLike[str]]) -> Scenario:
        """A scenario file, or the name of one shipped in memscan/groundtruth/scenarios."""
        path = os.fspath(spec)
        if not os.path.exists(path):
            shipped = os.path.join(SCENARIO_DIR, f"{path}.toml")
            if os.path.exists(shipped):
                path = shipped
            else:
                names = sorted(n[:-5] for n in os.listdir(SCENARIO_DIR) if n.endswith(".toml"))
                raise ParseError(f"scenario {spec!r}: no such file and no shipped scenario {names}")
        try:
            with open(path, "rb") as f:
                d = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ParseError(f"{path}: not valid TOML: {e}") from None
        return cls.from_dict(d, path)
