"""The trade-off study's clients run for real: util-linux ``lsmem`` and ``chmem -d SIZE``,
unmodified, against the live modeled sysfs (``memscan.live.run``: a FUSE view in a private
mount namespace), beside the emulations in ``clients``. Their operations log gives what the
kernel would have done for them; where a real client and its emulation disagree, the
emulation is wrong (and the record says so).

Needs root, /dev/fuse, libfuse3 with mfusepy, util-linux's unshare and lsmem, and chmem
(util-linux-extra on Debian): ``missing()`` names what is absent. The runs are sequential,
in the calling thread (one FUSE loop at a time).
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, Dict, List, Optional

from .. import live
from .clients import ClientRun, chmem_size, lsmem
from .cost import CostModel
from .tradeoff import Case, fragmentation_workload, level_of

#: the tools the real clients need on PATH
TOOLS = ("unshare", "lsmem", "chmem")


def missing() -> Optional[str]:
    """Why the real clients cannot run here, or None where they can."""
    if os.geteuid() != 0:
        return "the real clients mount FUSE and a private mount namespace: run as root"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return f"not on PATH: {', '.join(absent)} (util-linux, util-linux-extra)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        return f"mfusepy with libfuse3 is needed (pip install 'memscan[live]'): {e}"
    return None


def _ops_figures(out: Dict[str, Any]) -> Dict[str, Any]:
    ops = out["ops"]
    offs = [o for o in ops if o["op"] == "offline"]
    failures: Dict[str, int] = {}
    for o in offs:
        if o["errno"]:
            key = f"{o['errno']} {o.get('reason') or '(no reason)'}"
            failures[key] = failures.get(key, 0) + 1
    return {
        "returncode": out["returncode"],
        "killed": out["returncode"] == -11,
        "syscalls": sum(o["op"] != "offline" for o in ops) + len(offs),
        "struct_pages_read": sum(o["struct_pages_read"] for o in ops),
        "attempts": len(offs),
        "offlined_blocks": sum(1 for o in offs if o["errno"] is None),
        "failures": failures,
        "kernel_ns": float(sum(o["modeled_ns"] for o in ops)),
        "stderr": (out.get("stderr") or "").strip().splitlines()[:3],
    }


def real_lsmem(m: Any, kernel: str, cost: CostModel) -> Dict[str, Any]:
    """Real ``lsmem`` on ``m`` under ``kernel``, with the emulation's figures beside it
    (``emulated``) and whether they agree on the reads, the struct pages read and whether
    lsmem was killed (``agrees``; the kernel times differ only by rounding then)."""
    emulated = lsmem(m, kernel, cost)
    real = _ops_figures(live.run(m, kernel, ["lsmem"], cost=cost))
    real["emulated"] = emulated
    real["agrees"] = (
        real["syscalls"] == emulated["syscalls"]
        and real["struct_pages_read"] == emulated["struct_pages_read"]
        and real["killed"] == (emulated["killed_at"] is not None)
    )
    return real


def real_chmem_size(
    m: Any, twin: Any, kernel: str, n_blocks: int, cost: CostModel
) -> Dict[str, Any]:
    """Real ``chmem -d SIZE`` (``n_blocks`` blocks' worth) on ``m`` under ``kernel``, and the
    emulation (``chmem_size``) on ``twin``, a copy of ``m`` as it was: whether they made the
    same attempts with the same outcomes (``agrees``)."""
    emulated: ClientRun = chmem_size(twin, kernel, n_blocks, cost)
    size_mib = n_blocks * m.geometry.block_size >> 20
    real = _ops_figures(live.run(m, kernel, ["chmem", "-d", f"{size_mib}M"], cost=cost))
    real["emulated"] = emulated.to_dict()
    real["met"] = real["returncode"] == 0
    real["agrees"] = (
        real["attempts"] == emulated.attempts
        and real["offlined_blocks"] == emulated.offlined_blocks
        and real["failures"] == emulated.failures
        and real["met"] == emulated.met
    )
    return real


def real_clients(
    records: List[Dict[str, Any]],
    cases: List[Case],
    pre: str,
    post: str,
    seed: int = 1,
    cost: Optional[CostModel] = None,
    progress: Optional[Callable[[], None]] = None,
) -> List[Dict[str, Any]]:
    """Add ``real_lsmem_pre`` and ``real_chmem_post`` to each trade-off record (from
    ``tradeoff(cases, ...)`` with the same ``pre``, ``post``, ``seed`` and ``cost``): the case
    machine is built and populated again at the record's level and pin density, each real
    client runs on its own copy. Returns the records."""
    why = missing()
    if why:
        from ..errors import ArgumentError

        raise ArgumentError(f"real clients: {why}")
    cost = cost or CostModel()
    by_name = {c.name: c for c in cases}
    for r in records:
        m = by_name[r["machine"]].build()
        w = fragmentation_workload(level_of(r), r["pinned"] if r.get("pin_sweep") else None)
        m.populate(w, seed=seed, progress=False)
        r["real_lsmem_pre"] = real_lsmem(m.copy(), pre, cost)
        r["real_chmem_post"] = real_chmem_size(m.copy(), m.copy(), post, r["request_blocks"], cost)
        if progress is not None:
            progress()
    return records
