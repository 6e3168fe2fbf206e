"""Compare the model with a recorded real-kernel run, attempt by attempt.

Each attempt is predicted from the snapshot taken in the guest right before the attempts (the
kernel's memory changes between runs, so a run is only ever compared with its own snapshot).
For a ``removable`` read the model must give the kernel's value, and where the kernel faulted,
the same fault: the function the RIP was in, the pfn and struct page address the splat names,
and BUG versus oops. A model fault where the kernel printed a value, or a value where the
kernel faulted, is a disagreement like any other.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import ParseError
from ..kpageflags import import_words
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


def parse_splat(lines: List[str]) -> Optional[KernelFault]:
    """The first BUG or oops in a list of kernel log lines (None if there is none)."""
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
        off = int(addr, 16) - VMEMMAP_BASE
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


@dataclass
class Agreement:
    run_dir: str
    kernel: str
    rows: List[Row]

    def count(self, attr: str = "removable") -> Dict[str, int]:
        rs = [r for r in self.rows if r.attr == attr]
        return {"attempts": len(rs), "agree": sum(r.agree for r in rs)}

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

    def as_dict(self) -> Dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "kernel": self.kernel,
            "summary": {a: self.count(a) for a in sorted({r.attr for r in self.rows})},
            "scan_cost_tcg": self.scan_cost(),
            "rows": [asdict(r) for r in self.rows],
        }


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


def _words(tar: tarfile.TarFile, name: str, n: int) -> np.ndarray:
    try:
        f = tar.extractfile(name)
    except KeyError:
        raise ParseError(f"{tar.name}: {name} is missing") from None
    data = f.read() if f else b""
    if len(data) != n * 8:
        raise ParseError(f"{tar.name}: {name} has {len(data)} bytes, want {n * 8} ({n} pfns)")
    return np.frombuffer(data, dtype="<u8")


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


def agree(run_dir: str, kernel: Optional[str] = None) -> Agreement:
    """Predict every attempt of a run from its snapshot and compare with what the kernel did."""
    from ..machine import Machine

    rec = load_record(run_dir)
    prof = kernel or profile_for(rec)
    snap_path = os.path.join(run_dir, "snapshot.tar.gz")
    m = Machine.from_snapshot(snap_path, progress=False)
    rows: List[Row] = []
    with tarfile.open(snap_path) as tar:
        pre_words = {
            a["pre"]["member"]: _words(tar, a["pre"]["member"] + "/kpageflags", a["pre"]["npfn"])
            for a in rec["attempts"]
            if a.get("pre")
        }
    for a in rec["attempts"]:
        pre = a.get("pre")
        if pre is not None:
            # the block as the kernel had it right before this attempt (the boot snapshot is
            # older: other processes allocate and free in between)
            import_words(m, pre_words[pre["member"]], pre["pfn"])
        kf = parse_splat(a.get("kernel_log", []))
        killed = a.get("signal", 0) != 0
        kval = None if killed or a.get("value") is None else a["value"]
        if a["attr"] == "removable":
            r = m.removable(a["block"], kernel=prof)
            mval = None if r.value is None else str(r.value)
            mf = _model_fault(r.fault)
            spr: Optional[int] = r.struct_pages_read
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
        rows.append(Row(a["attr"], a["block"], kval, mval, kf, mf, ok, why, a.get("ns"), spr))
    return Agreement(run_dir, prof, rows)
