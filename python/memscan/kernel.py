"""Kernel profiles as values: a kernel name (``"5.5+debug"``, ``"6.1"``, a ``uname -r`` string
such as ``"6.1.0-18-amd64"``) parsed once, by the core's parser, into a frozen ``Kernel`` whose
fields are the behaviours the models follow. Code that needs to know what a kernel does asks
its ``Kernel`` (``k.removable_scans``, ``k.offline_path_6_1``), never the version string.

Every API that takes ``kernel=`` takes a name or a ``Kernel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from . import _core
from .errors import ArgumentError

#: The pre-patch kernel of the March 2020 report (Fedora 5.5.10 +debug): the default wherever
#: a kernel that scans ``removable`` is wanted.
SEED_KERNEL = "5.5+debug"
#: The kernel that took 53cdc1cb29e8 ("indicate all memory blocks as removable").
POST_PATCH_KERNEL = "5.6"
#: Today's offline path (kernel-6.1-offline.md): the default for offline and valid_zones.
OFFLINE_KERNEL = "6.1"


@dataclass(frozen=True)
class Kernel:
    """One modeled kernel: version, arch, config, and the behaviours they decide."""

    version: str  # "5.4", "5.5", "5.6-rc", "5.6", "6.1"
    arch: str
    name: str  # "5.5+debug": what the core reads back as this profile
    debug_vm: bool
    debug_vm_pgflags: bool
    memory_hotremove: bool
    #: removable_show() scans the memmap (before 53cdc1cb29e8) instead of printing 1
    removable_scans: bool
    holes_zeroed: bool
    holes_in_zone_initialised: bool
    holes_read_zone_zero: bool
    has_memory_holes_check: bool
    #: the 6.1 memory-block offline path (mem->zone, lru_cache_disable, 6.1 isolation order)
    offline_path_6_1: bool
    has_is_mem_section_removable: bool
    warns_unmovable_in_zone_movable: bool
    cmm_isolate_notifier: bool
    cmm_balloon_compaction: bool
    #: the zone a zeroed struct page names (zone index 0 on this arch and version)
    zone_zero: str

    @classmethod
    def parse(cls, spec: KernelLike, arch: str = "x86_64") -> Kernel:
        """Parse a kernel name or ``uname -r`` string.

        Raises:
            ArgumentError: a kernel no profile models (the message says which ones are).
        """
        if isinstance(spec, Kernel):
            return spec if spec.arch == arch else cls.parse(spec.name, arch)
        if not isinstance(spec, str):
            raise ArgumentError(f"kernel {spec!r}: want a kernel name such as 5.5+debug or 6.1")
        return cls(**_core.kernel_profile(spec, arch))

    @property
    def debug(self) -> bool:
        return self.debug_vm and self.debug_vm_pgflags

    @property
    def valid_zones_reads_pages(self) -> bool:
        """``valid_zones`` of an online block runs test_pages_in_a_zone() (5.x), which reads
        struct pages; 6.1 prints ``mem->zone``."""
        return not self.offline_path_6_1

    def without_debug(self) -> Kernel:
        """The same kernel without DEBUG_VM (what an offline run on a production build does)."""
        if not self.debug_vm:
            return self
        return Kernel.parse(self.name.split("+", 1)[0], self.arch)

    def __str__(self) -> str:
        return self.name


KernelLike = Union[str, Kernel]


def kernel_spec(kernel: KernelLike) -> str:
    """The name to hand the core: a ``Kernel``'s own, or the string as given (the core parses
    and refuses it)."""
    if isinstance(kernel, Kernel):
        return kernel.name
    if not isinstance(kernel, str):
        raise ArgumentError(f"kernel {kernel!r}: want a kernel name such as 5.5+debug or 6.1")
    return kernel


#: The struct page layouts ``Machine.import_memmap`` decodes, by the kernel version each was
#: read in (5.4.59 and v6.1-rc7, x86_64); checked against real 5.4.59 and Debian 6.1 guests.
MEMMAP_LAYOUTS = {"5.4": "5.4-x86_64", "6.1": "6.1-x86_64"}


def memmap_layout(release: object, arch: str = "x86_64") -> Optional[str]:
    """The struct page layout of a ``uname -r`` string or profile name, or None where memscan
    does not decode that kernel's struct pages (another version or arch: never guessed)."""
    if arch != "x86_64" or not isinstance(release, (str, Kernel)):
        return None
    try:
        version = Kernel.parse(release, arch).version
    except ArgumentError:
        return None
    return MEMMAP_LAYOUTS.get(version)


__all__ = [
    "Kernel",
    "KernelLike",
    "kernel_spec",
    "SEED_KERNEL",
    "POST_PATCH_KERNEL",
    "OFFLINE_KERNEL",
    "MEMMAP_LAYOUTS",
    "memmap_layout",
]
