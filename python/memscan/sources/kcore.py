"""Read-only reads of the running kernel's struct pages through /proc/kcore.

/proc/kcore is an ELF64 core file of kernel virtual memory (fs/proc/kcore.c, 5.4 and 6.1): one
PT_LOAD segment per piece the kernel lists, among them the vmemmap of every System RAM range
(KCORE_VMEMMAP, under CONFIG_SPARSEMEM_VMEMMAP). Reading it needs CAP_SYS_RAWIO (root) and a
kernel not in lockdown. The ELF headers are parsed with pyelftools; the bytes are read with
plain preads at the segments' file offsets (the file is sparse and as large as the kernel's
address space).

Where struct pages are: the kernel variable ``vmemmap_base`` (x86_64 with RANDOMIZE_MEMORY,
which KASLR and 5-level paging move), its address from /proc/kallsyms and its value from
kcore; without that symbol, the 4-level default 0xffffea0000000000. Nothing is guessed: a
hidden symbol address (kptr_restrict), a value kcore does not hold, or a base at which the
first RAM range's struct pages lie in no kcore segment is refused with the reason.
"""

from __future__ import annotations

import os
from typing import IO, Iterator, List, Optional, Tuple

from .._core import X86_VMEMMAP_BASE
from ..errors import ParseError

#: bytes per struct page on x86_64 (5.4 and 6.1 configs memscan decodes)
STRUCT_PAGE = 64
READ_BYTES = 16 << 20  # one pread at most


class Kcore:
    """An opened /proc/kcore (or a file with its format): PT_LOAD segments and reads by
    kernel virtual address. A context manager."""

    def __init__(self, path: str):
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        self.path = path
        try:
            self.f: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise ParseError(f"{path}: cannot read: {e.strerror}") from None
        try:
            elf = ELFFile(self.f)
            if elf.elfclass != 64 or not elf.little_endian or elf["e_machine"] != "EM_X86_64":
                raise ParseError(
                    f"{path}: an ELF{elf.elfclass} {elf['e_machine']} core; memscan reads "
                    "struct pages of x86_64 kernels only"
                )
            #: (vaddr, memsz, file offset, filesz) of each PT_LOAD, by vaddr
            self.segments: List[Tuple[int, int, int, int]] = sorted(
                (s["p_vaddr"], s["p_memsz"], s["p_offset"], s["p_filesz"])
                for s in elf.iter_segments()
                if s["p_type"] == "PT_LOAD"
            )
        except ParseError:
            self.f.close()
            raise
        except (ELFError, OSError, ValueError) as e:
            self.f.close()
            raise ParseError(f"{path}: not an ELF core file: {e}") from None
        if not self.segments:
            self.f.close()
            raise ParseError(f"{path}: an ELF core without PT_LOAD segments")

    def covers(self, vaddr: int) -> bool:
        """Whether a segment holds the byte at ``vaddr``."""
        return any(v <= vaddr < v + n for v, n, _, _ in self.segments)

    def chunks(self, vaddr: int, length: int) -> Iterator[Tuple[bytes, bool]]:
        """[vaddr, vaddr + length) in pieces of at most READ_BYTES: (bytes, read) where
        ``read`` is False for zeroes standing in for addresses no segment holds (the vmemmap
        of a hole; the decoder keeps the model's own page for an all-zero struct page)."""
        pos, end = vaddr, vaddr + length
        while pos < end:
            seg = next((s for s in self.segments if s[0] <= pos < s[0] + s[1]), None)
            if seg is None:
                nxt = min((s[0] for s in self.segments if pos < s[0] < end), default=end)
                n = min(nxt - pos, READ_BYTES)
                yield bytes(n), False
                pos += n
                continue
            v, memsz, off, filesz = seg
            n = min(end, v + memsz) - pos
            n = min(n, READ_BYTES)
            inside = max(0, min(n, v + filesz - pos))  # past p_filesz the segment reads zero
            data = os.pread(self.f.fileno(), inside, off + pos - v) if inside else b""
            if len(data) != inside:
                raise ParseError(
                    f"{self.path}: segment at {v:#x} ends early ({len(data)} of {inside} "
                    f"bytes at {pos:#x})"
                )
            yield data + bytes(n - inside), True
            pos += n

    def read(self, vaddr: int, length: int) -> Optional[bytes]:
        """``length`` bytes at ``vaddr``, or None if any of them lies in no segment."""
        parts = list(self.chunks(vaddr, length))
        if not all(ok for _, ok in parts):
            return None
        return b"".join(d for d, _ in parts)

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> Kcore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kallsyms_address(text: str, symbol: str) -> Optional[int]:
    """The address /proc/kallsyms gives ``symbol`` (0 where kptr_restrict hides it), or None
    where the kernel has no such symbol."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == symbol:
            try:
                return int(parts[0], 16)
            except ValueError:
                raise ParseError(f"kallsyms: {symbol}'s address {parts[0]!r} is not hex") from None
    return None


def vmemmap_base(kcore: Kcore, kallsyms: Optional[str], first_ram_pfn: int) -> Tuple[int, str]:
    """(base, where it came from): see the module docstring. Raises ParseError with the reason
    where the base cannot be told."""
    where = "default (4-level paging, no vmemmap_base symbol)"
    base = X86_VMEMMAP_BASE
    if kallsyms is None:
        raise ParseError(
            "/proc/kallsyms is not readable: the vmemmap base (moved by KASLR) cannot be told"
        )
    addr = kallsyms_address(kallsyms, "vmemmap_base")
    if addr == 0:
        raise ParseError(
            "/proc/kallsyms hides vmemmap_base's address (kptr_restrict; read it as root "
            "with kernel.kptr_restrict <= 1): the vmemmap base cannot be told"
        )
    if addr is not None:
        raw = kcore.read(addr, 8)
        if raw is None:
            raise ParseError(
                f"{kcore.path}: vmemmap_base ({addr:#x}, from kallsyms) is in no segment"
            )
        base, where = int.from_bytes(raw, "little"), "kallsyms vmemmap_base"
    # a wrong base (5-level paging without the symbol, a stale kallsyms) points at memory
    # kcore does not list: refuse rather than decode other memory as struct pages
    probe = base + first_ram_pfn * STRUCT_PAGE
    if not kcore.covers(probe):
        raise ParseError(
            f"{kcore.path}: no segment holds the struct page of pfn {first_ram_pfn:#x} at "
            f"{probe:#x} (vmemmap base {base:#x}, {where}): the base is wrong or this "
            "kernel's kcore lists no vmemmap"
        )
    return base, where
