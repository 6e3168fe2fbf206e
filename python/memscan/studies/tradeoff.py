"""The trade-off of 53cdc1cb29e8: what the pre-patch ``removable`` scan costs, what the hint
saves an unplug agent, and how often it is wrong — per layout and fragmentation level.

``fragmentation`` is one knob from 0 to 1 over the workload model: at 0 every kernel page sits
in unmovable pageblocks at the lowest addresses and nothing is pinned; at 1 unmovable
pageblocks are spread at random, kernel pages pollute most movable pageblocks, and some LRU
pages are long-term pinned.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..progress import Progress
from ..workload import Workload
from .clients import blind, chmem_size, drmgr, lsmem
from .cost import CostModel


def fragmentation_workload(level: Union[float, str], pinned: Optional[float] = None) -> Workload:
    """The workload at a fragmentation level in [0, 1], or a workload preset by name (a
    ``--workload`` study: then ``pinned`` overrides the preset's pin share). ``pinned``
    (share of LRU pages with a long-term pin) overrides the level's own pin density (2e-6 x
    level): pinned LRU pages pass has_unmovable_pages, so they are what makes ``removable``
    say yes to a block that then fails to offline."""
    if isinstance(level, str):
        w = Workload.preset(level)
        return w if pinned is None else dataclasses.replace(w, pinned=float(pinned))
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

    # built and populated once; the clients that offline blocks take copies of it, which
    # share its pages until they write them (copy-on-write: the blocks a client offlines and
    # the targets its migrations fill are what it adds; where even a copy's tables do not
    # fit, they populate their own again)
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
        # a preset study has no fragmentation level: its workload names it
        "fragmentation": None if isinstance(level, str) else level,
        "workload": level if isinstance(level, str) else "fragmentation ladder",
        "pinned": workload.pinned,
        "pin_sweep": pinned is not None,
        "blocks": len(pred.block),
        "request_blocks": request_blocks,
        "lsmem_pre": lsmem(m, pre, cost, scan=pred.scan_pre),
        "lsmem_post": lsmem(m, post, cost, scan=pred.scan_post),
        "removable_precision": tp / (tp + fp) if tp + fp else None,
        "removable_recall": tp / (tp + fn) if tp + fn else None,
        "confusion_pre": conf,
        "offlineable_blocks": sum(1 for o in pred.offline if o.ok),
    }
    scan_pre = pred.scan_pre
    del pred
    # Each client on the populated machine as it was: predict() and lsmem only read (dry-run
    # offlines), so the first client takes this machine as it is (and the scan predict made
    # of it), the others copies.
    rec["drmgr_pre"] = drmgr(m, pre, request_blocks, cost, seed=seed, scan=scan_pre).to_dict()
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
    # a drmgr killed by a faulting read saved nothing and did not finish: no saving, not the
    # (small) kernel time it spent before it died
    rec["drmgr_killed"] = _killed(rec)
    rec["hint_saves_ns"] = None if rec["drmgr_killed"] else b["kernel_ns"] - d["kernel_ns"]
    rec["memscan_seconds"] = time.perf_counter() - started
    return rec


def tradeoff(
    cases: Sequence[Case],
    levels: Iterable[Union[float, str]] = (0.0, 0.25, 0.5, 0.75, 1.0),
    request_fraction: float = 0.25,
    pre: str = "5.5",
    post: str = "5.6",
    seed: int = 1,
    cost: Optional[CostModel] = None,
    executor: Optional[cf.Executor] = None,
    pins: Optional[Iterable[float]] = None,
    progress: Optional[bool] = False,
) -> List[Dict[str, Any]]:
    """The trade-off table: one record per (case, level[, pin density]); a level is a
    fragmentation level in [0, 1] or a workload preset's name. ``pins`` sweeps the
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
    which the pre-patch hint pays for itself (``pays``), or None."""
    out: Dict[str, Optional[float]] = {}
    for r in sorted(
        records,
        key=lambda r: (r.get("blocks", 0), r["machine"], r.get("pinned", 0.0), r["fragmentation"]),
    ):
        key = series(r)
        out.setdefault(key, None)
        # a drmgr killed by a faulting read saved nothing: it died
        if out[key] is None and pays(r):
            out[key] = level_of(r)
    return out


def pays(r: Dict[str, Any]) -> bool:
    """Whether the hint paid for itself in record ``r``: drmgr with the pre-patch hint met the
    request and spent less kernel time than the blind agent. A drmgr killed by a faulting
    read, or one that gave up or fell short (it spent less because it did less), did not."""
    d = r["drmgr_pre"]
    return not _killed(r) and d.get("met", True) and (r["hint_saves_ns"] or 0) > 0


def level_of(r: Dict[str, Any]) -> Union[float, str]:
    """A record's point on the sweep: its fragmentation level, or its workload preset."""
    return r["workload"] if r.get("fragmentation") is None else r["fragmentation"]


def _killed(r: Dict[str, Any]) -> bool:
    return (r["drmgr_pre"]["message"] or "").startswith("killed")


def break_even_blocks(records: List[Dict[str, Any]]) -> Dict[float, Optional[int]]:
    """Per fragmentation level, the smallest machine (in memory blocks) on which the pre-patch
    hint pays for itself, among the machines swept (drmgr killed by a faulting read never
    pays), or None. With pins swept, the lowest pin density of each level is used."""
    out: Dict[float, Optional[int]] = {}
    for r in sorted(records, key=lambda r: (str(level_of(r)), r["pinned"], r["blocks"])):
        lv = level_of(r)
        if lv not in out:
            out[lv] = None
            lowest = r["pinned"]
        if r["pinned"] != lowest or out[lv] is not None:
            continue
        if pays(r):
            out[lv] = r["blocks"]
    return out


def saving_share(r: Dict[str, Any]) -> Optional[float]:
    """The kernel time the pre-patch hint saves, as a share of the blind agent's (post-patch)
    kernel time for the same request: > 0 the hint pays, < 0 its reads cost more than they
    save; None where drmgr was killed (it never finished) or the blind agent spent nothing."""
    blind_ns = r["blind_post"]["kernel_ns"]
    if _killed(r) or r.get("hint_saves_ns") is None or not blind_ns:
        return None
    return float(r["hint_saves_ns"]) / blind_ns


#: markers for the second dimension of a sweep (pin density on the left panels, the
#: fragmentation level on the right one when pins are swept)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: a precision or recall from fewer blocks than this is labelled with its n
SMALL_N = 10


def plot(records: List[Dict[str, Any]], path: str) -> Dict[str, Any]:
    """Three panels, one colour per machine in all of them (its legend, under the panels,
    gives each machine's block count and break-even):

    - left: what the hint saves an unplug request, drmgr with the pre-patch hint against the
      blind agent, as a share of the blind agent's kernel time, with a zero line; hollow where
      drmgr did not meet the request (it spent less by doing less); a drmgr killed by a
      faulting ``removable`` read is a labelled cross above the data (it saved nothing: it
      died);
    - middle: what the hint costs everyone, the modeled kernel time of one lsmem run
      (every block's ``removable``) under the pre-patch kernel, log scale;
    - right: how often the hint is right, precision (solid) and recall (dashed) of the
      pre-patch ``removable`` against the offline outcome; points from fewer than SMALL_N
      blocks carry their n.

    With pins swept, markers tell the pin densities apart (left, middle) and the right panel
    runs over pin density, markers telling the fragmentation levels apart.

    Returns what was drawn, for checks: ``saving`` (machine → [(level, pinned or None
    without a pin sweep, percent)]), ``unmet`` ([(machine, level, pinned)] drawn hollow),
    ``killed`` ([(machine, level, pinned)]), ``small_n`` ([(machine, x, label)]) and
    ``legend`` (the machine labels)."""
    if any(r.get("fragmentation") is None for r in records):
        from ..errors import ArgumentError

        raise ArgumentError(
            "plot: its x axis is the fragmentation level; a workload-preset study has none"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from matplotlib.lines import Line2D

    swept = any(r.get("pin_sweep") for r in records)
    machines = sorted({r["machine"] for r in records}, key=lambda n: _blocks_of(records, n))
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(machines)}
    pins = sorted({r["pinned"] for r in records}) if swept else [None]
    levels = sorted({r["fragmentation"] for r in records})
    be = break_even(records)
    fig, (ax, ac, aq) = plt.subplots(1, 3, figsize=(16, 5.8))

    drawn: Dict[str, Any] = {
        "saving": {},
        "killed": [],
        "unmet": [],
        "small_n": [],
        "legend": [],
    }
    top = 0.0
    for name in machines:
        for j, pin in enumerate(pins):
            rs = sorted(
                (
                    r
                    for r in records
                    if r["machine"] == name and (pin is None or r["pinned"] == pin)
                ),
                key=lambda r: r["fragmentation"],
            )
            if not rs:
                continue
            col, mk = colours[name], MARKERS[j % len(MARKERS)]
            pts = [(r["fragmentation"], saving_share(r)) for r in rs]
            good = [(x, 100 * y) for x, y in pts if y is not None]
            drawn["saving"].setdefault(name, []).extend((x, pin, y) for x, y in good)
            if good:
                ax.plot(*zip(*good), color=col, lw=1.5)
                # filled where drmgr met the request, hollow where it gave up or fell short
                # (it spent less because it did less: that is no saving)
                for r in rs:
                    y = saving_share(r)
                    if y is not None:
                        met = r["drmgr_pre"].get("met", True)
                        ax.plot(
                            r["fragmentation"],
                            100 * y,
                            marker=mk,
                            color=col,
                            mfc=col if met else "white",
                            ls="none",
                        )
                        if not met:
                            drawn["unmet"].append((name, r["fragmentation"], r["pinned"]))
                top = max(top, max(y for _, y in good))
            ac.plot(
                [r["fragmentation"] for r in rs],
                [r["lsmem_pre"]["kernel_ns"] / 1e6 for r in rs],
                color=col,
                marker=mk,
                lw=1.5,
            )
    # killed runs: a cross in a band above the data, labelled once
    lo, hi = ax.get_ylim()
    hi = max(hi, top, 1.0)
    band = hi + 0.12 * (hi - lo)
    killed = [r for r in records if _killed(r)]
    for r in killed:
        ax.plot(r["fragmentation"], band, marker="x", ms=9, mew=2, color=colours[r["machine"]])
        drawn["killed"].append((r["machine"], r["fragmentation"], r["pinned"]))
    if killed:
        ax.annotate(
            "drmgr killed reading removable (no saving)",
            (min(r["fragmentation"] for r in killed), band),
            xytext=(6, 8),
            textcoords="offset points",
            fontsize=9,
        )
        ax.set_ylim(lo, band + 0.12 * (hi - lo))
    ax.axhline(0, color="black", lw=1)
    ax.set_xlabel("fragmentation level", fontsize=10)
    ax.set_ylabel("kernel time the hint saves (% of the blind agent's)", fontsize=10)
    ax.set_title("does the pre-patch hint save an unplug request time?", fontsize=11)
    ax.grid(alpha=0.3)

    ac.set_yscale("log")
    ac.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ac.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ac.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ac.set_xlabel("fragmentation level", fontsize=10)
    ac.set_ylabel("modeled kernel time of one lsmem run (ms)", fontsize=10)
    ac.set_title("what every removable read costs (pre-patch lsmem)", fontsize=11)
    ac.grid(alpha=0.3, which="both")

    groups = sorted(
        {(r["machine"], r["fragmentation"] if swept else None) for r in records},
        key=lambda g: (_blocks_of(records, g[0]), g[1] or 0.0),
    )
    small: Dict[Tuple[float, float], List[Tuple[str, str]]] = {}
    for name, lv in groups:
        rs = [
            r for r in records if r["machine"] == name and (lv is None or r["fragmentation"] == lv)
        ]
        rs.sort(key=lambda r: r["pinned"] if swept else r["fragmentation"])
        mk = MARKERS[levels.index(lv) % len(MARKERS)] if swept else "o"
        for metric, ls in (("removable_precision", "-"), ("removable_recall", "--")):
            pts = [
                (r["pinned"] if swept else r["fragmentation"], r[metric])
                for r in rs
                if r[metric] is not None
            ]
            if pts:
                aq.plot(*zip(*pts), ls=ls, marker=mk, ms=5, color=colours[name])
        for r in rs:
            c = r["confusion_pre"]
            n_p, n_r = c["tp"] + c["fp"], c["tp"] + c["fn"]
            ys = [y for y in (r["removable_precision"], r["removable_recall"]) if y is not None]
            if ys and min(n_p, n_r) < SMALL_N:
                x = r["pinned"] if swept else r["fragmentation"]
                small.setdefault((x, round(min(ys) / 0.15)), []).append(
                    (min(ys), name, f"n={n_p}/{n_r}")
                )
    # small n beside its points: one stack per cluster of nearby points (machines and levels
    # that share a point), in the machine's colour, left of the rightmost points
    right = max((x for x, _ in small), default=0.0)
    for (x, _), labels in small.items():
        labels.sort(key=lambda t: -t[0])
        for i, (_, name, text) in enumerate(labels):
            drawn["small_n"].append((name, x, text))
            aq.annotate(
                text,
                (x, labels[0][0]),
                xytext=(-7 if x == right else 7, -4 - 9 * i),
                textcoords="offset points",
                ha="right" if x == right else "left",
                va="top",
                fontsize=8,
                color=colours[name],
            )
    if swept:
        aq.set_xscale("symlog", linthresh=1e-6)
        aq.set_xlabel("share of LRU pages long-term pinned", fontsize=10)
    else:
        aq.set_xlabel("fragmentation level", fontsize=10)
    aq.set_ylim(-0.05, 1.1)
    aq.set_ylabel("pre-patch removable against the offline outcome", fontsize=10)
    aq.set_title("is the hint right? precision (solid), recall (dashed)", fontsize=11)
    if small:
        aq.text(
            0.01,
            0.02,
            f"n=yes answers/offlineable blocks, shown under {SMALL_N}",
            transform=aq.transAxes,
            fontsize=8,
            color="dimgray",
        )
    aq.grid(alpha=0.3)

    handles = []
    for n in machines:
        b = be.get(n)
        if swept:  # per pin density
            bes = [v for k, v in be.items() if k.startswith(n + ", pinned")]
            b = min((v for v in bes if v is not None), default=None)
        if all(_killed(r) for r in records if r["machine"] == n):
            verdict = "drmgr is killed by the read, the hint never pays"
        elif b is None:
            verdict = "the hint never pays in this sweep"
        else:
            verdict = f"the hint pays from level {b:g}"
        label = f"{n} ({_blocks_of(records, n)} blocks): {verdict}"
        handles.append(Line2D([], [], color=colours[n], lw=3, label=label))
        drawn["legend"].append(label)
    extra = []
    if drawn["unmet"]:
        extra.append(
            Line2D(
                [],
                [],
                color="gray",
                marker="o",
                mfc="white",
                ls="none",
                label="hollow: drmgr did not meet the request (no saving)",
            )
        )
    if swept:
        # the markers' meaning: pin densities on the left panels, levels on the right one
        for values, fmt in (
            (pins, "pinned {:g} (left, middle)"),
            (levels, "fragmentation {:g} (right)"),
        ):
            extra += [
                Line2D(
                    [],
                    [],
                    color="gray",
                    marker=MARKERS[i % len(MARKERS)],
                    ls="none",
                    label=fmt.format(v),
                )
                for i, v in enumerate(values)
            ]
    fig.legend(
        handles=handles + extra,
        loc="lower center",
        ncol=2 if len(handles + extra) > 3 else len(handles + extra),
        fontsize=9,
        frameon=False,
    )
    rows = -(-len(handles + extra) // 2)
    fig.tight_layout(rect=(0, 0.04 + 0.045 * rows, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def _blocks_of(records: List[Dict[str, Any]], machine: str) -> int:
    return max(r["blocks"] for r in records if r["machine"] == machine)
