"""Compare the model with a recorded real-kernel run, attempt by attempt.

Each attempt is predicted from the snapshot taken in the guest right before the attempts (the
kernel's memory changes between runs, so a run is only ever compared with its own snapshot).
For a ``removable`` read the model must give the kernel's value, and where the kernel faulted,
the same fault: the function the RIP was in, the pfn and struct page address the splat names,
and BUG versus oops. A model fault where the kernel printed a value, or a value where the
kernel faulted, is a disagreement like any other.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import re
import tarfile
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import ParseError
from ..kernel import memmap_layout
from ..kinds import KPF, BlockState, PageKind
from ..kpageflags import import_words
from ..results import OFFLINE_COUNTERS
from ..sources.snapshot import open_tar
from .guest import STRUCT_PAGE, VMEMMAP_BASE, HarnessError

_PAGE = re.compile(r"page:([0-9a-f]{16})\b")
_RIP = re.compile(r"RIP: [0-9a-f]{4}:([A-Za-z0-9_.]+)\+0x")
_BUG_AT = re.compile(r"kernel BUG at (\S+)!")
_BECAUSE = re.compile(r"page dumped because: (.*)$")
_OOPS = re.compile(r"BUG: (unable to handle page fault|kernel NULL pointer dereference)[^\n]*")
_GPF = re.compile(r"general protection fault")


@dataclass(frozen=True)
class KernelFault:
    """A splat as the kernel printed it, reduced to what the model predicts."""

    kind: str  # "bug" (BUG()/VM_BUG_ON) or "oops" (a bad access)
    function: Optional[str]
    pfn: Optional[int]
    page: Optional[str]  # struct page address as dump_page() printed it
    message: str


def parse_splat(lines: List[str], vmemmap: int = VMEMMAP_BASE) -> Optional[KernelFault]:
    """The first BUG or oops in a list of kernel log lines (None if there is none); struct page
    addresses become pfns with the guest's vmemmap base."""
    text = "\n".join(lines)
    bug = _BUG_AT.search(text)
    oops = _OOPS.search(text) or _GPF.search(text)
    if not bug and not oops:
        return None
    page = _PAGE.search(text)
    rip = _RIP.search(text)
    because = None
    for line in lines:
        m = _BECAUSE.search(line)
        if m:
            because = m.group(1).strip()
            break
    addr = page.group(1) if page else None
    pfn = None
    if addr is not None:
        off = int(addr, 16) - vmemmap
        if off >= 0 and off % STRUCT_PAGE == 0:
            pfn = off // STRUCT_PAGE
    if bug:
        msg = because or f"kernel BUG at {bug.group(1)}"
        return KernelFault("bug", rip.group(1) if rip else None, pfn, addr, msg)
    assert oops is not None
    return KernelFault("oops", rip.group(1) if rip else None, pfn, addr, oops.group(0))


def profile_for(record: Dict[str, Any]) -> str:
    """The memscan kernel profile for a record: from the guest's uname -r and the image's config.

    Raises:
        HarnessError: the guest ran a kernel memscan has no profile for, or the image's config
            is unknown (DEBUG_VM decides what an uninitialised struct page holds).
    """
    uname = record.get("uname") or ""
    m = re.match(r"^(\d+)\.(\d+)", uname)
    if not m:
        raise HarnessError(f"record: the guest's uname -r {uname!r} is not a kernel release")
    ver = f"{m.group(1)}.{m.group(2)}"
    if ver not in ("5.4", "6.1"):
        raise HarnessError(f"record: kernel {uname!r} has no memscan profile (5.4 and 6.1 do)")
    cfg = record.get("kernel_config", {})
    debug = cfg.get("CONFIG_DEBUG_VM")
    pgflags = cfg.get("CONFIG_DEBUG_VM_PGFLAGS")
    if debug not in ("y", "n"):
        raise HarnessError(
            f"record: CONFIG_DEBUG_VM of {record.get('kernel_image')} is unknown (no config "
            "beside the image): pass kernel= explicitly"
        )
    if debug == "y" and pgflags != "y":
        raise HarnessError("record: DEBUG_VM without DEBUG_VM_PGFLAGS is not a modeled profile")
    return ver + ("+debug" if debug == "y" else "")


@dataclass(frozen=True)
class Row:
    attr: str
    block: int
    kernel_value: Optional[str]
    model_value: Optional[str]
    kernel_fault: Optional[KernelFault]
    model_fault: Optional[Dict[str, Any]]
    agree: bool
    why: str
    ns: Optional[int]
    struct_pages_read: Optional[int]
    #: kpageflags only: the outcome changes when the block's no-flag pages (a per-CPU free
    #: page or a kernel page: kpageflags cannot tell) are all taken as one or the other
    uncertain: bool = False
    #: the model's answer under that other reading
    alternative: Optional[str] = None
    #: offline rows: the work the model counts for the attempt (its OFFLINE_COUNTERS), what
    #: ``groundtruth.fit`` fits the kernel's durations against
    work: Optional[Dict[str, int]] = None
    #: offline rows of runs that copied the block right after the write: the kernel's pages
    #: then and the model's after it followed the kernel, by AFTER_CLASSES (``_after``)
    after: Optional[Dict[str, Any]] = None
    #: client rows: the kernel time memscan's emulation of the client models (cost model)
    model_ns: Optional[float] = None


#: measured client times within this share of each other are taken as tied (``lsmem`` and
#: ``lsmem -a``, which read the same files, differed by 24% and 20% in the seed-clients runs)
CLIENT_TIE = 0.3
#: pairs whose modeled kernel times are within this share of each other are ordered by a
#: margin the model cannot vouch for (agent-hint vs agent-blind: the hint's reads cost 0.4%
#: of the offlines): reported as thin, so a matched order there is not read as evidence
MODEL_THIN = 0.01

#: what a page is after an offline attempt, for comparing the block as the kernel left it
#: with the model's: offline (the block went: kpageflags NOPAGE, the kernel's
#: stable_page_flags() of a pfn without an online memmap), free (buddy), movable (what
#: offline_pages() migrates: LRU, movable_ops, THP, hugetlb), unmovable (the rest)
AFTER_CLASSES = ("offline", "free", "movable", "unmovable")
_K = PageKind
_AFTER_OF_KIND = np.full(16, 3, dtype=np.uint8)
_AFTER_OF_KIND[[_K.FREE, _K.BUDDY]] = 1
_AFTER_OF_KIND[[_K.LRU, _K.MOVABLE, _K.THP_HEAD, _K.THP_TAIL, _K.HUGETLB_HEAD, _K.HUGETLB_TAIL]] = 2
_KPF_NOPAGE = np.uint64(1) << np.uint64(KPF["NOPAGE"])


def _after_classes(m: Any, block: int, pfn: int, n: int) -> np.ndarray:
    """AFTER_CLASSES index of each of ``n`` pages from ``pfn`` (in ``block``) in ``m``."""
    if m.block_state(block) == BlockState.OFFLINE:
        return np.zeros(n, dtype=np.uint8)
    return _AFTER_OF_KIND[m.page_bytes(pfn, n) & 0xF]


def _after(
    m: Any,
    a: Dict[str, Any],
    words: np.ndarray,
    memmap: Optional[np.ndarray],
    mm: Dict[str, Any],
) -> Dict[str, Any]:
    """The block as the kernel left it (the post-attempt copy, read as the pre-attempt copy
    was: kpageflags, or struct pages too) beside the model's block after it followed the
    kernel: pages per class on each side and how many pages are in the same class."""
    pfn, n = a["pre"]["pfn"], a["pre"]["npfn"]
    mine = _after_classes(m, a["block"], pfn, n)
    gone = (words & _KPF_NOPAGE) != 0
    if gone.all():
        theirs = np.zeros(n, dtype=np.uint8)
    else:
        k = m.copy()  # copy-on-write: only this block's bytes are copied
        if k.block_state(a["block"]) == BlockState.OFFLINE:
            k.set_block_state(a["block"], "online")
        import_words(k, words, pfn)
        if memmap is not None:
            k.import_memmap(memmap, pfn, **mm)
        theirs = _AFTER_OF_KIND[k.page_bytes(pfn, n) & 0xF]
        theirs[gone] = 0
    count = lambda c: {name: int((c == i).sum()) for i, name in enumerate(AFTER_CLASSES)}  # noqa: E731
    return {
        "pages": n,
        "same_class": int((mine == theirs).sum()),
        "kernel": count(theirs),
        "model": count(mine),
    }


@dataclass
class Agreement:
    run_dir: str
    kernel: str
    rows: List[Row]
    source: str = "kpageflags"

    def count(self, attr: str = "removable") -> Dict[str, int]:
        """Attempts, agreements, and (kpageflags only) attempts whose outcome the no-flag
        pages decide: reported as uncertainty, not guessed."""
        rs = [r for r in self.rows if r.attr == attr]
        return {
            "attempts": len(rs),
            "agree": sum(r.agree for r in rs),
            "uncertain": sum(r.uncertain for r in rs),
            "uncertain_agree": sum(r.uncertain and r.agree for r in rs),
        }

    def ratio(self, attr: str = "removable") -> float:
        c = self.count(attr)
        return c["agree"] / c["attempts"] if c["attempts"] else float("nan")

    def scan_cost(self) -> Optional[Dict[str, float]]:
        """Least-squares fit of the kernel's read time (guest clock, TCG) against the model's
        struct pages read, over removable reads that returned: ns = fixed + per_page * pages."""
        pts = [
            (r.struct_pages_read, r.ns)
            for r in self.rows
            if r.attr == "removable" and r.kernel_fault is None and r.ns and r.struct_pages_read
        ]
        if len(pts) < 3:
            return None
        x = np.array([p[0] for p in pts], dtype=float)
        y = np.array([p[1] for p in pts], dtype=float)
        if np.ptp(x) == 0:
            return {"reads": len(pts), "ns_per_read_mean": float(y.mean())}
        a = np.vstack([np.ones_like(x), x]).T
        (fixed, per), *_ = np.linalg.lstsq(a, y, rcond=None)
        r = np.corrcoef(x, y)[0, 1]
        return {
            "reads": len(pts),
            "ns_fixed": float(fixed),
            "ns_per_struct_page": float(per),
            "r": float(r),
            "ns_per_read_mean": float(y.mean()),
        }

    def offline_cost(self, cost: Optional[Any] = None) -> Optional[Dict[str, Any]]:
        """The kernel's offline times (guest clock, TCG) beside the cost model's time for the
        same attempts (``CostModel.offline_ns`` of the work the model counts), over attempts
        where model and kernel agree: per outcome class (the errno, ``ok`` for success) the
        attempts and median times, and how well the model ranks the attempts by time. EINTR
        attempts are listed but not ranked: their duration is the scenario's timeout, not
        their work. The ranking is Spearman's rho and, of the pairs of attempts whose kernel
        times differ, the shares the model orders the same way (concordant), the other way
        (discordant), or gives the same time (model_ties: same work counted)."""
        from types import SimpleNamespace

        from ..studies.cost import CostModel

        model = cost or CostModel()
        pts = [
            (
                str(r.kernel_value).split()[0],
                float(r.ns),
                model.offline_ns(SimpleNamespace(**r.work)),
            )
            for r in self.rows
            if r.attr == "offline" and r.agree and r.ns and r.work is not None
        ]
        if not pts:
            return None
        by: Dict[str, Dict[str, Any]] = {}
        for cls in sorted({p[0] for p in pts}):
            ks = [p[1] for p in pts if p[0] == cls]
            ms = [p[2] for p in pts if p[0] == cls]
            by[cls] = {
                "attempts": len(ks),
                "kernel_ms_median": float(np.median(ks)) / 1e6,
                "kernel_ms_min": min(ks) / 1e6,
                "kernel_ms_max": max(ks) / 1e6,
                "model_ms_median": float(np.median(ms)) / 1e6,
            }
        ranked = [(k, m) for c, k, m in pts if c != "EINTR"]
        out: Dict[str, Any] = {"by_outcome": by, "ranked": len(ranked), "cost_model": model.source}
        if len(ranked) >= 3:
            k = np.array([x[0] for x in ranked])
            m = np.array([x[1] for x in ranked])
            rk, rm = _ranks(k), _ranks(m)
            out["spearman"] = (
                float(np.corrcoef(rk, rm)[0, 1]) if np.ptp(rk) and np.ptp(rm) else None
            )
            dk = np.sign(k[:, None] - k[None, :])
            dm = np.sign(m[:, None] - m[None, :])
            pairs = np.triu(dk != 0, 1)
            out["pairs"] = int(pairs.sum())
            if pairs.any():
                out["concordant"] = float((dk == dm)[pairs].mean())
                out["discordant"] = float((dk == -dm)[pairs].mean())
                out["model_ties"] = float((dm == 0)[pairs].mean())
        return out

    def after_summary(self) -> Optional[Dict[str, Any]]:
        """Offline attempts with a post-attempt copy: the block as the kernel left it against
        the model's after it followed the kernel (pages in the same AFTER_CLASSES class), and
        per kernel outcome (errno, ``ok``) the pages per class on each side, summed: for a
        failed attempt, ``movable`` pages left in the block is what it did not migrate."""
        rs = [r for r in self.rows if r.attr == "offline" and r.after is not None]
        if not rs:
            return None
        by: Dict[str, Dict[str, Any]] = {}
        for r in rs:
            assert r.after is not None
            cls = str(r.kernel_value).split()[0]
            b = by.setdefault(
                cls,
                {
                    "attempts": 0,
                    "kernel": dict.fromkeys(AFTER_CLASSES, 0),
                    "model": dict.fromkeys(AFTER_CLASSES, 0),
                },
            )
            b["attempts"] += 1
            for side in ("kernel", "model"):
                for c in AFTER_CLASSES:
                    b[side][c] += r.after[side][c]
        pages = sum(r.after["pages"] for r in rs)  # type: ignore[index]
        same = sum(r.after["same_class"] for r in rs)  # type: ignore[index]
        return {"attempts": len(rs), "pages": pages, "same_class": same, "by_outcome": by}

    def client_ranking(self) -> Optional[Dict[str, Any]]:
        """The real clients the kernel did not kill, by measured wall time in the guest (TCG,
        user space and process start-up included) beside memscan's modeled kernel time for
        the same client (``model_ns``): whether the model orders them as the measurement
        does, over the pairs whose measured times differ by more than ``CLIENT_TIE``
        (run-to-run noise: ``lsmem`` and ``lsmem -a`` read the same files)."""
        rs = [
            r
            for r in self.rows
            if r.attr.startswith("client:")
            and r.ns
            and r.model_ns is not None
            and not str(r.kernel_value).startswith("killed")
        ]
        if len(rs) < 2:
            return None
        clients = [
            {"client": r.attr[7:], "kernel_ms": r.ns / 1e6, "model_ms": r.model_ns / 1e6}
            for r in rs
        ]
        pairs = same = 0
        thin: List[str] = []
        for i, a in enumerate(rs):
            for b in rs[i + 1 :]:
                lo, hi = sorted((float(a.ns or 0), float(b.ns or 0)))
                if hi <= lo * (1 + CLIENT_TIE):
                    continue
                pairs += 1
                same += (a.ns - b.ns) * (a.model_ns - b.model_ns) > 0  # type: ignore[operator]
                mlo, mhi = sorted((float(a.model_ns or 0), float(b.model_ns or 0)))
                if mhi <= mlo * (1 + MODEL_THIN):
                    thin.append(f"{a.attr[7:]} / {b.attr[7:]}")
        return {"clients": clients, "pairs": pairs, "same_order": same, "thin": thin}

    def as_dict(self) -> Dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "kernel": self.kernel,
            "source": self.source,
            "summary": {a: self.count(a) for a in sorted({r.attr for r in self.rows})},
            "scan_cost_tcg": self.scan_cost(),
            "offline_cost_tcg": self.offline_cost(),
            "after": self.after_summary(),
            "client_ranking": self.client_ranking(),
            "rows": [asdict(r) for r in self.rows],
        }


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties given their mean rank (as Spearman's rho wants)."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def _model_fault(f: Any) -> Optional[Dict[str, Any]]:
    if f is None:
        return None
    return {"kind": f.kind, "function": f.function, "pfn": f.pfn, "message": f.message}


def _same_fault(k: KernelFault, m: Dict[str, Any]) -> Optional[str]:
    """None if the model's fault is the kernel's, else what differs."""
    diffs = []
    if k.kind != m["kind"]:
        diffs.append(f"kind {m['kind']} vs the kernel's {k.kind}")
    if k.function and k.function != m["function"]:
        diffs.append(f"function {m['function']} vs the kernel's {k.function}")
    if k.pfn is not None and k.pfn != m["pfn"]:
        diffs.append(f"pfn {m['pfn']:#x} vs the kernel's {k.pfn:#x}")
    if k.page and f"page:{k.page}" not in m["message"]:
        diffs.append(f"struct page address not {k.page}")
    return "; ".join(diffs) or None


_FAILED = re.compile(r"memory offlining \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] failed due to (.*)$")


def vmemmap_of(rec: Dict[str, Any]) -> int:
    """The guest's vmemmap base as the run found it (its kallsyms), else the 4-level default."""
    for e in rec.get("events", []):
        if e.get("type") == "vmemmap" and e.get("base"):
            return int(e["base"])
    return VMEMMAP_BASE


def kernel_offline_outcome(a: Dict[str, Any], vmemmap: int = VMEMMAP_BASE) -> Dict[str, Any]:
    """errno, reason and first unmovable pfn of a recorded offline write."""
    rc, err = a.get("rc"), a.get("errno")
    name = None if rc is not None and rc >= 0 else errno_mod.errorcode.get(err or 0, str(err))
    reason = pfn = None
    for line in a.get("kernel_log", []):
        m = _FAILED.search(line)
        if m:
            reason = m.group(3).strip()
        p = _PAGE.search(line)
        if p and pfn is None:
            off = int(p.group(1), 16) - vmemmap
            if off >= 0 and off % STRUCT_PAGE == 0:
                pfn = off // STRUCT_PAGE
    return {"errno": name, "reason": reason, "pfn": pfn}


def _outcome(m: Any, attr: str, block: int, prof: str) -> str:
    """The model's answer to one attempt, as a comparable string (a dry run: no change)."""
    if attr == "removable":
        r = m.removable(block, kernel=prof)
        return r.fault.kind if r.value is None and r.fault else str(r.value)
    if attr == "offline":
        # EBUSY with its first unmovable pfn: a reading of the no-flag pages that moves the
        # pfn makes the attempt uncertain too
        o = m.offline(block, kernel=prof, dry_run=True)
        if o.errno is None:
            return "ok"
        pfn = f" at pfn {o.pfn:#x}" if o.errno == "EBUSY" and o.pfn is not None else ""
        return f"{o.errno} {o.reason or ''}".strip() + pfn
    v = m.valid_zones_read(block, kernel=prof)
    return v.fault.kind if v.value is None and v.fault else str(v.value)


def _alternatives(m: Any, a: Dict[str, Any], prof: str, words: np.ndarray) -> List[str]:
    """The outcomes with every no-flag page of the block taken as a kernel page, and as a
    per-CPU free page (the import reads them by pageblock: src/kpageflags.rs)."""
    pre = a["pre"]
    zero = words == 0
    if not zero.any():
        return []
    before = m.page_bytes(pre["pfn"], pre["npfn"])
    mine = zero & np.isin(before & 15, [int(PageKind.UNMOVABLE), int(PageKind.FREE)])
    out = []
    try:
        for kind in (PageKind.UNMOVABLE, PageKind.FREE):
            alt = before.copy()
            alt[mine] = int(kind)
            m.write_pages(pre["pfn"], alt)
            out.append(_outcome(m, a["attr"], a["block"], prof))
    finally:
        m.write_pages(pre["pfn"], before)
    return out


def _offline_row(
    m: Any, a: Dict[str, Any], prof: str, mm: Dict[str, Any], after: Optional[Any] = None
) -> Row:
    """Predict one offline write; then make the model follow what the kernel did; with
    ``after`` (the post-attempt copy: words, and struct pages or None), compare the block as
    both then have it. ``mm``: import_memmap's arguments (layout, vmemmap, nodes_shift)."""
    k = kernel_offline_outcome(a, mm["vmemmap"])
    o = m.offline(a["block"], kernel=prof, dry_run=True)
    diffs = []
    if o.errno != k["errno"]:
        diffs.append(f"errno {o.errno} vs the kernel's {k['errno']}")
    elif k["reason"] is not None and o.reason != k["reason"]:
        diffs.append(f"reason {o.reason!r} vs the kernel's {k['reason']!r}")
    if not diffs and k["errno"] == "EBUSY" and k["pfn"] is not None and o.pfn != k["pfn"]:
        diffs.append(f"pfn {o.pfn:#x} vs the kernel's {k['pfn']:#x}" if o.pfn else "no pfn")
    if k["errno"] is None:
        # the kernel offlined it: so does the model, with migration if it can, else by state
        if o.errno is None:
            m.offline(a["block"], kernel=prof, dry_run=False)
        else:
            m.set_block_state(a["block"], "offline")
    elif o.errno is not None:
        # both failed: a write that failed in the migration loop (EINTR after the retries, a
        # hugetlb page it cannot dissolve) leaves what it migrated moved, in the kernel and
        # in the model (commit_moves); one that failed before moves nothing
        m.offline(a["block"], kernel=prof, dry_run=False)
    kv = "ok" if k["errno"] is None else f"{k['errno']} {k['reason'] or ''}".strip()
    mv = "ok" if o.errno is None else f"{o.errno} {o.reason or ''}".strip()
    post = None
    if after is not None:
        post = _after(m, a, after[0], after[1], mm)
        if m.block_state(a["block"]) != BlockState.OFFLINE:
            # a failed write: the replay goes on from the block as the kernel left it (what
            # it migrated out is free there), not from the model's own partial migration
            import_words(m, after[0], a["pre"]["pfn"])
            if after[1] is not None:
                m.import_memmap(after[1], a["pre"]["pfn"], **mm)
    return Row(
        "offline",
        a["block"],
        kv,
        mv,
        None,
        _model_fault(o.fault),
        not diffs,
        "; ".join(diffs) or "same outcome",
        a.get("ns"),
        o.struct_pages_read,
        work={c: int(getattr(o, c)) for c in OFFLINE_COUNTERS},
        after=post,
    )


def _bytes(tar: tarfile.TarFile, name: str, size: int) -> np.ndarray:
    try:
        f = tar.extractfile(name)
    except KeyError:
        raise ParseError(f"{tar.name}: {name} is missing") from None
    data = f.read(size + 1) if f else b""
    if len(data) != size:
        raise ParseError(f"{tar.name}: {name} has {len(data)} bytes, want {size} (truncated?)")
    return np.frombuffer(data, dtype=np.uint8)


def _words(tar: tarfile.TarFile, name: str, n: int) -> np.ndarray:
    return _bytes(tar, name, n * 8).view("<u8")


def load_record(run_dir: str) -> Dict[str, Any]:
    path = os.path.join(run_dir, "record.json")
    try:
        with open(path) as f:
            rec = json.load(f)
    except OSError as e:
        raise ParseError(f"{path}: cannot read the run record: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ParseError(f"{path}: not JSON: {e}") from None
    if rec.get("format") != "memscan-groundtruth-1":
        raise ParseError(f"{path}: format {rec.get('format')!r} is not memscan-groundtruth-1")
    if rec.get("status") != "ok":
        raise ParseError(f"{path}: the run did not complete (status {rec.get('status')!r})")
    return rec


SOURCES = ("kpageflags", "memmap")


def has_memmap(rec: Dict[str, Any]) -> bool:
    """Whether every pre-attempt copy of a record holds the block's struct pages."""
    pres = [a["pre"] for a in rec["attempts"] if a.get("pre")]
    return bool(pres) and all(p.get("memmap") for p in pres)


def agree(run_dir: str, kernel: Optional[str] = None, source: str = "auto") -> Agreement:
    """Predict every attempt of a run from its snapshots and compare with what the kernel did.

    ``source``: what the model's pages come from right before each attempt: ``"kpageflags"``
    (what any root user can read), ``"memmap"`` (the raw struct pages as well, which tell
    per-CPU free pages and pagevec pages apart), or ``"auto"`` (memmap where recorded)."""
    from ..machine import Machine

    rec = load_record(run_dir)
    prof = kernel or profile_for(rec)
    layout = memmap_layout(prof)
    vmemmap = vmemmap_of(rec)
    # import_memmap's arguments: the layout, the base, and the config's NODES_SHIFT for the
    # node/zone bits check (the record's kernel_config; unknown: every x86_64 width tried)
    ns = rec.get("kernel_config", {}).get("CONFIG_NODES_SHIFT", "")
    mm = {"layout": layout, "vmemmap": vmemmap, "nodes_shift": int(ns) if ns.isdigit() else None}
    if source == "auto":
        source = "memmap" if has_memmap(rec) and layout else "kpageflags"
    if source == "memmap" and not layout:
        raise ParseError(f"{run_dir}: struct pages of {rec.get('uname')} are not decoded")
    if source not in SOURCES:
        raise ParseError(f"source {source!r}: expected one of {SOURCES} or 'auto'")
    if source == "memmap" and not has_memmap(rec):
        raise ParseError(f"{run_dir}: the run copied no struct pages before its attempts")
    # the runner writes .tar.gz; recorded runs in the repository are recompressed to .tar.xz
    snap_path = next(
        (
            os.path.join(run_dir, n)
            for n in ("snapshot.tar.xz", "snapshot.tar.gz")
            if os.path.exists(os.path.join(run_dir, n))
        ),
        os.path.join(run_dir, "snapshot.tar.gz"),
    )
    m = Machine.from_snapshot(snap_path, progress=False)
    rows: List[Row] = []
    with open_tar(snap_path) as tar:
        pre_words = {
            a["pre"]["member"]: _words(tar, a["pre"]["member"] + "/kpageflags", a["pre"]["npfn"])
            for a in rec["attempts"]
            if a.get("pre")
        }
        pre_memmap = (
            {
                a["pre"]["member"]: _bytes(
                    tar, a["pre"]["member"] + "/memmap", a["pre"]["npfn"] * 64
                )
                for a in rec["attempts"]
                if a.get("pre")
            }
            if source == "memmap"
            else {}
        )
        # offline writes' post-attempt copies, read as the pre-attempt copies are
        post_copy = {
            a["after"]["member"]: (
                _words(tar, a["after"]["member"] + "/kpageflags", a["pre"]["npfn"]),
                _bytes(tar, a["after"]["member"] + "/memmap", a["pre"]["npfn"] * 64)
                if source == "memmap"
                else None,
            )
            for a in rec["attempts"]
            if a.get("after") and a.get("pre")
        }
    for a in rec["attempts"]:
        pre = a.get("pre")
        alts: List[str] = []
        if pre is not None:
            # the block as the kernel had it right before this attempt (the boot snapshot is
            # older: other processes allocate and free in between)
            import_words(m, pre_words[pre["member"]], pre["pfn"])
            if source == "memmap":
                m.import_memmap(pre_memmap[pre["member"]], pre["pfn"], **mm)
            elif a["attr"] in ("removable", "offline"):
                alts = _alternatives(m, a, prof, pre_words[pre["member"]])
        mine = _outcome(m, a["attr"], a["block"], prof) if alts else None
        other = [x for x in alts if x != mine]
        uncertain = {"uncertain": True, "alternative": other[0]} if other else {}
        kf = parse_splat(a.get("kernel_log", []), vmemmap)
        killed = a.get("signal", 0) != 0
        kval = None if killed or a.get("value") is None else a["value"]
        if a["attr"] == "removable":
            r = m.removable(a["block"], kernel=prof)
            mval = None if r.value is None else str(r.value)
            mf = _model_fault(r.fault)
            spr: Optional[int] = r.struct_pages_read
        elif a["attr"] == "offline":
            after = post_copy.get(a["after"]["member"]) if a.get("after") else None
            row = _offline_row(m, a, prof, mm, after)
            rows.append(replace(row, **uncertain))
            continue
        elif a["attr"] == "valid_zones":
            v = m.valid_zones_read(a["block"], kernel=prof)
            mval, mf, spr = v.value, _model_fault(v.fault), None
        else:
            continue
        if kf is not None or killed:
            if mf is None or mval is not None:
                ok, why = (
                    False,
                    f"the kernel faulted ({kf.message if kf else 'reader killed'}); the model read {mval!r}",
                )
            else:
                d = _same_fault(kf, mf) if kf else None
                ok, why = d is None, d or "same fault"
        elif mf is not None and mval is None:
            ok, why = False, f"the model faults ({mf['message']}); the kernel read {kval!r}"
        else:
            ok = kval == mval
            why = "same value" if ok else f"model {mval!r} vs kernel {kval!r}"
        rows.append(
            Row(a["attr"], a["block"], kval, mval, kf, mf, ok, why, a.get("ns"), spr, **uncertain)
        )
    rows += _client_rows(m, rec, prof)
    return Agreement(run_dir, prof, rows, source)


def _client_rows(m: Any, rec: Dict[str, Any], prof: str) -> List[Row]:
    """Real clients against memscan's emulation of them (studies.clients), in the order the
    guest ran them, on the model as the attempts and the clients before left it: lsmem and
    chmem SIZE mode killed or not, and the shell agents (guest.AGENT) which blocks they
    offlined, walked in the guest's own shuffled order. Each row also holds the client's
    modeled kernel time (``model_ns``) beside its measured wall time (``ns``)."""
    from ..sizes import parse_size
    from ..studies import clients as emu
    from ..studies.cost import CostModel

    cost = CostModel()
    out: List[Row] = []
    for c in rec.get("clients", []):
        argv = c["client"].split()
        killed = c.get("signal", 0) != 0
        kv = f"killed (signal {c['signal']})" if killed else f"exit {c.get('exit')}"
        text = c.get("output") or ""
        if argv[0] == "lsmem":
            s = m.scan(prof, progress=False)
            stop = [f for f in s.faults if f.kind in ("bug", "oops")]
            mv = f"killed (memory{stop[0].block})" if stop else "exit 0"
            ok = bool(stop) == killed
            model_ns = float(emu.lsmem(m, prof, cost, scan=s)["kernel_ns"])
        elif argv[0] == "chmem" and "-d" in argv and not {"-b", "--blocks"} & set(argv):
            size = parse_size(argv[-1], "chmem size")
            run = emu.chmem_size(m, prof, size // m.geometry.block_size, cost)
            dead = bool(run.message and run.message.startswith("killed"))
            mv = (
                f"killed ({run.message.split(' (')[0]})"
                if dead
                else f"offlined {run.offlined_blocks} of {run.requested_blocks}"
            )
            ok = dead == killed
            model_ns = run.kernel_ns
        elif argv[0] in ("agent-hint", "agent-blind") and not killed:
            # the agent prints its walk ("order B B ...") and each try ("try B ok|fail")
            walk = next(
                (ln.split()[1:] for ln in text.splitlines() if ln.startswith("order ")), None
            )
            if walk is None:
                raise ParseError(f"client {c['client']!r}: its output has no 'order' line")
            order = [int(b) for b in walk]
            kv = " ".join(f"{b}:{r}" for b, r in re.findall(r"^try (\d+) (ok|fail)$", text, re.M))
            before = m.block_states().copy()
            if argv[0] == "agent-hint":
                # its reads are `cat`s: a read the kernel kills ends the cat, not the agent
                run = emu.drmgr(
                    m,
                    prof,
                    int(argv[1]),
                    cost,
                    order=order,
                    name="agent-hint",
                    reader_dies_alone=True,
                )
            else:
                run = emu.blind(m, prof, int(argv[1]), cost, order=order)
            now = m.block_states()
            # what the emulation offlined, in walk order (its failures change no state, so
            # they are compared by count)
            on = int(BlockState.ONLINE)
            mine = [f"{b}:ok" for b in order if before[b] == on and now[b] != on]
            mv = " ".join(mine)
            theirs = kv.split()
            ok = [t for t in theirs if t.endswith(":ok")] == mine and run.attempts == len(theirs)
            kv, mv = kv or "none", mv or "none"
            model_ns = run.kernel_ns
        else:
            continue
        why = "same" if ok else f"model {mv} vs kernel {kv}"
        out.append(
            Row(
                f"client:{argv[0]}",
                -1,
                kv,
                mv,
                None,
                None,
                ok,
                why,
                c.get("ns"),
                None,
                model_ns=model_ns,
            )
        )
    return out
