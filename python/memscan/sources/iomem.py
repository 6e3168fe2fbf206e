"""/proc/iomem text to a Layout.

"System RAM" is RAM (memblock.memory, and memory added later by add_memory()): at the top
level, or nested under a device resource when a driver added it (virtio-mem adds its memory
as "System RAM (virtio_mem)" children of "virtio0"; add_memory_driver_managed()), but never a
"System RAM" inside another one; "Kernel code/rodata/data/bss" and
"Crash kernel" nested in it are memblock-reserved pages (PG_reserved); "Persistent Memory"
and its legacy name "Persistent Memory (legacy)" are pmem, hot-added as ZONE_DEVICE; every
other top-level line (Reserved, Soft Reserved, ACPI Tables, ACPI Non-volatile Storage, PCI
buses, ROMs, ...) is not RAM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional

from ..errors import ParseError
from .layout import Layout, Range

_LINE = re.compile(
    r"^(?P<indent>\s*)(?P<start>[0-9a-fA-F]+)-(?P<end>[0-9a-fA-F]+) : (?P<name>\S.*)$"
)

RESERVED_IN_RAM = {
    "Kernel code",
    "Kernel rodata",
    "Kernel data",
    "Kernel bss",
    "Crash kernel",
}
PMEM_NAMES = {"Persistent Memory", "Persistent Memory (legacy)"}


def is_system_ram(name: str) -> bool:
    """ "System RAM", or driver-managed RAM named after its driver ("System RAM (virtio_mem)":
    add_memory_driver_managed(), v5.8+)."""
    return name == "System RAM" or (name.startswith("System RAM (") and name.endswith(")"))


@dataclass
class IomemEntry:
    start: int
    end: int  # inclusive, as printed
    name: str
    depth: int
    line: int


def parse_entries(text: str, source: str = "<iomem>") -> List[IomemEntry]:
    """Parse lines into entries, checking nesting and overlaps."""
    entries: List[IomemEntry] = []
    stack: List[IomemEntry] = []
    last_top: Optional[IomemEntry] = None
    all_zero = True
    for no, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = _LINE.match(raw.rstrip())
        if not m:
            raise ParseError(f"{source}:{no}: not an iomem line (want 'start-end : name'): {raw!r}")
        indent = len(m.group("indent").expandtabs())
        if indent % 2:
            raise ParseError(f"{source}:{no}: odd indentation ({indent} spaces): {raw!r}")
        depth = indent // 2
        start, end = int(m.group("start"), 16), int(m.group("end"), 16)
        if start or end:
            all_zero = False
        if end < start:
            raise ParseError(f"{source}:{no}: end {end:#x} is below start {start:#x}")
        e = IomemEntry(start, end, m.group("name").strip(), depth, no)
        while stack and stack[-1].depth >= depth:
            stack.pop()
        if depth > len(stack):
            raise ParseError(f"{source}:{no}: indented {depth} levels but its parent is missing")
        if stack:
            p = stack[-1]
            if not (p.start <= start and end <= p.end):
                raise ParseError(
                    f"{source}:{no}: {e.name!r} {start:#x}-{end:#x} is not inside its parent "
                    f"{p.name!r} {p.start:#x}-{p.end:#x} (line {p.line})"
                )
        elif last_top is not None and start <= last_top.end and not all_zero:
            raise ParseError(
                f"{source}:{no}: {e.name!r} {start:#x}-{end:#x} overlaps {last_top.name!r} "
                f"{last_top.start:#x}-{last_top.end:#x} (line {last_top.line})"
            )
        if depth == 0:
            last_top = e
        stack.append(e)
        entries.append(e)
    if not entries:
        raise ParseError(f"{source}: no iomem lines")
    if all_zero:
        raise ParseError(
            f"{source}: every address is zero: /proc/iomem was read without root "
            "(the kernel hides addresses without CAP_SYS_ADMIN)"
        )
    return entries


def layout_from_iomem(
    text: str,
    arch: str = "x86_64",
    block_size: Optional[int] = None,
    source: str = "<iomem>",
    name: Optional[str] = None,
) -> Layout:
    """Build a Layout from /proc/iomem text (all memory on node 0)."""
    entries = parse_entries(text, source)
    ranges: List[Range] = []
    ram_tops = []
    for e in entries:
        inside_ram = any(t.start <= e.start and e.end <= t.end for t in ram_tops)
        if is_system_ram(e.name) and not inside_ram:
            driver = e.name[len("System RAM (") : -1] if e.name != "System RAM" else None
            ranges.append(Range(e.start, e.end + 1, "ram", driver=driver))
            ram_tops.append(e)
        elif e.depth == 0:
            if e.name in PMEM_NAMES:
                ranges.append(Range(e.start, e.end + 1, "device"))
        elif e.name in RESERVED_IN_RAM and any(
            t.start <= e.start and e.end <= t.end for t in ram_tops
        ):
            ranges.append(Range(e.start, e.end + 1, "reserved"))
    if not any(r.kind == "ram" for r in ranges):
        raise ParseError(f"{source}: no 'System RAM' line")
    return Layout(arch=arch, ranges=ranges, block_size=block_size, name=name or source)
