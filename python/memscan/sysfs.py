"""Export a modeled machine as a sysfs tree that util-linux ``lsmem --sysroot`` reads.

Formats follow drivers/base/memory.c (kernel-semantics.md section 8): ``block_size_bytes``
is ``%lx`` without 0x; ``memoryN/phys_index`` is ``%08lx``; ``state`` is online / offline /
going-offline; ``online`` is 1/0; ``removable`` is the profile's answer; ``phys_device`` is 0
(s390: the storage-increment number is not modeled, 0 too); ``valid_zones`` exists only with
CONFIG_MEMORY_HOTREMOVE. ``memoryN/nodeX`` links to ``../../node/nodeX`` and
``node/nodeX/memoryN`` back, for the node of each block's sections. Blocks exist only where
the kernel creates a directory.

A block whose ``removable`` read faults (memory96 of the seed) is written according to
``on_fault``:

- ``"missing"`` (default): no ``removable`` file. lsmem's read fails, the flag stays 0, and it
  prints REMOVABLE "no" for that online block; the range splits there. This is the closest a
  file tree gets to the crashing kernel, where the read never returned and lsmem died.
- ``"0"`` / ``"1"``: write that value instead (e.g. "1" for what the post-patch kernel says).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Union

from .errors import ArgumentError
from .kinds import BlockState

PathLike = Union[str, "os.PathLike[str]"]


def _refuse_real_sysfs(root: str) -> None:
    real = os.path.realpath(root)
    for bad in ("/sys", "/proc"):
        if real == bad or real.startswith(bad + "/"):
            raise ArgumentError(
                f"{root}: refusing to write under {bad}; memscan only reads the real {bad}"
            )


def export_sysfs(
    machine: Any,
    root: PathLike,
    kernel: str = "5.5",
    on_fault: str = "missing",
    values: str = "model",
) -> Dict[str, Any]:
    """Write ``root/sys/devices/system/memory`` (and ``node``) for ``machine`` under ``kernel``.

    Returns a summary: blocks written, and the blocks whose removable read faulted.

    Raises:
        ArgumentError: ``root`` is under /sys or /proc, or ``on_fault`` is unknown.
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
    _refuse_real_sysfs(root)
    g = machine.geometry
    mem = os.path.join(root, "sys", "devices", "system", "memory")
    nodes_dir = os.path.join(root, "sys", "devices", "system", "node")
    os.makedirs(mem, exist_ok=True)
    os.makedirs(nodes_dir, exist_ok=True)

    def write(path: str, text: str) -> None:
        with open(path, "w", encoding="ascii") as f:
            f.write(text)

    write(os.path.join(mem, "block_size_bytes"), f"{g.block_size:x}\n")
    scan = machine.scan(kernel, progress=False)
    faulted = {f.block for f in scan.faults}
    states = machine.block_states()
    secs = machine.sections()
    spb = g.sections_per_block
    has_zones = True
    try:
        machine.valid_zones(int(scan.block[0]), kernel) if len(scan.block) else None
    except ArgumentError:
        has_zones = False  # no CONFIG_MEMORY_HOTREMOVE: no valid_zones file
    written: List[int] = []
    for i, b in enumerate(scan.block.tolist()):
        d = os.path.join(mem, f"memory{b}")
        os.makedirs(d, exist_ok=True)
        st = BlockState(int(states[b]))
        write(os.path.join(d, "phys_index"), f"{b:08x}\n")
        write(os.path.join(d, "state"), st.sysfs + "\n")
        write(os.path.join(d, "online"), "1\n" if st == BlockState.ONLINE else "0\n")
        write(os.path.join(d, "phys_device"), "0\n")
        if imported is not None:
            src = imported[b]
            if src.removable is not None:
                write(os.path.join(d, "removable"), f"{src.removable}\n")
            if src.valid_zones is not None:
                write(os.path.join(d, "valid_zones"), src.valid_zones + "\n")
        else:
            if b in faulted:
                if on_fault != "missing":
                    write(os.path.join(d, "removable"), on_fault + "\n")
            else:
                write(os.path.join(d, "removable"), f"{int(scan.value[i])}\n")
            if has_zones:
                write(os.path.join(d, "valid_zones"), machine.valid_zones(b, kernel) + "\n")
        nids = sorted(
            {
                int(secs["nid"][s])
                for s in range(b * spb, (b + 1) * spb)
                if secs["flags"][s] & 1 and not secs["flags"][s] & 8
            }
        )
        for nid in nids:
            nd = os.path.join(nodes_dir, f"node{nid}")
            os.makedirs(nd, exist_ok=True)
            link = os.path.join(d, f"node{nid}")
            if not os.path.lexists(link):
                os.symlink(os.path.join("..", "..", "node", f"node{nid}"), link)
            back = os.path.join(nd, f"memory{b}")
            if not os.path.lexists(back):
                os.symlink(os.path.join("..", "..", "memory", f"memory{b}"), back)
        written.append(b)
    return {"root": root, "blocks": len(written), "faulted": sorted(faulted), "kernel": kernel}
