"""Export a modeled machine as a sysfs tree that util-linux ``lsmem --sysroot`` reads.

Formats follow drivers/base/memory.c (kernel-semantics.md section 8): ``block_size_bytes``
is ``%lx`` without 0x; ``memoryN/phys_index`` is ``%08lx``; ``state`` is online / offline /
going-offline; ``online`` is 1/0; ``removable`` is the profile's answer; ``phys_device`` is 0,
except on s390x with a known storage increment (``Machine.storage_increment``, inferred by
``from_sysfs``): start address / increment; ``valid_zones`` exists only with
CONFIG_MEMORY_HOTREMOVE. ``memoryN/nodeX`` links to ``../../node/nodeX`` and
``node/nodeX/memoryN`` back, for the node of each block's sections. Blocks exist only where
the kernel creates a directory.

A block whose ``removable`` read faults (memory96 of the seed) is written according to
``on_fault``:

- ``"missing"`` (default): no ``removable`` file. lsmem's read fails, the flag stays 0, and it
  prints REMOVABLE "no" for that online block; the range splits there. This is the closest a
  file tree gets to the crashing kernel, where the read never returned and lsmem died.
- ``"0"`` / ``"1"``: write that value instead (e.g. "1" for what the post-patch kernel says).

The target must be empty (or missing): an export never merges with what is there, since lsmem
would then show two machines mixed. ``force=True`` replaces an earlier export whole, and only
one: a root holding anything but ``sys/devices/system/{memory,node}`` and ``.memscan-values``
is refused even then. Files have the kernel's modes (0444; ``state`` and ``online`` 0644, each
block's own file, so writing one block's ``state`` changes that block only).
"""

from __future__ import annotations

import os
import shutil
import stat
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .errors import ArgumentError
from .kinds import SEC_DEVICE, SEC_PRESENT, BlockState

PathLike = Union[str, "os.PathLike[str]"]


def refuse_real_proc_sys(root: str) -> None:
    """Refuse to write at or under the real /sys or /proc (symlinks resolved): memscan only
    reads them. Every writer of a file or tree calls it first."""
    real = os.path.realpath(root)
    for bad in ("/sys", "/proc"):
        if real == bad or real.startswith(bad + "/"):
            raise ArgumentError(
                f"{root}: refusing to write under {bad}; memscan only reads the real {bad}"
            )


#: What an earlier export leaves in its root, directory by directory (``force`` removes
#: exactly such a tree and nothing else).
_EXPORT_SHAPE = {
    "": {"sys", ".memscan-values"},
    "sys": {"devices"},
    "sys/devices": {"system"},
    "sys/devices/system": {"memory", "node"},
}


def _check_target(root: str, force: bool) -> List[str]:
    """Refuse a non-empty ``root``; with ``force``, the directories of an earlier export in
    it, to be removed whole before writing (after everything else was checked)."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ArgumentError(f"{root}: cannot use as the export target: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ArgumentError(f"{root}: exists and is not a directory")
    entries = sorted(os.listdir(root))
    if not entries:
        return []
    if not force:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise ArgumentError(
            f"{root}: not empty (holds {shown}); an export writes a whole tree and never merges "
            "with one: choose an empty directory, or force=True (--force) to replace an earlier "
            "export"
        )
    for rel, allowed in _EXPORT_SHAPE.items():
        path = os.path.join(root, rel)
        if rel and not os.path.lexists(path):
            continue
        if rel and not stat.S_ISDIR(os.lstat(path).st_mode):
            raise ArgumentError(f"{path}: not a directory; {root} does not hold a memscan export")
        extra = sorted(set(os.listdir(path)) - allowed)
        if extra:
            raise ArgumentError(
                f"{root}: holds {os.path.join(rel, extra[0])!r}, which no memscan export "
                "writes; refusing to replace it even with force"
            )
    remove = []
    for top in ("sys", ".memscan-values"):
        path = os.path.join(root, top)
        if os.path.lexists(path):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise ArgumentError(f"{path}: not a directory; refusing to replace it")
            remove.append(path)
    return remove


def export_sysfs(
    machine: Any,
    root: PathLike,
    kernel: str = "5.5",
    on_fault: str = "missing",
    values: str = "model",
    force: bool = False,
    _link_limit: Optional[int] = None,
    progress: Optional[bool] = None,
) -> Dict[str, Any]:
    """Write ``root/sys/devices/system/memory`` (and ``node``) for ``machine`` under ``kernel``.

    Returns a summary: blocks written, and the blocks whose removable read faulted.

    Raises:
        ArgumentError: ``root`` is under /sys or /proc, is not empty (without ``force``) or
            holds more than an earlier export (even with it), or ``on_fault`` is unknown.
    """
    imported = None
    if values == "sysfs":
        if getattr(machine, "sysfs_tree", None) is None:
            raise ArgumentError("values='sysfs' needs a machine read with Machine.from_sysfs")
        imported = {b.block: b for b in machine.sysfs_tree.blocks}
    elif values != "model":
        raise ArgumentError(f"values {values!r}: expected 'model' or 'sysfs'")
    if on_fault not in ("missing", "0", "1"):
        raise ArgumentError(f"on_fault {on_fault!r}: expected 'missing', '0' or '1'")
    root = os.fspath(root)
    refuse_real_proc_sys(root)
    earlier = _check_target(root, force)
    g = machine.geometry
    scan = machine.scan(kernel, progress=False)
    faulted = {f.block for f in scan.faults}
    states = machine.block_states()
    secs = machine.sections()
    flags, nid_of = secs["flags"], secs["nid"]
    spb = g.sections_per_block
    has_zones = True
    try:
        machine.valid_zones(int(scan.block[0]), kernel) if len(scan.block) else None
    except ArgumentError:
        has_zones = False  # no CONFIG_MEMORY_HOTREMOVE: no valid_zones file
    ids = scan.block.tolist()
    zones_of = machine.valid_zones_many(ids, kernel) if has_zones and imported is None else None
    # nodes of each block's present boot sections, vectorised over blocks
    nb = len(flags) // spb
    f2 = np.asarray(flags[: nb * spb]).reshape(nb, spb)
    n2 = np.asarray(nid_of[: nb * spb]).reshape(nb, spb).astype(np.int64)
    present = ((f2 & SEC_PRESENT) != 0) & ((f2 & SEC_DEVICE) == 0)
    lo = np.where(present, n2, 1 << 20).min(axis=1)
    hi = np.where(present, n2, -1).max(axis=1)
    state_names = [BlockState(c).sysfs for c in range(len(BlockState))]
    block_state = [state_names[c] for c in states[scan.block].tolist()]
    single = (lo[scan.block] == hi[scan.block]).tolist()
    lo_ids = lo[scan.block].tolist()
    # phys_device (arch_get_memory_phys_device): start / rzm on s390x when the storage
    # increment is known, 0 everywhere else
    rzm = getattr(machine, "storage_increment", None) if g.arch == "s390x" else None
    phys = [(b * g.block_size) // rzm for b in ids] if rzm else [0] * len(ids)
    nids_of = [
        [first] if one else sorted({int(n) for n in n2[b][present[b]]})
        for b, first, one in zip(ids, lo_ids, single)
    ]
    if imported is None:
        rem_text = np.where(scan.value == 1, "1", "0").tolist()
        fault_text = None if on_fault == "missing" else on_fault
        at = {b: i for i, b in enumerate(ids)} if faulted else {}
        for b in faulted:
            rem_text[at[b]] = fault_text
        zones_col = zones_of if zones_of is not None else [None] * len(ids)
        rows = list(zip(ids, block_state, rem_text, zones_col, nids_of, phys))
    else:
        rows = []
        for i, b in enumerate(ids):
            src = imported[b]
            removable = None if src.removable is None else str(src.removable)
            pd = phys[i] if src.phys_device is None else src.phys_device
            rows.append((b, block_state[i], removable, src.valid_zones, nids_of[i], pd))
    for path in earlier:
        # rmtree works through directory fds and unlinks symlinks, FIFOs and hard links
        # without following or writing them
        shutil.rmtree(path)
    machine.write_sysfs_blocks(root, rows, _link_limit, progress)
    return {"root": root, "blocks": len(rows), "faulted": sorted(faulted), "kernel": kernel}
