"""The trade-off of 53cdc1cb29e8: what the pre-patch ``removable`` scan costs, what the hint
saves an unplug agent, and how often it is wrong — per layout and fragmentation level.

``fragmentation`` is one knob from 0 to 1 over the workload model: at 0 every kernel page sits
in unmovable pageblocks at the lowest addresses and nothing is pinned; at 1 unmovable
pageblocks are spread at random, kernel pages pollute most movable pageblocks, and some LRU
pages are long-term pinned.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from ..workload import Workload
from .clients import blind, chmem_size, drmgr, lsmem
from .cost import CostModel


def fragmentation_workload(level: float) -> Workload:
    """The workload at a fragmentation level in [0, 1]."""
    level = min(max(float(level), 0.0), 1.0)
    return Workload(
        free=0.3,
        free_whole=0.6 * (1 - level) + 0.05,
        unmovable=0.06,
        unmovable_clustered=1.0 - 0.5 * level,
        polluted_pageblocks=0.01 * level,
        movable=0.02,
        thp=0.1,
        pinned=2e-6 * level,
        unmovable_spread=level,
    )


@dataclass(frozen=True)
class Case:
    """One machine: how to build it fresh (clients change it) and its name."""

    name: str
    build: Callable[[], Any]


def run_case(
    case: Case, level: float, request_blocks: int, pre: str, post: str, seed: int, cost: CostModel
) -> Dict[str, Any]:
    """Every number of the trade-off for one (machine, fragmentation level)."""

    def fresh() -> Any:
        m = case.build()
        m.populate(fragmentation_workload(level), seed=seed)
        return m

    m = fresh()
    pred = m.predict(pre, post_kernel=post, offline_kernel=pre.replace("+debug", ""))
    conf = pred.confusion("pre")
    tp, fp, fn = conf["tp"], conf["fp"], conf["fn"]
    rec: Dict[str, Any] = {
        "machine": case.name,
        "fragmentation": level,
        "blocks": len(pred.block),
        "request_blocks": request_blocks,
        "lsmem_pre": lsmem(m, pre, cost),
        "lsmem_post": lsmem(m, post, cost),
        "removable_precision": tp / (tp + fp) if tp + fp else None,
        "removable_recall": tp / (tp + fn) if tp + fn else None,
        "confusion_pre": conf,
        "offlineable_blocks": sum(1 for o in pred.offline if o.ok),
    }
    del m, pred  # one machine at a time: each client gets a fresh one
    rec["drmgr_pre"] = drmgr(fresh(), pre, request_blocks, cost, seed=seed).to_dict()
    rec["blind_post"] = blind(fresh(), post, request_blocks, cost, seed=seed).to_dict()
    rec["chmem_post"] = chmem_size(fresh(), post, request_blocks, cost).to_dict()
    d, b = rec["drmgr_pre"], rec["blind_post"]
    rec["hint_saves_ns"] = b["kernel_ns"] - d["kernel_ns"]
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
) -> List[Dict[str, Any]]:
    """The trade-off table: one record per (case, level). Runs on ``executor`` (threads by
    default: the Rust core releases the GIL)."""
    cost = cost or CostModel()
    jobs = []
    own = executor is None
    ex = executor or cf.ThreadPoolExecutor()
    try:
        for case in cases:
            n = max(1, int(len(case.build().blocks()) * request_fraction))
            for lv in levels:
                jobs.append(ex.submit(run_case, case, lv, n, pre, post, seed, cost))
        return [j.result() for j in jobs]
    finally:
        if own:
            ex.shutdown()


def break_even(records: List[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """Per machine, the lowest fragmentation level at which the pre-patch hint pays for itself
    (drmgr with the hint spends less kernel time than the blind agent), or None."""
    out: Dict[str, Optional[float]] = {}
    for r in sorted(records, key=lambda r: (r["machine"], r["fragmentation"])):
        out.setdefault(r["machine"], None)
        killed = (r["drmgr_pre"]["message"] or "").startswith("killed")  # saved nothing: it died
        if out[r["machine"]] is None and r["hint_saves_ns"] > 0 and not killed:
            out[r["machine"]] = r["fragmentation"]
    return out


def plot(records: List[Dict[str, Any]], path: str) -> None:
    """Kernel time with and without the hint against fragmentation, one line per client and
    machine, the break-even marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    be = break_even(records)
    for name in sorted({r["machine"] for r in records}):
        rs = sorted((r for r in records if r["machine"] == name), key=lambda r: r["fragmentation"])
        x = [r["fragmentation"] for r in rs]
        for key, label, style in (
            ("drmgr_pre", "drmgr, pre-patch hint", "-o"),
            ("blind_post", "blind (post-patch)", "--s"),
            ("chmem_post", "chmem SIZE", ":^"),
        ):
            ax.plot(x, [r[key]["kernel_ns"] / 1e6 for r in rs], style, label=f"{name}: {label}")
        if be.get(name) is not None:
            ax.axvline(be[name], color="grey", lw=0.8)
            ax.annotate(
                f"break-even: {name}",
                (be[name], 0.5),
                xycoords=("data", "axes fraction"),
                rotation=90,
                fontsize=7,
                ha="right",
            )
    ax.set_yscale("log")
    ax.set_xlabel("fragmentation level")
    ax.set_ylabel("modeled kernel time (ms)")
    ax.set_title("removable hint (53cdc1cb29e8): kernel time of an unplug request")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
