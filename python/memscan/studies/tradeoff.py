"""The trade-off of 53cdc1cb29e8: what the pre-patch ``removable`` scan costs, what the hint
saves an unplug agent, and how often it is wrong — per layout and fragmentation level.

``fragmentation`` is one knob from 0 to 1 over the workload model: at 0 every kernel page sits
in unmovable pageblocks at the lowest addresses and nothing is pinned; at 1 unmovable
pageblocks are spread at random, kernel pages pollute most movable pageblocks, and some LRU
pages are long-term pinned.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..progress import Progress
from ..workload import Workload
from .clients import blind, chmem_size, drmgr, lsmem
from .cost import CostModel


def fragmentation_workload(level: float, pinned: Optional[float] = None) -> Workload:
    """The workload at a fragmentation level in [0, 1]. ``pinned`` (share of LRU pages with a
    long-term pin) overrides the level's own pin density (2e-6 x level): pinned LRU pages pass
    has_unmovable_pages, so they are what makes ``removable`` say yes to a block that then
    fails to offline."""
    level = min(max(float(level), 0.0), 1.0)
    return Workload(
        free=0.3,
        free_whole=0.6 * (1 - level) + 0.05,
        unmovable=0.06,
        unmovable_clustered=1.0 - 0.5 * level,
        polluted_pageblocks=0.01 * level,
        movable=0.02,
        thp=0.1,
        pinned=2e-6 * level if pinned is None else float(pinned),
        unmovable_spread=level,
    )


@dataclass(frozen=True)
class Case:
    """One machine: how to build it fresh (clients change it) and its name."""

    name: str
    build: Callable[[], Any]


def run_case(
    case: Case,
    level: float,
    request_blocks: int,
    pre: str,
    post: str,
    seed: int,
    cost: CostModel,
    pinned: Optional[float] = None,
) -> Dict[str, Any]:
    """Every number of the trade-off for one (machine, fragmentation level, pin density).
    ``memscan_seconds`` is memscan's own run time for the record, never part of a kernel
    time."""
    started = time.perf_counter()
    workload = fragmentation_workload(level, pinned)

    def fresh() -> Any:
        m = case.build()
        m.populate(workload, seed=seed)
        return m

    # built and populated once; the clients that offline blocks take copies of it (twice the
    # machine's memory at the peak; where a copy does not fit, they populate their own again)
    m = fresh()
    try:
        base: Any = m.copy()
    except MemoryError:
        base = None
    pred = m.predict(pre, post_kernel=post)  # offline under the same kernel without +debug
    conf = pred.confusion("pre")
    tp, fp, fn = conf["tp"], conf["fp"], conf["fn"]
    rec: Dict[str, Any] = {
        "machine": case.name,
        "fragmentation": level,
        "pinned": workload.pinned,
        "pin_sweep": pinned is not None,
        "blocks": len(pred.block),
        "request_blocks": request_blocks,
        "lsmem_pre": lsmem(m, pre, cost),
        "lsmem_post": lsmem(m, post, cost),
        "removable_precision": tp / (tp + fp) if tp + fp else None,
        "removable_recall": tp / (tp + fn) if tp + fn else None,
        "confusion_pre": conf,
        "offlineable_blocks": sum(1 for o in pred.offline if o.ok),
    }
    del pred
    # Each client on the populated machine as it was: predict() and lsmem only read (dry-run
    # offlines), so the first client takes this machine as it is, the others copies.
    rec["drmgr_pre"] = drmgr(m, pre, request_blocks, cost, seed=seed).to_dict()
    del m

    def copy_or_fresh() -> Any:
        if base is not None:
            try:
                return base.copy()
            except MemoryError:
                pass
        return fresh()

    rec["blind_post"] = blind(copy_or_fresh(), post, request_blocks, cost, seed=seed).to_dict()
    last = base if base is not None else fresh()
    rec["chmem_post"] = chmem_size(last, post, request_blocks, cost).to_dict()
    del last
    d, b = rec["drmgr_pre"], rec["blind_post"]
    rec["hint_saves_ns"] = b["kernel_ns"] - d["kernel_ns"]
    rec["memscan_seconds"] = time.perf_counter() - started
    return rec


def tradeoff(
    cases: Sequence[Case],
    levels: Iterable[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    request_fraction: float = 0.25,
    pre: str = "5.5",
    post: str = "5.6",
    seed: int = 1,
    cost: Optional[CostModel] = None,
    executor: Optional[cf.Executor] = None,
    pins: Optional[Iterable[float]] = None,
    progress: Optional[bool] = False,
) -> List[Dict[str, Any]]:
    """The trade-off table: one record per (case, level[, pin density]). ``pins`` sweeps the
    share of long-term pinned LRU pages (what makes ``removable`` wrong); without it each level
    keeps its own. Runs on ``executor`` (threads by default: the Rust core releases the GIL).
    ``progress``: a bar of finished records on stderr (None: only on a terminal)."""
    cost = cost or CostModel()
    jobs = []
    own = executor is None
    ex = executor or cf.ThreadPoolExecutor()
    try:
        densities: List[Optional[float]] = list(pins) if pins is not None else [None]
        level_list = list(levels)
        for case in cases:
            n = max(1, int(len(case.build().blocks()) * request_fraction))
            for lv in level_list:
                for p in densities:
                    jobs.append(ex.submit(run_case, case, lv, n, pre, post, seed, cost, p))
        bar = Progress(len(jobs), "tradeoff", enabled=progress)
        for _ in cf.as_completed(jobs):
            bar.update(1)
        bar.close()
        return [j.result() for j in jobs]
    finally:
        if own:
            ex.shutdown()


CLIENTS = ("drmgr_pre", "blind_post", "chmem_post")
CLIENT_FIELDS = (
    ("attempts", "i8"),
    ("offlined_blocks", "i8"),
    ("removable_reads", "i8"),
    ("wasted_pages_migrated", "i8"),
    ("kernel_ns", "f8"),
    ("met", "?"),
)


def as_array(records: List[Dict[str, Any]]) -> np.ndarray:
    """The table as a numpy structured array, one row per record, nested client figures
    flattened to ``<client>_<field>`` (failures by reason stay in the records); a precision or
    recall with no denominator is NaN."""
    cols: List[Tuple[str, Any]] = [
        ("machine", f"U{max([len(r['machine']) for r in records] + [1])}"),
        ("fragmentation", "f8"),
        ("pinned", "f8"),
        ("blocks", "i8"),
        ("request_blocks", "i8"),
        ("offlineable_blocks", "i8"),
        ("removable_precision", "f8"),
        ("removable_recall", "f8"),
        ("lsmem_pre_struct_pages_read", "i8"),
        ("lsmem_pre_kernel_ns", "f8"),
        ("lsmem_post_kernel_ns", "f8"),
    ]
    cols += [(f"{c}_{f}", t) for c in CLIENTS for f, t in CLIENT_FIELDS]
    cols += [("hint_saves_ns", "f8"), ("memscan_seconds", "f8")]
    nested = {
        "lsmem_pre_struct_pages_read": ("lsmem_pre", "struct_pages_read"),
        "lsmem_pre_kernel_ns": ("lsmem_pre", "kernel_ns"),
        "lsmem_post_kernel_ns": ("lsmem_post", "kernel_ns"),
    }
    nested.update({f"{c}_{f}": (c, f) for c in CLIENTS for f, _ in CLIENT_FIELDS})
    out = np.zeros(len(records), dtype=cols)
    for i, r in enumerate(records):
        for name, _ in cols:
            if name in nested:
                outer, inner = nested[name]
                out[name][i] = r[outer][inner]
            else:
                v = r.get(name)
                out[name][i] = np.nan if v is None else v
    return out


def as_dataframe(records: List[Dict[str, Any]]) -> Any:
    """The table as a pandas DataFrame (the columns of ``as_array``).

    Raises:
        ImportError: pandas is not installed (it is optional; ``as_array`` needs only numpy).
    """
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError(
            "as_dataframe needs pandas (pip install pandas); as_array does not"
        ) from e
    return pd.DataFrame(as_array(records))


def series(r: Dict[str, Any]) -> str:
    """The line a record belongs to: its machine, and its pin density when pins were swept."""
    return f"{r['machine']}, pinned {r['pinned']:g}" if r.get("pin_sweep") else r["machine"]


def break_even(records: List[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """Per series (machine, and pin density when swept), the lowest fragmentation level at
    which the pre-patch hint pays for itself (drmgr with the hint spends less kernel time than
    the blind agent), or None."""
    out: Dict[str, Optional[float]] = {}
    for r in sorted(
        records,
        key=lambda r: (r.get("blocks", 0), r["machine"], r.get("pinned", 0.0), r["fragmentation"]),
    ):
        key = series(r)
        out.setdefault(key, None)
        # a drmgr killed by a faulting read saved nothing: it died
        if out[key] is None and r["hint_saves_ns"] > 0 and not _killed(r):
            out[key] = r["fragmentation"]
    return out


def _killed(r: Dict[str, Any]) -> bool:
    return (r["drmgr_pre"]["message"] or "").startswith("killed")


def break_even_blocks(records: List[Dict[str, Any]]) -> Dict[float, Optional[int]]:
    """Per fragmentation level, the smallest machine (in memory blocks) on which the pre-patch
    hint pays for itself, among the machines swept (drmgr killed by a faulting read never
    pays), or None. With pins swept, the lowest pin density of each level is used."""
    out: Dict[float, Optional[int]] = {}
    for r in sorted(records, key=lambda r: (r["fragmentation"], r["pinned"], r["blocks"])):
        lv = r["fragmentation"]
        if lv not in out:
            out[lv] = None
            lowest = r["pinned"]
        if r["pinned"] != lowest or out[lv] is not None:
            continue
        if r["hint_saves_ns"] > 0 and not _killed(r):
            out[lv] = r["blocks"]
    return out


CLIENT_STYLES = (
    ("drmgr_pre", "drmgr with the pre-patch hint", "-", "o"),
    ("blind_post", "blind agent (post-patch)", "--", "s"),
    ("chmem_post", "chmem SIZE mode", ":", "^"),
)


def plot(records: List[Dict[str, Any]], path: str) -> None:
    """Left: kernel time of the unplug request with and without the hint against
    fragmentation; colour = machine (and pin density), line style = client; drmgr runs killed
    by a faulting ``removable`` read are hollow; the break-even is marked. Right: how wrong the
    hint is, precision (solid) and recall (dashed) of the pre-patch ``removable`` against the
    offline outcome, against pin density when pins were swept, else against fragmentation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (ax, aq) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    be = break_even(records)
    order = {series(r): (r["blocks"], r["machine"], r["pinned"]) for r in records}
    names = sorted(order, key=order.__getitem__)
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    for name in names:
        rs = sorted((r for r in records if series(r) == name), key=lambda r: r["fragmentation"])
        x = [r["fragmentation"] for r in rs]
        col = colours[name]
        for key, _, ls, mk in CLIENT_STYLES:
            ax.plot(x, [r[key]["kernel_ns"] / 1e6 for r in rs], ls=ls, color=col, lw=1.2)
            for r in rs:
                hollow = key == "drmgr_pre" and _killed(r)
                ax.plot(
                    r["fragmentation"],
                    r[key]["kernel_ns"] / 1e6,
                    marker=mk,
                    color=col,
                    mfc="none" if hollow else col,
                    ls="none",
                )
        if be.get(name) is not None:
            ax.axvline(be[name], color=col, lw=0.8, ls="-.")
    ax.set_yscale("log")
    ax.set_xlabel("fragmentation level")
    ax.set_ylabel("modeled kernel time of the request (ms)")
    ax.set_title("removable hint (53cdc1cb29e8): kernel time of an unplug request", fontsize=9)
    by_client = [
        Line2D([], [], color="black", ls=ls, marker=mk, label=label)
        for _, label, ls, mk in CLIENT_STYLES
    ]
    by_client.append(
        Line2D([], [], color="black", ls="none", marker="o", mfc="none", label="drmgr killed")
    )
    by_client.append(Line2D([], [], color="black", ls="-.", label="break-even"))
    first = ax.legend(handles=by_client, fontsize=7, loc="upper right")
    ax.add_artist(first)
    ax.legend(
        handles=[Line2D([], [], color=colours[n], lw=3, label=n) for n in names],
        fontsize=6,
        loc="lower left",
    )

    swept = any(r.get("pin_sweep") for r in records)
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for r in records:
        key = f"{r['machine']}, frag {r['fragmentation']:g}" if swept else r["machine"]
        groups.setdefault(key, []).append(r)
    for i, (key, rs) in enumerate(
        sorted(
            groups.items(),
            key=lambda kv: (kv[1][0]["blocks"], kv[1][0]["machine"], kv[1][0]["fragmentation"]),
        )
    ):
        rs.sort(key=lambda r: r["pinned"] if swept else r["fragmentation"])
        # without a pin sweep a group is a machine: the colour it has on the left
        col = plt.get_cmap("tab10")(i % 10) if swept else colours[key]
        for metric, ls in (("removable_precision", "-"), ("removable_recall", "--")):
            pts = [
                (r["pinned"] if swept else r["fragmentation"], r[metric])
                for r in rs
                if r[metric] is not None
            ]
            if pts:
                aq.plot(*zip(*pts), ls=ls, marker="o", color=col, ms=4)
        aq.plot([], [], color=col, lw=3, label=key)
    if swept:
        aq.set_xscale("symlog", linthresh=1e-6)
        aq.set_xlabel("share of LRU pages long-term pinned")
    else:
        aq.set_xlabel("fragmentation level")
    aq.set_ylim(-0.05, 1.05)
    aq.set_ylabel("pre-patch removable vs offline outcome")
    aq.set_title("how often the hint is right: precision (solid), recall (dashed)", fontsize=9)
    aq.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
