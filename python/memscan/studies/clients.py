"""Client emulation: what lsmem, chmem and drmgr do against a kernel, and what it costs.

- ``lsmem``: reads removable, state and valid_zones of every block (util-linux; valid_zones only
  when memory0/valid_zones exists) — kernel-semantics.md section 8.
- ``chmem_size``: chmem SIZE mode for disable: walks blocks from the highest down, skips blocks
  already offline, reads the block's valid_zones when memory0/valid_zones exists (util-linux
  sys-utils/chmem.c chmem_size(), whatever -z says), writes "offline", on failure warns and
  moves on; never reads removable. Real chmem 2.38.1 on a real 5.4.59 +debug kernel is killed
  by that valid_zones read on the seed's shape (tests/groundtruth/seed-clients-5.4-debug).
- ``drmgr``: legacy powerpc-utils DLPAR removal (drslot_chrp_mem.c): reads removable of every
  LMB (memory block), shuffles the LMB list, counts removable LMBs (none: "There is not enough
  removable memory"), then takes candidates in list order skipping non-removable ones (unless
  AMS ballooning is active); on failure marks the LMB unusable and continues.
- ``blind``: the post-patch world: the same shuffled walk, every block a candidate.

Clients change the machine (successful offlines are applied), as they would; pass a fresh one.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ArgumentError
from ..kernel import Kernel, kernel_spec
from ..kinds import SEC_PRESENT
from ..results import ScanResult
from .cost import CostModel


@dataclass
class ClientRun:
    client: str
    kernel: str
    requested_blocks: int
    offlined_blocks: int = 0
    attempts: int = 0
    failures: Dict[str, int] = field(default_factory=dict)
    removable_reads: int = 0
    removable_struct_pages_read: int = 0
    wasted_pages_migrated: int = 0
    kernel_ns: float = 0.0
    met: bool = False
    message: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _attempt(
    run: ClientRun, m: Any, block: int, cost: CostModel, patience_rounds: int, extra_ns: float = 0.0
) -> None:
    """One ``echo offline > memoryN/state`` by a client, with its accounting."""
    o = m.offline(block, run.kernel, dry_run=False, patience_rounds=patience_rounds)
    run.attempts += 1
    run.kernel_ns += cost.offline_ns(o) + extra_ns
    if o.ok:
        run.offlined_blocks += 1
        return
    key = f"{o.errno} {o.reason or '(no reason)'}"
    run.failures[key] = run.failures.get(key, 0) + 1
    run.wasted_pages_migrated += o.pages_migrated


def _scan(m: Any, kernel: str, scan: Optional[ScanResult]) -> ScanResult:
    """``removable`` of every block of ``m`` under ``kernel``: ``scan`` where the caller has
    one of this machine as it is now (``Machine.predict``'s ``scan_pre``), else scanned."""
    if scan is None:
        return m.scan(kernel, progress=False)
    want = kernel_spec(kernel)
    if scan.kernel != want:
        raise ArgumentError(f"scan= is a scan under {scan.kernel}, not {want}")
    if not np.array_equal(scan.block, m.blocks()):
        raise ArgumentError("scan= does not cover this machine's blocks in order")
    return scan


def valid_zones_struct_pages(m: Any, kernel: str) -> np.ndarray:
    """Struct pages one read of ``memoryN/valid_zones`` touches, per block id: 5.x
    ``test_pages_in_a_zone()`` samples one page per MAX_ORDER_NR_PAGES of each present
    section of the block; 6.1 answers from ``mem->zone`` (none). The one home of this count
    (the lsmem emulation and the live view both use it); computed for every block at once."""
    g = m.geometry
    flags = np.asarray(m.sections()["flags"])
    spb = g.sections_per_block
    n = -(-len(flags) // spb)
    if not Kernel.parse(kernel, g.arch).valid_zones_reads_pages:
        return np.zeros(n, dtype=np.int64)
    present = np.zeros(n * spb, dtype=np.int64)
    present[: len(flags)] = (flags & SEC_PRESENT) != 0
    per_section = g.pages_per_section // (1 << (g.max_order - 1))
    return present.reshape(n, spb).sum(axis=1) * per_section


def lsmem(
    m: Any, kernel: str, cost: CostModel, scan: Optional[ScanResult] = None
) -> Dict[str, Any]:
    """Kernel work of one full lsmem run, as util-linux 2.38 lsmem reads (lsmem.c
    memory_block_read_attrs(), blocks in versionsort order): per block ``removable``,
    ``state``, the block directory (its node link) and, when memory0/valid_zones exists,
    ``valid_zones``, after one listing of the first block's directory at start
    (read_basic_info()). A read the kernel oopses or BUGs on kills lsmem there: nothing after it
    is read (``killed_at``). ``scan``: this machine's scan under ``kernel``, taken as it is
    now (for instance ``Machine.predict(...).scan_pre``), so it is not scanned again."""
    s = _scan(m, kernel, scan)
    blocks = s.block.tolist()
    have_zones = 0 in blocks
    faults = {f.block: f for f in s.faults}
    if have_zones:
        vz_pages = valid_zones_struct_pages(m, kernel)
        # None where the read faults (one native call for all blocks)
        vz_text = m.valid_zones_many(blocks, kernel)
    # read_basic_info() lists the first block's directory once (whether nodes are shown)
    reads = done = 0
    syscalls = 1 if blocks else 0
    killed_at = None
    for b, r in zip(blocks, s.struct_pages_read.tolist()):
        done += 1
        reads += int(r)
        syscalls += 1  # removable
        f = faults.get(b)
        if f is not None and f.kind in ("bug", "oops"):
            killed_at = b
            break
        syscalls += 2  # state, and the block directory (node link)
        if have_zones:
            syscalls += 1
            reads += int(vz_pages[b])
            if vz_text[done - 1] is None:  # a fault: only an oops or a BUG kills lsmem
                v = m.valid_zones_read(b, kernel)
                if v.fault is not None and v.fault.kind in ("bug", "oops"):
                    killed_at = b
                    break
    return {
        "blocks": done,
        "struct_pages_read": reads,
        "syscalls": syscalls,
        "kernel_ns": reads * cost.ns_per_struct_page + syscalls * cost.ns_per_syscall,
        "faults": len(s.faults),
        "killed_at": killed_at,
    }


def chmem_size(
    m: Any, kernel: str, n_blocks: int, cost: CostModel, patience_rounds: int = 1000
) -> ClientRun:
    run = ClientRun("chmem", kernel, n_blocks)
    states = m.block_states()
    blocks = m.blocks().tolist()
    try:
        have_zones = 0 in blocks and m.valid_zones_read(0, kernel) is not None
    except ArgumentError:  # no CONFIG_MEMORY_HOTREMOVE: no valid_zones file
        have_zones = False
    for b in sorted(blocks, reverse=True):
        if run.offlined_blocks >= n_blocks:
            break
        run.kernel_ns += cost.ns_per_syscall  # read state (first 6 chars compared)
        if states[b] != 1:  # not online (each block is tried at most once, so this stays exact)
            continue
        if have_zones:
            run.kernel_ns += cost.ns_per_syscall
            v = m.valid_zones_read(b, kernel)
            if v.fault is not None and v.fault.kind in ("bug", "oops"):
                run.message = (
                    f"killed reading memory{b}/valid_zones ({v.fault.kind}: {v.fault.message})"
                )
                return run
        _attempt(run, m, b, cost, patience_rounds)
    run.met = run.offlined_blocks >= n_blocks
    return run


def _shuffled_lmbs(m: Any, seed: int) -> List[int]:
    lmbs = sorted(m.blocks().tolist())
    random.Random(seed).shuffle(lmbs)
    return lmbs


def drmgr(
    m: Any,
    kernel: str,
    n_blocks: int,
    cost: CostModel,
    seed: int = 0,
    ballooning: bool = False,
    patience_rounds: int = 1000,
    name: str = "drmgr",
    read_removable: bool = True,
    scan: Optional[ScanResult] = None,
    order: Optional[Sequence[int]] = None,
    reader_dies_alone: bool = False,
) -> ClientRun:
    """``scan``: this machine's scan under ``kernel`` as it is now (see ``lsmem``); drmgr
    reads the blocks in its own shuffled order from it. ``order``: the blocks in the order
    this agent walks them, instead of drmgr's shuffle (the guest agents' own shuffle).
    ``reader_dies_alone``: each read is a child process (a shell agent's ``cat``), so a read
    the kernel kills ends that child only and the agent takes the block as not removable."""
    run = ClientRun(name, kernel, n_blocks)
    states = m.block_states()
    lmbs = _shuffled_lmbs(m, seed) if order is None else [int(b) for b in order]
    removable = {}
    if read_removable:
        s = _scan(m, kernel, scan)
        faulted = {f.block: f for f in s.faults}
        # each read in drmgr's order: a scan's answers do not depend on the order read
        at = {b: i for i, b in enumerate(s.block.tolist())}
        order = [at[b] for b in lmbs]
        for b, v, r in zip(
            s.block[order].tolist(), s.value[order].tolist(), s.struct_pages_read[order].tolist()
        ):
            run.removable_reads += 1
            run.removable_struct_pages_read += int(r)
            run.kernel_ns += cost.removable_read_ns(int(r))
            if b in faulted and faulted[b].kind in ("bug", "oops"):
                if reader_dies_alone:
                    removable[b] = False
                    continue
                # the read never returns: the kernel BUGs or oopses and drmgr is killed
                run.message = (
                    f"killed reading memory{b}/removable ({faulted[b].kind}: {faulted[b].message})"
                )
                return run
            removable[b] = v == 1
        if not ballooning and not any(removable.values()):
            run.message = "There is not enough removable memory available to fulfill the request"
            return run
    for b in lmbs:
        if run.offlined_blocks >= n_blocks:
            break
        if read_removable and not ballooning and not removable.get(b, False):
            continue
        if states[b] != 1:  # not online (each block is tried at most once, so this stays exact)
            continue
        _attempt(
            run, m, b, cost, patience_rounds, extra_ns=cost.ns_per_syscall
        )  # + re-read of state
    run.met = run.offlined_blocks >= n_blocks
    return run


def blind(
    m: Any,
    kernel: str,
    n_blocks: int,
    cost: CostModel,
    seed: int = 0,
    patience_rounds: int = 1000,
    order: Optional[Sequence[int]] = None,
) -> ClientRun:
    """Every block is a candidate (what drmgr does once removable always reads 1)."""
    return drmgr(
        m,
        kernel,
        n_blocks,
        cost,
        seed,
        patience_rounds=patience_rounds,
        name="blind",
        read_removable=False,
        order=order,
    )
