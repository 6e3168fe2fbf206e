"""The embedded default: the machine of the March 2020 lsmem crash report.

Intel S2600WFD, kernel 5.5.10-200.fc31.x86_64+debug, 128 MiB sections, 2 GiB memory blocks.
The lines at and above 4 GiB are as reported. The report shows nothing below 4 GiB; the low
map below is a documented *typical* two-socket Purley (S2600WF-class) e820 map, not the
reporter's: page 0 and the legacy 640K-1M window reserved, RAM to ~1.4 GiB, firmware
reserved and ACPI ranges up to 2 GiB, the 32-bit PCI hole from 2 GiB to 4 GiB.

Block size: the x86 probe would choose 1 GiB for RAM ending at 0x303fffffff; the report's
memory96 = 0x3000000000 means 2 GiB blocks (kernel-semantics.md section 1), so 2 GiB is set.
The pmem namespace (1512 GiB from 0x3060000000) keeps its memmap on the device: its first
struct pages (the memmap's own, ~23.6 GiB) are never initialised.
"""

from __future__ import annotations

from .iomem import layout_from_iomem
from .layout import Layout

SEED_IOMEM = """\
00000000-00000fff : Reserved
00001000-0009afff : System RAM
0009b000-000fffff : Reserved
  000a0000-000bffff : PCI Bus 0000:00
  000f0000-000fffff : System ROM
00100000-5a8d6fff : System RAM
5a8d7000-6d5f7fff : Reserved
6d5f8000-6e0a5fff : ACPI Non-volatile Storage
6e0a6000-6f2fffff : ACPI Tables
6f300000-6f7fffff : System RAM
6f800000-8fffffff : Reserved
90000000-fbffffff : PCI Bus 0000:00
fd000000-fe7fffff : Reserved
fec00000-fec003ff : IOAPIC 0
fed00000-fed003ff : HPET 0
fee00000-fee00fff : Local APIC
ff000000-ffffffff : Reserved
100000000-303fffffff : System RAM
  291f000000-291fe00f70 : Kernel code
  2920000000-292051efff : Kernel rodata
  2920600000-292093b0bf : Kernel data
  29214f3000-2922dfffff : Kernel bss
3040000000-305fffffff : Reserved
3060000000-1aa5fffffff : Persistent Memory
"""

SEED_DESCRIPTION = (
    "seed machine: Intel S2600WFD, 5.5.10-200.fc31.x86_64+debug, 128 MiB sections, "
    "2 GiB blocks (March 2020 lsmem crash report; low map below 4 GiB is a typical one)"
)


def seed_layout() -> Layout:
    return layout_from_iomem(
        SEED_IOMEM, arch="x86_64", block_size=2 << 30, source="seed", name=SEED_DESCRIPTION
    )
