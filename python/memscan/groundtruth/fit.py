"""Fit the cost model's assumed constants from recorded real-kernel runs (``memscan calibrate
--groundtruth DIR ...``).

Every recorded ``removable`` read and offline write carries its duration on the guest's
clock; ``agree`` replays the model on the snapshot taken right before each one and counts
the work the model says the kernel did (struct pages read, pageblocks isolated, pages
migrated, migration rounds, drains). Where the model and the kernel agree on the outcome,
those counts describe what the kernel did, so

    ns = fixed + pages x ns_per_struct_page + pageblocks x ns_per_pageblock_isolation
         + migrated x (ns_per_page_copy + ns_per_page_migration_overhead)
         + rounds x ns_per_migration_round + drains x ns_per_drain

(fixed = ns_per_syscall + ns_per_offline_attempt: the syscall is measured on the host, the
rest of the per-attempt work is what the fit adds)

is fitted by non-negative least squares (scipy.optimize.nnls) over those attempts. The runs
are under QEMU TCG, which inflates every absolute time; the ratios carry over. So each fitted
constant is scaled to this host by the TCG inflation of the one constant measured both ways:
ns per struct page read, fitted from the removable reads under TCG and measured here by
``calibrate()`` (the same loop shape: a walk over 64-byte struct pages). A constant whose
work never varies over the attempts (or is never done) cannot be told from the others and is
reported as not identifiable, keeping its default: never guessed. Runs of different kernel
profiles (5.4, 5.4+debug, 6.1) are refused together: a debug kernel's attempts cost more.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ArgumentError
from ..studies.cost import CostModel, calibrate
from .agree import agree, load_record, profile_for

#: the fitted terms: (cost-model constant, how the model's counters give its work)
TERMS = (
    ("fixed", lambda w: 1),
    ("ns_per_struct_page", lambda w: w["struct_pages_read"]),
    ("ns_per_pageblock_isolation", lambda w: w["pageblocks_isolated"]),
    ("ns_per_page_migration", lambda w: w["pages_migrated"]),
    ("ns_per_migration_round", lambda w: w["migration_rounds"]),
    ("ns_per_drain", lambda w: w["lru_add_drain_all"] + w["drain_all_pages"]),
)


#: fitted terms that are sums: (the part calibrate() measures on the host, the CostModel
#: field of the rest, what the measured part is)
SPLIT = {
    "ns_per_page_migration": ("ns_per_page_copy", "ns_per_page_migration_overhead", "copy"),
    "fixed": ("ns_per_syscall", "ns_per_offline_attempt", "syscall"),
}


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        from scipy.optimize import nnls
    except ImportError:
        raise ArgumentError(
            "calibrate --groundtruth needs scipy (pip install 'memscan[fit]')"
        ) from None
    x, _ = nnls(a, b)
    return x


def fit_cost(run_dirs: Sequence[str], host: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Fit the cost constants from the offline attempts (and removable reads) of recorded
    runs. ``host`` is a ``calibrate()`` result (measured now when not given). Returns the
    attempts used, the TCG fit, the inflation and, per constant, the host value and where it
    came from (``constants``)."""
    if not run_dirs:
        raise ArgumentError("calibrate --groundtruth: no run directory given")
    # one kernel profile, checked from the records before any replay
    profiles = {d: profile_for(load_record(d)) for d in run_dirs}
    kernels = sorted(set(profiles.values()))
    if len(kernels) > 1:
        raise ArgumentError(
            f"calibrate --groundtruth: the runs are of several kernel profiles "
            f"({', '.join(kernels)}); a debug kernel's work costs more: give the runs of one"
        )
    rows: List[Any] = []
    reads: List[Any] = []
    runs = []
    for d in run_dirs:
        a = agree(d)
        runs.append({"run": d, "kernel": a.kernel})
        rows += [r for r in a.rows if r.attr == "offline" and r.agree and r.ns and r.work]
        reads.append(a.scan_cost())
    if len(rows) < len(TERMS):
        raise ArgumentError(
            f"calibrate --groundtruth: {len(rows)} offline attempts with a duration on which "
            f"the model agrees with the kernel; at least {len(TERMS)} are needed"
        )
    a = np.array([[f(r.work) for _, f in TERMS] for r in rows], dtype=float)
    y = np.array([r.ns for r in rows], dtype=float)
    # scale the columns so nnls sees comparable magnitudes, then undo it
    scale = np.where(a.max(axis=0) > 0, a.max(axis=0), 1.0)
    x = _nnls(a / scale, y) / scale
    pred = a @ x
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    # TCG inflation: ns per struct page under TCG against this host; from the removable
    # reads (the scan loop calibrate() mimics) where the kernel scans, else from the offline
    # attempts' own struct-page term
    per_page = [r["ns_per_struct_page"] for r in reads if r and "ns_per_struct_page" in r]
    host = host or calibrate()
    j_page = [n for n, _ in TERMS].index("ns_per_struct_page")
    if per_page:
        tcg_page, basis = float(np.median(per_page)), "removable reads"
    else:
        tcg_page, basis = float(x[j_page]), "the offline attempts' struct-page term"
    inflation = (tcg_page / host["ns_per_struct_page"]) if tcg_page > 0 else None
    d = CostModel()
    where = f"fit from {len(rows)} offline attempts in {len(run_dirs)} recorded run(s)"
    constants: Dict[str, Dict[str, Any]] = {}
    for j, (name, _) in enumerate(TERMS):
        col = a[:, j]
        varies = name == "fixed" or (col.max() > 0 and np.ptp(col) > 0)
        entry: Dict[str, Any] = {
            "tcg_ns": float(x[j]),
            "attempts_doing_it": int((col > 0).sum()),
            "identifiable": bool(varies),
        }
        if name in SPLIT:
            entry["default"] = getattr(d, SPLIT[name][0]) + getattr(d, SPLIT[name][1])
        else:
            entry["default"] = getattr(d, name)
        if varies and x[j] <= 0:
            # nnls put it on its bound: these records cannot tell it from the other terms
            entry["identifiable"] = False
        if name == "ns_per_struct_page":
            # the scale reference: measured on this host, never taken from the fit
            entry["host_ns"] = float(host["ns_per_struct_page"])
            entry["source"] = f"measured here by calibrate() ({host['machine']})"
        elif entry["identifiable"] and inflation:
            entry["host_ns"] = float(x[j]) / inflation
            entry["source"] = (
                f"{where}, scaled by the TCG inflation {inflation:.1f}x (from {basis})"
            )
        else:
            entry["host_ns"] = None
            entry["source"] = (
                "not identifiable from these records (its work never varies): default kept"
                if not varies
                else "the fit puts it at 0, its bound: these records do not tell it from the "
                "other terms; default kept"
                if not entry["identifiable"]
                else "no TCG inflation to scale it by: default kept"
            )
        constants[name] = entry
    return {
        "runs": runs,
        "attempts": len(rows),
        "r2": 1.0 - ss_res / ss_tot if ss_tot else None,
        "kernel": kernels[0],
        "tcg_ns_per_struct_page": tcg_page,
        "inflation_from": basis,
        "host": host,
        "inflation": inflation,
        "constants": constants,
    }


def cost_fields(fit: Dict[str, Any]) -> Dict[str, Any]:
    """The CostModel fields a fit gives (the identifiable ones, on this host), with where
    each came from: what ``CostModel.from_file`` reads from ``calibrate --groundtruth
    --json`` output."""
    out: Dict[str, Any] = {}
    origins: Dict[str, str] = {}
    c = fit["constants"]
    d = CostModel()
    for name, e in c.items():
        if e["host_ns"] is None:
            continue
        here = f"measured here by calibrate() ({fit['host']['machine']})"
        if name in SPLIT:
            # a fitted sum of a part measured on the host and the rest the fit adds
            measured, rest, what = SPLIT[name]
            part = float(fit["host"].get(measured) or getattr(d, measured))
            out[measured] = part
            origins[measured] = here
            out[rest] = max(0.0, e["host_ns"] - part)
            origins[rest] = f"{e['source']}, less the measured {what}"
        else:
            out[name] = e["host_ns"]
            origins[name] = e["source"]
    out["origins"] = origins
    return out
