"""``memscan report``: what lsmem would have shown, the pre-patch ``removable`` of each
block, the block whose read faults, the post-patch value, and what the scan reads.

The table follows util-linux lsmem (2.38): its columns (RANGE, SIZE, STATE, REMOVABLE, BLOCK,
NODE, ZONES) with its alignment, spelling and merging, plus memscan's own POST (post-patch
removable), STRUCT-PAGES (struct pages the pre-patch read touches) and OFFLINE (the dry-run
offline: "ok" or the errno). Ranges merge as lsmem merges them: a block joins the previous
range only when its index follows on and its values of the split columns are equal (by
default the shown ones among STATE, REMOVABLE, NODE, ZONES, and memscan's POST and OFFLINE);
a merged range shows its first block's values, as lsmem does. REMOVABLE and POST are shown
only for online blocks; a faulting read is shown as FAULT: on the real machine lsmem's read
never returned. A value lsmem would leave empty is empty in the table, null in ``-J``.

``Report.to_json`` is a versioned contract, ``memscan-report/1`` (docs/report-schema.json):
fixed key names, ``removable`` 0, 1 or null (the read faults) wherever it occurs, and every
wall-clock time under ``run`` so two runs of one machine differ only there.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ArgumentError
from .kernel import POST_PATCH_KERNEL, SEED_KERNEL
from .kinds import SEC_DEVICE, SEC_PRESENT, STRUCT_PAGE_BYTES, ZONE_NAMES, BlockState
from .machine import Machine
from .results import Offline, Prediction

STRUCT_PAGE = STRUCT_PAGE_BYTES

#: the value of the top-level "schema" key of ``memscan report --json``
SCHEMA = "memscan-report/1"

#: the fields of a fault (memscan.Fault) as the JSON carries them
FAULT_FIELDS = ("function", "access", "pfn", "phys", "section", "block", "kind", "message")

#: lsmem's spelling of each valid_zones token (any other token prints as "Unknown")
LSMEM_ZONES = {z.lower(): z for z in ("None", "Highmem", *ZONE_NAMES)}

#: lsmem's spelling of each state (an unknown state prints as "?")
LSMEM_STATES = {"online": "online", "offline": "offline", "going-offline": "on->off"}


@dataclass
class BlockRow:
    block: int
    start: int
    end: int
    state: str
    #: pre-patch removable: 0, 1, or None where the read faults (``fault`` says how)
    removable: Optional[int]
    #: post-patch removable: 0, 1, or None where the read faults
    removable_post: Optional[int]
    fault: Optional[Dict[str, Any]]
    struct_pages_read: int
    pageblocks_visited: int
    sections_scanned: int
    #: the dry-run offline under the pre-patch kernel: errno (None = success), reason, pfn
    offline_errno: Optional[str] = None
    offline_reason: Optional[str] = None
    offline_pfn: Optional[int] = None
    #: the fault the offline write meets (the writer is killed on the real kernel)
    offline_fault: Optional[Dict[str, Any]] = None
    #: NUMA node of the block's first present section (None: no present section)
    node: Optional[int] = None
    #: memoryN/valid_zones under the pre-patch kernel as the kernel prints it (None: no such
    #: file, or the read faults: ``valid_zones_fault`` says how)
    valid_zones: Optional[str] = None
    valid_zones_fault: Optional[Dict[str, Any]] = None


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
        """The ``memscan-report/1`` document (docs/report-schema.json)."""
        by_id = {b.block: b for b in self.blocks}
        e = self.extra
        snap = e.get("snapshot")
        return {
            "schema": SCHEMA,
            "machine": self.machine,
            "arch": self.arch,
            "block_size": self.block_size,
            "kernel": self.kernel,
            "post_kernel": self.post_kernel,
            "workload": self.workload,
            "seed": self.seed,
            "blocks": [_block_json(b) for b in self.blocks],
            "ranges": [
                {
                    "start": x.start,
                    "end": x.end,
                    "size": x.size,
                    "state": x.state,
                    "removable": by_id[x.first_block].removable,
                    "removable_post": by_id[x.first_block].removable_post,
                    "first_block": x.first_block,
                    "last_block": x.last_block,
                    "struct_pages_read": x.struct_pages_read,
                }
                for x in self.ranges
            ],
            "faults": [_fault_json(f) for f in self.faults],
            "notes": [_fault_json(f) for f in self.notes],
            "totals": dict(self.totals),
            "extra": {
                "snapshot": None if snap is None else {k: v for k, v in snap.items()},
                "offline_kernel": e.get("offline_kernel"),
                "confusion_pre": e.get("confusion_pre"),
                "confusion_post": e.get("confusion_post"),
                "offline_outcomes": e.get("offline_outcomes", []),
            },
            "run": {
                "seconds": self.run_time_s,
                "snapshot_build_seconds": e.get("snapshot_build_seconds"),
            },
        }


def _fault_json(f: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    return None if f is None else {k: f[k] for k in FAULT_FIELDS}


def _block_json(b: BlockRow) -> Dict[str, Any]:
    return {
        "block": b.block,
        "start": b.start,
        "end": b.end,
        "state": b.state,
        "removable": b.removable,
        "removable_post": b.removable_post,
        "fault": _fault_json(b.fault),
        "node": b.node,
        "valid_zones": b.valid_zones,
        "valid_zones_fault": _fault_json(b.valid_zones_fault),
        "struct_pages_read": b.struct_pages_read,
        "pageblocks_visited": b.pageblocks_visited,
        "sections_scanned": b.sections_scanned,
        "offline_errno": b.offline_errno,
        "offline_reason": b.offline_reason,
        "offline_pfn": b.offline_pfn,
        "offline_fault": _fault_json(b.offline_fault),
    }


# -- sizes as lsmem prints them ------------------------------------------------------------


def lsmem_size(n: int) -> str:
    """A size as lsmem prints it without -b: the largest binary unit not above it, with one
    decimal rounded half up from the truncated thousandths, none when it rounds to .0
    ("2G", "3.8G", "190G", "0B")."""
    exp = 0
    while exp < 6 and n >= 1 << (10 * (exp + 1)):
        exp += 1
    if exp == 0:
        return f"{n}B"
    unit = 1 << (10 * exp)
    whole, rest = divmod(n, unit)
    tenths = (rest * 1000 // unit + 50) // 100 if rest else 0
    if tenths == 10:
        whole, tenths = whole + 1, 0
    suffix = "BKMGTPE"[exp]
    return f"{whole}.{tenths}{suffix}" if tenths else f"{whole}{suffix}"


# -- columns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    help: str
    #: one of util-linux lsmem's own columns
    lsmem: bool
    #: may decide range merging (--split)
    split: bool
    #: lsmem's width hint: a column whose widest value reaches its header is widened to this
    hint: int = 0
    right: bool = True


COLUMNS: Dict[str, Column] = {
    c.name: c
    for c in (
        Column("RANGE", "start and end address of the memory range", True, False, right=False),
        Column("SIZE", "size of the memory range", True, False, hint=5),
        Column("STATE", "online status of the memory range", True, True),
        Column("REMOVABLE", "pre-patch removable (FAULT: the read never returns)", True, True),
        Column("BLOCK", "memory block number or blocks range", True, False),
        Column("NODE", "numa node of memory", True, True),
        Column("ZONES", "valid zones for the memory range (pre-patch kernel)", True, True),
        Column("POST", "post-patch removable", False, True),
        Column("STRUCT-PAGES", "struct pages the pre-patch removable reads", False, False),
        Column("OFFLINE", "dry-run offline: ok, or the errno the write returns", False, True),
    )
}

#: lsmem's default columns
LSMEM_DEFAULT_COLUMNS = ("RANGE", "SIZE", "STATE", "REMOVABLE", "BLOCK")
#: memscan report's default columns: lsmem's, then POST and STRUCT-PAGES
DEFAULT_COLUMNS = LSMEM_DEFAULT_COLUMNS + ("POST", "STRUCT-PAGES")
SPLIT_COLUMNS = tuple(n for n, c in COLUMNS.items() if c.split)


def parse_columns(spec: Optional[str]) -> List[str]:
    """``-o LIST``: column names, comma separated, any case; ``+LIST`` appends to the
    defaults (lsmem's rule). None gives the defaults.

    Raises:
        ArgumentError: an unknown or empty column name (the message lists the known ones).
    """
    if spec is None:
        return list(DEFAULT_COLUMNS)
    base: List[str] = []
    text = spec
    if text.startswith("+"):
        base, text = list(DEFAULT_COLUMNS), text[1:]
    names = text.split(",")
    out = []
    for name in names:
        key = name.strip().upper()
        if key not in COLUMNS:
            what = f"unknown column {name!r}" if name.strip() else "an empty column name"
            raise ArgumentError(
                f"-o {spec}: {what}; known columns: {', '.join(COLUMNS)} (a leading + appends "
                f"to the defaults, {','.join(DEFAULT_COLUMNS)})"
            )
        out.append(key)
    return base + out


def parse_split(spec: Optional[str], columns: Sequence[str]) -> Tuple[str, ...]:
    """``--split LIST``: the columns whose values decide range merging, any case, or
    ``none`` (merge every run of contiguous blocks). None gives lsmem's default: the shown
    columns among the splittable ones (STATE, REMOVABLE, NODE, ZONES, POST, OFFLINE).

    Raises:
        ArgumentError: a name that is not a splittable column.
    """
    if spec is None:
        return tuple(c for c in SPLIT_COLUMNS if c in columns)
    names = [n.strip().upper() for n in spec.split(",")]
    if names == ["NONE"]:
        return ()
    for raw, key in zip(spec.split(","), names):
        if key not in SPLIT_COLUMNS:
            what = (
                f"{raw.strip()!r} does not decide merging"
                if key in COLUMNS
                else f"unknown column {raw.strip()!r}"
            )
            raise ArgumentError(
                f"--split {spec}: {what}; splittable columns: {', '.join(SPLIT_COLUMNS)}, or none"
            )
    return tuple(dict.fromkeys(names))


def _online_flag(b: BlockRow, value: Optional[int]) -> Tuple[str, Optional[bool]]:
    """REMOVABLE/POST as lsmem shows them: text (empty unless online) and JSON value (false
    unless online; null where the read faults)."""
    if b.state != "online":
        return "", False
    if value is None:
        return "FAULT", None
    return ("yes", True) if value == 1 else ("no", False)


def _zones(b: BlockRow) -> Optional[str]:
    """ZONES as lsmem shows it: each valid_zones token in lsmem's spelling, joined by /;
    FAULT where the read faults; None where there is no valid_zones file."""
    if b.valid_zones_fault is not None:
        return "FAULT"
    if b.valid_zones is None:
        return None
    return "/".join(LSMEM_ZONES.get(t.lower(), "Unknown") for t in b.valid_zones.split())


def _offline(b: BlockRow) -> str:
    if b.offline_fault is not None:
        return "FAULT"
    return "ok" if b.offline_errno is None else b.offline_errno


#: per splittable column: the value that decides merging (lsmem compares removable as read,
#: whatever the state; its text shows it only for online blocks)
_SPLIT_KEY: Dict[str, Callable[[BlockRow], Any]] = {
    "STATE": lambda b: b.state,
    "REMOVABLE": lambda b: "FAULT" if b.fault is not None else b.removable,
    "NODE": lambda b: b.node,
    "ZONES": _zones,
    "POST": lambda b: b.removable_post,
    "OFFLINE": _offline,
}


@dataclass
class Span:
    """Blocks merged into one table row: the first block's values, the range, the sum."""

    first: BlockRow
    last_block: int
    end: int
    struct_pages_read: int

    @property
    def start(self) -> int:
        return self.first.start

    @property
    def size(self) -> int:
        return self.end - self.first.start + 1


def merge_blocks(
    blocks: Sequence[BlockRow], split: Sequence[str], all_blocks: bool = False
) -> List[Span]:
    """Rows of the table: one per block with ``all_blocks`` (lsmem -a), else runs of blocks
    with consecutive ids and equal values of the ``split`` columns. A block whose zones lsmem
    cannot name (Unknown) starts a range of its own when ZONES splits, as in lsmem."""
    keys = [_SPLIT_KEY[c] for c in split]
    out: List[Span] = []
    for b in blocks:
        prev = out[-1] if out else None
        if (
            not all_blocks
            and prev is not None
            and b.block == prev.last_block + 1
            and all(k(b) == k(prev.first) for k in keys)
            and not ("ZONES" in split and "Unknown" in (_zones(b) or ""))
        ):
            prev.last_block = b.block
            prev.end = b.end
            prev.struct_pages_read += b.struct_pages_read
        else:
            out.append(Span(b, b.block, b.end, b.struct_pages_read))
    return out


def _cell(col: str, s: Span, in_bytes: bool) -> Tuple[str, Any]:
    """(text, JSON value) of one cell, with lsmem's JSON types."""
    b = s.first
    if col == "RANGE":
        v = f"0x{s.start:016x}-0x{s.end:016x}"
        return v, v
    if col == "SIZE":
        return (str(s.size), s.size) if in_bytes else (lsmem_size(s.size),) * 2
    if col == "STATE":
        v = LSMEM_STATES.get(b.state, "?")
        return v, v
    if col == "REMOVABLE":
        return _online_flag(b, b.removable)
    if col == "BLOCK":
        v = str(b.block) if b.block == s.last_block else f"{b.block}-{s.last_block}"
        return v, v
    if col == "NODE":
        return ("", None) if b.node is None else (str(b.node), b.node)
    if col == "ZONES":
        z = _zones(b)
        return ("", None) if z is None else (z, None if z == "FAULT" else z)
    if col == "POST":
        return _online_flag(b, b.removable_post)
    if col == "STRUCT-PAGES":
        return str(s.struct_pages_read), s.struct_pages_read
    if col == "OFFLINE":
        v = _offline(b)
        return v, v
    raise ArgumentError(f"unknown column {col!r}")  # pragma: no cover


def _raw_escape(text: str) -> str:
    """A raw-output cell: blanks, backslashes and unprintable characters as \\xHH."""
    return "".join(
        f"\\x{ord(c):02x}" if c.isspace() or c == "\\" or not c.isprintable() else c for c in text
    )


def _pairs_escape(text: str) -> str:
    """A -P value: quote, backslash, backquote, dollar and unprintable characters as \\xHH
    (libsmartcols' export quoting), so the line stays one shell assignment per cell."""
    return "".join(f"\\x{ord(c):02x}" if c in '"\\`$' or not c.isprintable() else c for c in text)


#: the table modes of ``TableOptions`` and lsmem's --summary values ("auto": lsmem's default)
TABLE_MODES = ("text", "raw", "pairs", "json")
SUMMARY_WHEN = ("auto", "never", "always", "only")


@dataclass(frozen=True)
class TableOptions:
    """How ``format_table`` and ``format_report`` print the table (lsmem's options)."""

    columns: Tuple[str, ...] = DEFAULT_COLUMNS
    #: None: the default split of ``parse_split``
    split: Optional[Tuple[str, ...]] = None
    all_blocks: bool = False
    in_bytes: bool = False
    headings: bool = True
    #: "text" (aligned, lsmem's default), "raw" (lsmem -r), "pairs" (lsmem -P) or "json"
    #: (lsmem -J)
    mode: str = "text"
    #: lsmem's --summary: "auto" (after the text table only), "always", "never" or "only"
    #: (the summary without the table; text mode only, as lsmem refuses it with -r/-J/-P)
    summary: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in TABLE_MODES:
            raise ArgumentError(f"table mode {self.mode!r}: not one of {', '.join(TABLE_MODES)}")
        if self.summary not in SUMMARY_WHEN:
            raise ArgumentError(
                f"--summary={self.summary}: not one of {', '.join(SUMMARY_WHEN[1:])}"
            )
        if self.summary == "only" and self.mode != "text":
            # lsmem 2.38.1: "options --{raw,json,pairs} and --summary=only are mutually
            # exclusive"
            raise ArgumentError(
                f"--summary=only prints no table: it does not go with the {self.mode} table "
                "(-r, -J, -P), as in lsmem"
            )

    def shows_summary(self) -> bool:
        """Whether lsmem would print its summary with these options."""
        if self.summary == "auto":
            return self.mode == "text"
        return self.summary != "never"

    def split_columns(self) -> Tuple[str, ...]:
        return parse_split(None, self.columns) if self.split is None else self.split


def format_table(r: Report, opts: TableOptions = TableOptions()) -> str:
    """The table alone, as lsmem prints it: aligned text (-n: no header line), raw (-r) or
    JSON (-J: {"memory": [...]} with lsmem's keys and types, indented as lsmem does)."""
    spans = merge_blocks(r.blocks, opts.split_columns(), opts.all_blocks)
    cols = list(opts.columns)
    cells = [[_cell(c, s, opts.in_bytes) for c in cols] for s in spans]
    if opts.mode == "json":
        # lsmem's layout: three spaces a level, objects joined as "},{"
        objs = []
        for row in cells:
            body = ",\n".join(
                f"         {json.dumps(c.lower())}: {json.dumps(v)}" for c, (_, v) in zip(cols, row)
            )
            objs.append("{\n" + body + "\n      }")
        inner = ("      " + ",".join(objs) + "\n") if objs else ""
        return '{\n   "memory": [\n' + inner + "   ]\n}"
    lines = []
    if opts.mode == "pairs":
        # lsmem -P: NAME="value" per cell, libsmartcols' export format; a name that is not a
        # shell variable name (memscan's STRUCT-PAGES) gets '_' for the other characters, as
        # libsmartcols' shellvar option spells it, so `eval` works on every line
        keys = [re.sub(r"[^A-Za-z0-9_]", "_", c) for c in cols]
        lines += [
            " ".join(f'{k}="{_pairs_escape(t)}"' for k, (t, _) in zip(keys, row)) for row in cells
        ]
        return "\n".join(lines)
    if opts.mode == "raw":
        if opts.headings:
            lines.append(" ".join(cols))
        lines += [" ".join(_raw_escape(t) for t, _ in row) for row in cells]
        return "\n".join(lines)
    widths = []
    for i, c in enumerate(cols):
        w = max([len(row[i][0]) for row in cells] or [0])
        hint = COLUMNS[c].hint
        if w < len(c):
            w = len(c)
        elif hint and w < hint:
            w = hint
        widths.append(w)

    def line(texts: List[str]) -> str:
        parts = []
        for i, (c, t) in enumerate(zip(cols, texts)):
            last = i == len(cols) - 1
            if COLUMNS[c].right:
                parts.append("" if last and not t else t.rjust(widths[i]))
            else:
                parts.append(t if last else t.ljust(widths[i]))
        return " ".join(parts)

    if opts.headings:
        lines.append(line(cols))
    lines += [line([t for t, _ in row]) for row in cells]
    return "\n".join(lines)


def format_summary(r: Report, in_bytes: bool = False) -> List[str]:
    """lsmem's summary lines (its --summary), -b in bytes."""
    t = r.totals

    def size(n: int) -> str:
        return f"{n:>15}" if in_bytes else f"{lsmem_size(n):>5}"

    return [
        f"{'Memory block size:':<23} {size(r.block_size)}",
        f"{'Total online memory:':<23} {size(t['online_bytes'])}",
        f"{'Total offline memory:':<23} {size(t['offline_bytes'])}",
    ]


# -- building the report ---------------------------------------------------------------------


def lsmem_ranges(rows: List[BlockRow]) -> List[RangeRow]:
    """Merge block rows as the default table does (split on STATE, REMOVABLE and POST)."""
    return [_range_row(s) for s in merge_blocks(rows, ("STATE", "REMOVABLE", "POST"))]


def _range_row(s: Span) -> RangeRow:
    b = s.first
    return RangeRow(
        s.start,
        s.end,
        s.size,
        b.state,
        _online_flag(b, b.removable)[0],
        _online_flag(b, b.removable_post)[0],
        b.block,
        s.last_block,
        s.struct_pages_read,
    )


def _nodes(m: Machine, ids: List[int]) -> List[Optional[int]]:
    """The node of each block: that of its first present (non-device) section, as the
    exported tree's memoryN/nodeX link names it; None where no section is present."""
    secs = m.sections()
    spb = m.geometry.sections_per_block
    nb = len(secs["flags"]) // spb
    flags = np.asarray(secs["flags"][: nb * spb]).reshape(nb, spb)
    nid = np.asarray(secs["nid"][: nb * spb]).reshape(nb, spb).astype(np.int64)
    present = ((flags & SEC_PRESENT) != 0) & ((flags & SEC_DEVICE) == 0)
    first = present.argmax(axis=1)
    node = np.where(present.any(axis=1), nid[np.arange(nb), first], -1)
    return [None if b >= nb or node[b] < 0 else int(node[b]) for b in ids]


def _valid_zones(
    m: Machine, ids: List[int], kernel: str
) -> List[Tuple[Optional[str], Optional[Dict[str, Any]]]]:
    """valid_zones of each block under ``kernel``: (text, None), (None, fault) where the read
    faults, or (None, None) for all where the kernel has no valid_zones file."""
    if not ids:
        return []
    try:
        first = m.valid_zones_read(ids[0], kernel)
    except ArgumentError:
        return [(None, None)] * len(ids)  # no CONFIG_MEMORY_HOTREMOVE: no valid_zones file
    try:
        texts: List[Optional[str]] = m.valid_zones_many(ids, kernel)
    except Exception:  # the bulk read is an optimisation: read one by one without it
        texts = [None] * len(ids)
        texts[0] = first.value
    out: List[Tuple[Optional[str], Optional[Dict[str, Any]]]] = []
    for b, text in zip(ids, texts):
        if text is not None:
            out.append((text, None))
            continue
        z = first if b == ids[0] else m.valid_zones_read(b, kernel)
        out.append((z.value, None if z.fault is None else z.fault.__dict__.copy()))
    return out


def _outcome(errno: Optional[str], reason: Optional[str], detail: Optional[str] = None) -> str:
    """An offline outcome in words; never "None"."""
    if errno is None:
        return "success"
    return f"{errno} {reason or '(no reason logged)'}" + (f" ({detail})" if detail else "")


def _tally(offs: List[Offline]) -> List[Dict[str, Any]]:
    """Offline outcomes counted by (errno, reason): most frequent first, then by name."""
    counts: Dict[Tuple[Optional[str], Optional[str]], int] = {}
    for o in offs:
        key = (o.errno, None if o.ok else o.reason)
        counts[key] = counts.get(key, 0) + 1
    return [
        {"errno": e, "reason": r, "count": n}
        for (e, r), n in sorted(counts.items(), key=lambda x: (-x[1], x[0][0] or "", x[0][1] or ""))
    ]


def _confusion(pred: Prediction, which: str) -> Dict[str, Any]:
    """Prediction.confusion's counts, and its false positives by (errno, reason, detail)."""
    c = pred.confusion(which)
    col = pred.removable_pre if which == "pre" else pred.removable_post
    counts: Dict[Tuple[Optional[str], Optional[str], Optional[str]], int] = {}
    for v, o in zip(col.tolist(), pred.offline):
        if v == 1 and not o.ok:
            key = (o.errno, o.reason, o.detail)
            counts[key] = counts.get(key, 0) + 1
    reasons = [
        {"errno": e, "reason": r, "detail": d, "count": n}
        for (e, r, d), n in sorted(
            counts.items(), key=lambda x: (-x[1], x[0][0] or "", x[0][1] or "", x[0][2] or "")
        )
    ]
    return {k: int(c[k]) for k in ("tp", "fp", "tn", "fn", "fault")} | {"fp_reasons": reasons}


def build_report(
    m: Machine,
    kernel: str = SEED_KERNEL,
    post_kernel: str = POST_PATCH_KERNEL,
    workload: str = "",
    seed: int = 0,
    progress: Optional[bool] = None,
) -> Report:
    t0 = time.perf_counter()
    pred_pre = m.predict(kernel, post_kernel, progress=progress)
    pre, post = pred_pre.scan_pre, pred_pre.scan_post
    assert pre is not None and post is not None
    off_kernel, offs = pred_pre.offline_kernel, pred_pre.offline
    ids = pre.block.tolist()
    # the same scans, judged against the offline under the post-patch kernel
    pred_post = dataclasses.replace(
        pred_pre, offline_kernel=post_kernel, offline=m.offline_many(ids, post_kernel)
    )
    zones = _valid_zones(m, ids, kernel)
    nodes = _nodes(m, ids)
    run_time = time.perf_counter() - t0
    states = m.block_states()
    bs = m.geometry.block_size
    faults = {f.block: f for f in pre.faults}
    rows = []
    for i, b in enumerate(ids):
        f = faults.get(b)
        v, pv = int(pre.value[i]), int(post.value[i])
        o = offs[i]
        rows.append(
            BlockRow(
                block=b,
                start=b * bs,
                end=(b + 1) * bs - 1,
                state=BlockState(int(states[b])).sysfs,
                removable=None if v < 0 else v,
                removable_post=None if pv < 0 else pv,
                fault=None if f is None else f.__dict__.copy(),
                struct_pages_read=int(pre.struct_pages_read[i]),
                pageblocks_visited=int(pre.pageblocks_visited[i]),
                sections_scanned=int(pre.sections_scanned[i]),
                offline_errno=o.errno,
                offline_reason=o.reason,
                offline_pfn=o.pfn,
                offline_fault=None if o.fault is None else o.fault.__dict__.copy(),
                node=nodes[i],
                valid_zones=zones[i][0],
                valid_zones_fault=zones[i][1],
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
    info = m.snapshot_info
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
            "snapshot_build_seconds": info.get("build_seconds") if info else None,
            "offline_kernel": off_kernel,
            "confusion_pre": _confusion(pred_pre, "pre"),
            "confusion_post": _confusion(pred_post, "post"),
            "offline_outcomes": _tally(offs),
        },
    )


def _snapshot_summary(m: Machine) -> Optional[Dict[str, Any]]:
    """What a captured machine's snapshot knew (its build time is under the JSON's "run")."""
    info = m.snapshot_info
    if not info:
        return None
    return {
        "kernel_release": info["meta"].get("kernel_release"),
        "missing": list(info["missing"]),
        "uncertain": list(info["uncertain"]),
        "kpageflags": _pick(info.get("kpageflags"), KPAGEFLAGS_FIELDS),
        "buddyinfo": _pick(info.get("buddyinfo"), BUDDYINFO_FIELDS),
    }


#: what the JSON carries of a snapshot's kpageflags import and buddyinfo check
KPAGEFLAGS_FIELDS = ("pages", "nopage", "ambiguous", "ambiguous_free", "lru_batch", "buddy_blocks")
BUDDYINFO_FIELDS = (
    "blocks_per_order_buddyinfo",
    "blocks_per_order_kpageflags",
    "free_pages_buddyinfo",
    "free_pages_kpageflags",
    "agreement",
)


def _pick(d: Optional[Dict[str, Any]], names: Sequence[str]) -> Optional[Dict[str, Any]]:
    return None if d is None else {k: d[k] for k in names if k in d}


def _dash(v: Any) -> str:
    """A value in a text line: "-" where there is none, as lsmem leaves a missing value."""
    return "-" if v is None else str(v)


def format_report(r: Report, all_blocks: bool = False, table: Optional[TableOptions] = None) -> str:
    """The text report: lsmem's table and summary first, line for line what lsmem prints
    for the same columns (``table``; ``all_blocks`` is -a), then memscan's findings."""
    opts = table or TableOptions(all_blocks=all_blocks)
    all_blocks = opts.all_blocks
    lines = [] if opts.summary == "only" else [format_table(r, opts), ""]
    if opts.shows_summary():
        lines += [*format_summary(r, opts.in_bytes), ""]
    lines += [
        f"memscan report: {r.machine}",
        f"  arch {r.arch}, block size {lsmem_size(r.block_size)}, workload "
        f"{r.workload or '-'} (seed {r.seed})",
        f"  pre-patch kernel {r.kernel}; post-patch kernel {r.post_kernel}",
    ]
    t = r.totals
    lines += [
        "",
        f"Pre-patch scan ({r.kernel}): {t['struct_pages_read']:,} struct pages read "
        f"({lsmem_size(t['memmap_bytes_read'])} of memmap), {t['pageblocks_visited']:,} "
        f"pageblocks, {t['sections_scanned']:,} sections; removable yes "
        f"{t['removable_pre_yes']}, no {t['removable_pre_no']}, fault {t['removable_pre_fault']}.",
        f"Post-patch ({r.post_kernel}): removable is "
        f"{'1' if t['removable_post_yes'] == t['blocks'] else 'mixed'} "
        f"for {t['removable_post_yes']} of {t['blocks']} blocks, "
        f"{t['post_struct_pages_read']:,} struct pages read.",
    ]
    if r.faults:
        lines += ["", "Faults (the read of removable never returns; lsmem dies with it):"]
        for f in r.faults:
            lines.append(
                f"  memory{f['block']}: {f['function']}: {f['access']} on the struct page of "
                f"pfn {f['pfn']:#x} (phys {f['phys']:#x}, section {f['section']:#x}): "
                f"{f['kind'].upper()}"
            )
            lines.append(f"    {f['message']}")
    zfaults = [b for b in r.blocks if b.valid_zones_fault is not None]
    if zfaults:
        lines += ["", f"Faults reading valid_zones ({r.kernel}; ZONES shows FAULT):"]
        for b in zfaults:
            f = b.valid_zones_fault or {}
            lines.append(
                f"  memory{b.block}: {f['function']}: {f['access']} on the struct page of "
                f"pfn {f['pfn']:#x}: {f['kind'].upper()}"
            )
    if r.notes:
        lines += ["", "Silently wrong reads (zeroed struct pages read as node 0 / zone DMA):"]
        for f in r.notes[:10]:
            lines.append(f"  memory{f['block']}: {f['function']}: pfn {f['pfn']:#x}")
        if len(r.notes) > 10:
            lines.append(f"  ... and {len(r.notes) - 10} more")
    snap = r.extra.get("snapshot")
    if snap:
        lines += ["", f"Snapshot of kernel {_dash(snap['kernel_release'])}:"]
        for miss in snap["missing"]:
            lines.append(f"  not captured: {miss}")
        k = snap.get("kpageflags")
        if k:
            lines.append(
                f"  kpageflags: {k['pages']:,} pfns; {k['ambiguous']:,} pages with no flags "
                "(free on a per-CPU list, or an order-0 kernel page: "
                f"{k.get('ambiguous_free', 0):,} taken as per-CPU free pages, the rest, in "
                f"pageblocks with slab or page-table pages, as kernel pages); "
                f"{k['lru_batch']:,} in per-CPU LRU batches"
            )
        b = snap.get("buddyinfo")
        if b:
            lines.append(
                f"  free pages: buddyinfo {b['free_pages_buddyinfo']:,}, kpageflags "
                f"{b['free_pages_kpageflags']:,} (agreement {b['agreement']:.1%})"
            )
        for u in snap["uncertain"]:
            lines.append(f"  uncertain: {u}")
    if r.extra.get("offline_outcomes"):
        e = r.extra
        lines += [
            "",
            f"Offline (echo offline > memoryN/state, dry run, kernel {e['offline_kernel']}):",
        ]
        for o in e["offline_outcomes"]:
            lines.append(f"  {o['count']:6d}  {_outcome(o['errno'], o['reason'])}")
        for label, c in (
            (f"pre-patch {r.kernel}", e["confusion_pre"]),
            (f"post-patch {r.post_kernel}", e["confusion_post"]),
        ):
            lines.append(
                f"  removable {label} vs offline: true-pos {c['tp']}, false-pos {c['fp']}, "
                f"true-neg {c['tn']}, false-neg {c['fn']}, faulted {c['fault']}"
            )
            for why in c["fp_reasons"]:
                lines.append(
                    f"    false positive x{why['count']}: "
                    f"{_outcome(why['errno'], why['reason'], why['detail'])}"
                )
        if all_blocks:
            lines += ["", "Per block (offline under " + e["offline_kernel"] + "):"]
            for b in r.blocks:
                res = _outcome(b.offline_errno, b.offline_reason)
                at = f" at pfn {b.offline_pfn:#x}" if b.offline_pfn is not None else ""
                killed = (
                    f"; the write meets {b.offline_fault['kind'].upper()} in "
                    f"{b.offline_fault['function']}"
                    if b.offline_fault
                    else ""
                )
                lines.append(f"  memory{b.block}: {res}{at}{killed}")
    lines += ["", f"(memscan's own run time: {r.run_time_s * 1000:.1f} ms; not kernel time)"]
    return "\n".join(lines)


def lsmem_ranges_all(r: Report) -> List[RangeRow]:
    """One row per block (lsmem -a)."""
    return [_range_row(s) for s in merge_blocks(r.blocks, (), all_blocks=True)]
