"""``memscan report``: what lsmem would have shown, the pre-patch ``removable`` of each
block, the block whose read faults, the post-patch value, and what the scan reads.

Ranges merge the way util-linux lsmem merges them by default (kernel-semantics.md section 8):
a block joins the previous range only when its index follows on and its STATE and REMOVABLE
are equal (the default columns decide the split); REMOVABLE is shown only for online blocks.
A faulting read is shown as FAULT: on the real machine lsmem's read never returned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .kernel import POST_PATCH_KERNEL, SEED_KERNEL, Kernel
from .kinds import BlockState
from .machine import Machine, Offline, Prediction, ScanResult
from .sizes import human

STRUCT_PAGE = 64


@dataclass
class BlockRow:
    block: int
    start: int
    end: int
    state: str
    removable: Optional[int]
    removable_post: Optional[int]
    fault: Optional[Dict[str, Any]]
    struct_pages_read: int
    pageblocks_visited: int
    sections_scanned: int
    #: the dry-run offline under the pre-patch kernel: errno (None = success), reason, pfn
    offline_errno: Optional[str] = None
    offline_reason: Optional[str] = None
    offline_pfn: Optional[int] = None


@dataclass
class RangeRow:
    start: int
    end: int
    size: int
    state: str
    removable: str
    removable_post: str
    first_block: int
    last_block: int
    struct_pages_read: int


@dataclass
class Report:
    machine: str
    arch: str
    block_size: int
    kernel: str
    post_kernel: str
    workload: str
    seed: int
    blocks: List[BlockRow]
    ranges: List[RangeRow]
    faults: List[Dict[str, Any]]
    notes: List[Dict[str, Any]]
    totals: Dict[str, int]
    run_time_s: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _yes_no(state: str, value: Optional[int], fault: bool) -> str:
    if state != "online":
        return ""
    if fault:
        return "FAULT"
    return "yes" if value == 1 else "no"


def lsmem_ranges(rows: List[BlockRow]) -> List[RangeRow]:
    """Merge block rows the way lsmem does by default (split on STATE and REMOVABLE)."""
    out: List[RangeRow] = []
    for r in rows:
        rem = _yes_no(r.state, r.removable, r.fault is not None)
        post = _yes_no(r.state, r.removable_post, False)
        prev = out[-1] if out else None
        if (
            prev is not None
            and r.block == prev.last_block + 1
            and r.state == prev.state
            and rem == prev.removable
            and post == prev.removable_post
        ):
            prev.end = r.end
            prev.size += r.end - r.start + 1
            prev.last_block = r.block
            prev.struct_pages_read += r.struct_pages_read
        else:
            out.append(
                RangeRow(
                    r.start,
                    r.end,
                    r.end - r.start + 1,
                    r.state,
                    rem,
                    post,
                    r.block,
                    r.block,
                    r.struct_pages_read,
                )
            )
    return out


def build_report(
    m: Machine,
    kernel: str = SEED_KERNEL,
    post_kernel: str = POST_PATCH_KERNEL,
    workload: str = "",
    seed: int = 0,
    progress: Optional[bool] = None,
) -> Report:
    t0 = time.perf_counter()
    pre: ScanResult = m.scan(kernel, progress=progress)
    post: ScanResult = m.scan(post_kernel, progress=False)
    off_kernel = Kernel.parse(kernel, m.geometry.arch).without_debug().name
    offs = m.offline_many(pre.block.tolist(), off_kernel)
    offs_post = m.offline_many(pre.block.tolist(), post_kernel)
    conf_pre = Prediction(
        kernel, post_kernel, off_kernel, pre.block, pre.value, post.value, offs
    ).confusion("pre")
    conf_post = Prediction(
        kernel, post_kernel, post_kernel, pre.block, pre.value, post.value, offs_post
    ).confusion("post")
    run_time = time.perf_counter() - t0
    states = m.block_states()
    bs = m.geometry.block_size
    faults = {f.block: f for f in pre.faults}
    rows = []
    for i, b in enumerate(pre.block.tolist()):
        f = faults.get(b)
        v = int(pre.value[i])
        rows.append(
            BlockRow(
                block=b,
                start=b * bs,
                end=(b + 1) * bs - 1,
                state=BlockState(int(states[b])).sysfs,
                removable=None if v < 0 else v,
                removable_post=int(post.value[i]),
                fault=None if f is None else f.__dict__.copy(),
                struct_pages_read=int(pre.struct_pages_read[i]),
                pageblocks_visited=int(pre.pageblocks_visited[i]),
                sections_scanned=int(pre.sections_scanned[i]),
                offline_errno=offs[i].errno,
                offline_reason=offs[i].reason,
                offline_pfn=offs[i].pfn,
            )
        )
    online = sum(bs for r in rows if r.state == "online")
    reads = pre.total("struct_pages_read")
    pre_vals = pre.value[pre.value >= 0]
    totals = {
        "blocks": len(rows),
        "online_bytes": online,
        "offline_bytes": len(rows) * bs - online,
        "struct_pages_read": reads,
        "memmap_bytes_read": reads * STRUCT_PAGE,
        "pageblocks_visited": pre.total("pageblocks_visited"),
        "sections_scanned": pre.total("sections_scanned"),
        "removable_pre_yes": int(np.count_nonzero(pre_vals == 1)),
        "removable_pre_no": int(np.count_nonzero(pre_vals == 0)),
        "removable_pre_fault": len(pre.faults),
        "removable_post_yes": int(np.count_nonzero(post.value == 1)),
        "post_struct_pages_read": post.total("struct_pages_read"),
    }
    return Report(
        machine=m.name,
        arch=m.geometry.arch,
        block_size=bs,
        kernel=kernel,
        post_kernel=post_kernel,
        workload=workload,
        seed=seed,
        blocks=rows,
        ranges=lsmem_ranges(rows),
        faults=[f.__dict__.copy() for f in pre.faults],
        notes=[n.__dict__.copy() for n in pre.notes],
        totals=totals,
        run_time_s=run_time,
        extra={
            "snapshot": _snapshot_summary(m),
            "offline_kernel": off_kernel,
            "confusion_pre": conf_pre,
            "confusion_post": conf_post,
            "offline_outcomes": _tally(offs),
        },
    )


def _snapshot_summary(m: Machine) -> Optional[Dict[str, Any]]:
    info = m.snapshot_info
    if not info:
        return None
    return {
        "kernel_release": info["meta"].get("kernel_release"),
        "missing": info["missing"],
        "uncertain": info["uncertain"],
        "kpageflags": info.get("kpageflags"),
        "buddyinfo": info.get("buddyinfo"),
        "build_seconds": info.get("build_seconds"),
    }


def _tally(offs: List[Offline]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for o in offs:
        key = "success" if o.ok else f"{o.errno} {o.reason or '(no reason logged)'}"
        out[key] = out.get(key, 0) + 1
    return out


def format_report(r: Report, all_blocks: bool = False) -> str:
    lines = [
        f"memscan report: {r.machine}",
        f"  arch {r.arch}, block size {human(r.block_size)}, workload {r.workload or '-'} (seed {r.seed})",
        f"  pre-patch kernel {r.kernel}; post-patch kernel {r.post_kernel}",
        "",
    ]
    hdr = f"{'RANGE':<37} {'SIZE':>6}  {'STATE':<8} {'REMOVABLE':<9} {'POST':<4} {'BLOCK':<11} {'STRUCT PAGES READ':>17}"
    lines.append(hdr)
    rows = r.ranges
    if all_blocks:
        rows = lsmem_ranges_all(r)
    for x in rows:
        blk = (
            str(x.first_block)
            if x.first_block == x.last_block
            else f"{x.first_block}-{x.last_block}"
        )
        lines.append(
            f"0x{x.start:016x}-0x{x.end:016x} {human(x.size):>6}  {x.state:<8} {x.removable:<9} "
            f"{x.removable_post:<4} {blk:<11} {x.struct_pages_read:>17,}"
        )
    t = r.totals
    lines += [
        "",
        f"Memory block size:   {human(r.block_size)}",
        f"Total online memory: {human(t['online_bytes'])}",
        f"Total offline memory: {human(t['offline_bytes'])}",
        "",
        f"Pre-patch scan ({r.kernel}): {t['struct_pages_read']:,} struct pages read "
        f"({human(t['memmap_bytes_read'])} of memmap), {t['pageblocks_visited']:,} pageblocks, "
        f"{t['sections_scanned']:,} sections; removable yes {t['removable_pre_yes']}, "
        f"no {t['removable_pre_no']}, fault {t['removable_pre_fault']}.",
        f"Post-patch ({r.post_kernel}): removable is {'1' if t['removable_post_yes'] == t['blocks'] else 'mixed'} "
        f"for {t['removable_post_yes']} of {t['blocks']} blocks, {t['post_struct_pages_read']} struct pages read.",
    ]
    if r.faults:
        lines += ["", "Faults (the read of removable never returns; lsmem dies with it):"]
        for f in r.faults:
            lines.append(
                f"  memory{f['block']}: {f['function']}: {f['access']} on the struct page of pfn {f['pfn']:#x} "
                f"(phys {f['phys']:#x}, section {f['section']:#x}): {f['kind'].upper()}"
            )
            lines.append(f"    {f['message']}")
    if r.notes:
        lines += ["", "Silently wrong reads (zeroed struct pages read as node 0 / zone DMA):"]
        for f in r.notes[:10]:
            lines.append(f"  memory{f['block']}: {f['function']}: pfn {f['pfn']:#x}")
        if len(r.notes) > 10:
            lines.append(f"  ... and {len(r.notes) - 10} more")
    snap = r.extra.get("snapshot")
    if snap:
        lines += ["", f"Snapshot of kernel {snap['kernel_release']}:"]
        for miss in snap["missing"]:
            lines.append(f"  not captured: {miss}")
        k = snap.get("kpageflags")
        if k:
            lines.append(
                f"  kpageflags: {k['pages']:,} pfns; {k['ambiguous']:,} pages with no flags (free on a per-CPU list, "
                f"or an order-0 kernel page: {k.get('ambiguous_free', 0):,} taken as per-CPU free pages, the rest, "
                f"in pageblocks with slab or page-table pages, as kernel pages); {k['lru_batch']:,} in per-CPU LRU batches"
            )
        b = snap.get("buddyinfo")
        if b:
            lines.append(
                f"  free pages: buddyinfo {b['free_pages_buddyinfo']:,}, kpageflags {b['free_pages_kpageflags']:,} "
                f"(agreement {b['agreement']:.1%})"
            )
        for u in snap["uncertain"]:
            lines.append(f"  uncertain: {u}")
    if r.extra.get("offline_outcomes"):
        e = r.extra
        lines += [
            "",
            f"Offline (echo offline > memoryN/state, dry run, kernel {e['offline_kernel']}):",
        ]
        for what, n in sorted(e["offline_outcomes"].items(), key=lambda x: -x[1]):
            lines.append(f"  {n:6d}  {what}")
        for label, c in (
            (f"pre-patch {r.kernel}", e["confusion_pre"]),
            (f"post-patch {r.post_kernel}", e["confusion_post"]),
        ):
            lines.append(
                f"  removable {label} vs offline: true-pos {c['tp']}, false-pos {c['fp']}, "
                f"true-neg {c['tn']}, false-neg {c['fn']}, faulted {c['fault']}"
            )
            for why, n in sorted(c["fp_reasons"].items(), key=lambda x: -x[1]):
                lines.append(f"    false positive x{n}: {why}")
        if all_blocks:
            lines += ["", "Per block (offline under " + e["offline_kernel"] + "):"]
            for b in r.blocks:
                res = (
                    "success"
                    if b.offline_errno is None
                    else f"{b.offline_errno} {b.offline_reason or ''}".strip()
                )
                at = f" at pfn {b.offline_pfn:#x}" if b.offline_pfn is not None else ""
                lines.append(f"  memory{b.block}: {res}{at}")
    lines += ["", f"(memscan's own run time: {r.run_time_s * 1000:.1f} ms; not kernel time)"]
    return "\n".join(lines)


def lsmem_ranges_all(r: Report) -> List[RangeRow]:
    """One row per block (lsmem -a)."""
    return [
        RangeRow(
            b.start,
            b.end,
            b.end - b.start + 1,
            b.state,
            _yes_no(b.state, b.removable, b.fault is not None),
            _yes_no(b.state, b.removable_post, False),
            b.block,
            b.block,
            b.struct_pages_read,
        )
        for b in r.blocks
    ]
