"""``capture(memmap=True)``: struct pages read from /proc/kcore at the kernel's vmemmap_base,
and models built from them. The machine is a synthetic root: its /proc/kcore an ELF64 core
laid out as fs/proc/kcore.c lays one out (a PT_NOTE, then PT_LOAD segments for the kernel's
data and the vmemmap of RAM), its vmemmap moved as KASLR moves it."""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import tarfile

import numpy as np
import pytest

import memscan
from memscan import PageKind
from memscan.errors import ArgumentError, ParseError
from memscan.kinds import KPF
from memscan.sources.kcore import Kcore, kallsyms_address
from memscan.sources.snapshot import capture

IOMEM = "00001000-3fffffff : System RAM\n"  # 1 GiB from pfn 1: blocks 0-7 of 128 MiB
END_PFN = 0x40000
BASE = 0xFFFF_D7C0_0000_0000  # a KASLR'd vmemmap_base (not the 4-level default)
SYM = 0xFFFF_FFFF_8220_A0B8  # where vmemmap_base lives
HOLE = (0x20000, 0x28000)  # pfns whose struct pages kcore does not list (blocks 4)
PINNED_PFN = 0x30010  # block 6: mapped anon, pinned (refcount 1 + GUP_PIN_COUNTING_BIAS)
PCP_PFN = 0x30020  # block 6: a per-CPU free page (refcount 0, no flags, on a pcp list)
PG_LRU, PG_SWAPBACKED = 1 << 4, 1 << 19
ANON_MAPPING = 0xFFFF_8880_0000_1001
ZONEINFO = """Node 0, zone    DMA32
  pages free     1000
        min      100
        low      120
        high     140
        spanned  262143
        present  262143
        managed  250000
  start_pfn:           1
"""


#: Debian 6.1's CONFIG_NODES_SHIFT: the node id in flags' top 10 bits, the zone index (3 bits)
#: below; the planted pages are node 0, ZONE_DMA32 (1), as the machine has them
NODES_SHIFT = 10
DMA32_LINK = 1 << (64 - NODES_SHIFT - 3)


def sp(flags=0, w1=0, mapping=0, ptype=0xFFFFFFFF, ref=0, link=DMA32_LINK):
    return struct.pack("<QQQQQQIiQ", flags | link, w1, 0, mapping, 0, 0, ptype, ref, 0)


def write_kcore(path, base=BASE, hole=HOLE, data_page=None):
    """An ELF64 x86_64 core: PT_NOTE, the page holding vmemmap_base, and the vmemmap of
    pfns [0, END_PFN) as two PT_LOAD segments around ``hole`` (sparse on disk)."""
    page = bytearray(4096) if data_page is None else data_page
    page[SYM & 0xFFF : (SYM & 0xFFF) + 8] = base.to_bytes(8, "little")
    segs = [(1 << 2, 0, b"")]  # (type, vaddr, payload) - PT_NOTE first, as kcore has
    segs.append((1, SYM & ~0xFFF, bytes(page)))
    segs.append((1, base, hole[0] * 64))
    segs.append((1, base + hole[1] * 64, (END_PFN - hole[1]) * 64))
    off = 64 + 56 * len(segs)
    ph, blobs = [], []
    for typ, va, payload in segs:
        size = payload if isinstance(payload, int) else len(payload)
        ph.append(struct.pack("<IIQQQQQQ", typ, 7, off, va, 0, size, size if typ == 1 else 0, 0))
        blobs.append((off, payload))
        off += size
    eh = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    eh += struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 64, 0, 0, 64, 56, len(segs), 64, 0, 0)
    with open(path, "wb") as f:
        f.write(eh + b"".join(ph))
        for o, payload in blobs:
            if not isinstance(payload, int):
                f.seek(o)
                f.write(payload)
        f.truncate(off)
        # the struct pages planted in block 6 (the rest reads zero: "left as modeled")
        vm_off = blobs[3][0] - hole[1] * 64
        f.seek(vm_off + PINNED_PFN * 64)
        f.write(sp(PG_LRU | PG_SWAPBACKED, mapping=ANON_MAPPING, ptype=0, ref=1 + 1024))
        f.seek(vm_off + PCP_PFN * 64)
        f.write(sp(w1=BASE + 64 * (PCP_PFN + 7)))


def fake_root(tmp_path, release="6.1.0-57-cloud-amd64", kallsyms=None, kcore=True, config=None):
    root = tmp_path / "root"
    memscan.Machine.from_iomem(IOMEM, block_size="128M").export_sysfs(root, kernel="6.1")
    proc = root / "proc"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text(release + "\n")
    (proc / "iomem").write_text(IOMEM)
    (proc / "zoneinfo").write_text(ZONEINFO)
    (proc / "buddyinfo").write_text("Node 0, zone    DMA32  1 1 1 1 1 1 1 1 1 1 1\n")
    (proc / "pagetypeinfo").write_text("")
    if kallsyms is None:
        kallsyms = f"ffffffff81000000 T _stext\n{SYM:016x} D vmemmap_base\n"
    (proc / "kallsyms").write_text(kallsyms)
    # kpageflags: the pinned page reads as a plain mapped anon LRU page, the pcp page as
    # nothing (both what kpageflags shows of them); the other pages anon LRU or free
    anon = sum(1 << KPF[k] for k in ("LRU", "MMAP", "ANON", "SWAPBACKED"))
    words = np.full(END_PFN, anon, dtype="<u8")
    words[0] = 1 << KPF["RESERVED"]
    # blocks 1-3 free (order-9 buddy heads): room to migrate block 6's pages to
    words[0x8000:0x20000] = 0
    words[0x8000:0x20000:512] = 1 << KPF["BUDDY"]
    words[PCP_PFN] = 0
    words.tofile(proc / "kpageflags")
    np.ones(END_PFN, dtype="<u8").tofile(proc / "kpagecount")
    if kcore:
        write_kcore(proc / "kcore")
    if config is None:
        config = f"CONFIG_NUMA=y\nCONFIG_NODES_SHIFT={NODES_SHIFT}\n"
    if config:
        with gzip.open(proc / "config.gz", "wt") as f:
            f.write(config)
    return root


def kind(m, pfn):
    return PageKind(m.page(pfn) & 15)


def test_struct_pages_come_from_kcore_at_the_kaslr_base(tmp_path):
    root = fake_root(tmp_path)
    meta = capture(tmp_path / "s.tar.gz", root=str(root), progress=False, memmap=True)
    assert meta["kernel_release"] == "6.1.0-57-cloud-amd64"
    mm = meta["memmap"]
    assert mm["vmemmap_base"] == BASE and mm["vmemmap_source"] == "kallsyms vmemmap_base"
    assert mm["ranges"] == [[0, END_PFN]]  # pfn 1 widened to its section
    assert mm["gap_bytes"] == (HOLE[1] - HOLE[0]) * 64
    assert mm["nodes_shift"] == NODES_SHIFT  # from /proc/config.gz
    with tarfile.open(tmp_path / "s.tar.gz") as t:
        raw = t.extractfile(f"memmap/0-{END_PFN:x}").read()
    assert len(raw) == END_PFN * 64
    assert raw[PINNED_PFN * 64 : PINNED_PFN * 64 + 64] == sp(
        PG_LRU | PG_SWAPBACKED, mapping=ANON_MAPPING, ptype=0, ref=1 + 1024
    )
    assert raw[HOLE[0] * 64 : HOLE[1] * 64] == bytes((HOLE[1] - HOLE[0]) * 64)


def test_a_model_from_struct_pages_sees_what_kpageflags_cannot(tmp_path):
    root = fake_root(tmp_path)
    capture(tmp_path / "with.tar.gz", root=str(root), progress=False, memmap=True)
    capture(tmp_path / "without.tar.gz", root=str(root), progress=False)
    a = memscan.Machine.from_snapshot(tmp_path / "with.tar.gz", progress=False)
    b = memscan.Machine.from_snapshot(tmp_path / "without.tar.gz", progress=False)
    # the pin: kpageflags shows a movable LRU page, the struct page's refcount a pin
    assert kind(a, PINNED_PFN) == PageKind.PINNED and kind(b, PINNED_PFN) == PageKind.LRU
    # the per-CPU free page: refcount 0 tells it from an order-0 kernel allocation
    assert kind(a, PCP_PFN) == PageKind.FREE
    info = a.snapshot_info["memmap"]
    assert info["layout"] == "6.1-x86_64" and info["vmemmap_base"] == BASE
    assert info["pinned"] == 1 and info["pcp_free"] == 1
    assert not any("pins are invisible" in u for u in a.snapshot_info["uncertain"])
    assert any("pins are invisible" in u for u in b.snapshot_info["uncertain"])
    # and the kernel's answer follows: 6.1 retries migrating the pinned page until the
    # writer's signal (EINTR), where kpageflags alone predicts a clean offline
    assert a.offline(6, "6.1").errno == "EINTR"
    assert b.offline(6, "6.1").errno is None
    # pages whose struct pages kcore did not list stay as kpageflags had them
    assert kind(a, HOLE[0] + 5) == kind(b, HOLE[0] + 5) == PageKind.LRU


@pytest.mark.parametrize(
    "config, nodes_shift",
    [("", None), ("# CONFIG_NUMA is not set\n", 0), ("CONFIG_NODES_SHIFT=6\n", 6)],
)
def test_struct_pages_are_checked_against_the_configs_node_bits(tmp_path, config, nodes_shift):
    """The capture records the running config's NODES_SHIFT (/proc/config.gz) and the model
    checks the struct pages' node/zone bits against it: without a config every width is
    tried (and the Debian width is among those that fit); a config whose width does not
    explain the pages (NUMA off, or NODES_SHIFT 6: the zone bits sit elsewhere) is refused."""
    root = fake_root(tmp_path, config=config)
    meta = capture(tmp_path / "s.tar.gz", root=str(root), progress=False, memmap=True)
    assert meta["memmap"]["nodes_shift"] == nodes_shift
    if nodes_shift is None:
        m = memscan.Machine.from_snapshot(tmp_path / "s.tar.gz", progress=False)
        info = m.snapshot_info["memmap"]
        assert info["layout_checked"] == 2 and (NODES_SHIFT, 3) in info["layout_fits"]
        assert kind(m, PINNED_PFN) == PageKind.PINNED
    else:
        with pytest.raises(ArgumentError, match=f"under NODES_SHIFT {nodes_shift} "):
            memscan.Machine.from_snapshot(tmp_path / "s.tar.gz", progress=False)


def test_a_kernel_whose_struct_pages_are_not_decoded_keeps_kpageflags(tmp_path):
    root = fake_root(tmp_path, release="6.6.1")
    meta = capture(tmp_path / "s.tar.gz", root=str(root), progress=False, memmap=True)
    assert meta["memmap"]["vmemmap_base"] == BASE  # captured: the bytes are exact
    m = memscan.Machine.from_snapshot(tmp_path / "s.tar.gz", progress=False)
    assert kind(m, PINNED_PFN) == PageKind.LRU
    assert "memmap" not in m.snapshot_info
    assert any("6.6.1 are not decoded" in x for x in m.snapshot_info["missing"])


@pytest.mark.parametrize(
    "kallsyms, kcore, reason",
    [
        ("0000000000000000 D vmemmap_base\n", True, "hides vmemmap_base's address"),
        ("ffffffff81000000 T _stext\n", True, r"no segment holds the struct page of pfn 0x1"),
        (f"{SYM + 0x10000:016x} D vmemmap_base\n", True, "vmemmap_base .* is in no segment"),
        (None, False, "kcore: cannot read"),
    ],
)
def test_what_stops_a_memmap_capture_is_said_not_guessed(tmp_path, kallsyms, kcore, reason):
    """A hidden symbol address, no symbol (the 4-level default, which this KASLR'd vmemmap is
    not at), a symbol kcore does not hold, no kcore: no struct pages, and the reason."""
    root = fake_root(tmp_path, kallsyms=kallsyms, kcore=kcore)
    meta = capture(tmp_path / "s.tar.gz", root=str(root), progress=False, memmap=True)
    assert "memmap" not in meta
    assert any(x.startswith("memmap (") for x in meta["missing"])
    assert any(re.search(reason, x) for x in meta["missing"]), meta["missing"]
    with tarfile.open(tmp_path / "s.tar.gz") as t:
        assert not [n for n in t.getnames() if n.startswith("memmap/")]


def _retar(src, dst, edit_meta=None, drop=(), cut=None):
    with tarfile.open(src) as a, tarfile.open(dst, "w:gz") as b:
        for mem in a.getmembers():
            if mem.name in drop:
                continue
            data = a.extractfile(mem).read() if mem.isfile() else None
            if mem.name == "meta.json" and edit_meta:
                meta = json.loads(data)
                edit_meta(meta["memmap"])
                data = json.dumps(meta).encode()
            if cut and mem.name == cut:
                data = data[:-64]
            if data is not None:
                mem.size = len(data)
                b.addfile(mem, io.BytesIO(data))
            else:
                b.addfile(mem)


def test_a_damaged_memmap_snapshot_is_refused_by_name(tmp_path):
    root = fake_root(tmp_path)
    good = tmp_path / "s.tar.gz"
    capture(good, root=str(root), progress=False, memmap=True)
    member = f"memmap/0-{END_PFN:x}"
    cases = [
        ({"cut": member}, r"memmap/0-40000 is \d+ bytes, not the \d+ of 262144 struct pages"),
        ({"drop": (member,)}, "memmap/0-40000 is missing from the snapshot"),
        (
            {"edit_meta": lambda mm: mm.update(vmemmap_base="x")},
            "vmemmap_base .*'x'.* is not an address",
        ),
        ({"edit_meta": lambda mm: mm.update(struct_page=80)}, "64-byte struct pages only"),
        ({"edit_meta": lambda mm: mm.update(ranges=[[5, 2]])}, "start, end"),
    ]
    for i, (kw, msg) in enumerate(cases):
        bad = tmp_path / f"bad{i}.tar.gz"
        _retar(good, bad, **kw)
        with pytest.raises(ParseError, match=msg):
            memscan.Machine.from_snapshot(bad, progress=False)


def test_kcore_reader_refuses_what_is_not_an_x86_64_core(tmp_path):
    p = tmp_path / "k"
    p.write_bytes(b"not an elf file at all" * 10)
    with pytest.raises(ParseError, match="not an ELF core"):
        Kcore(str(p))
    write_kcore(p)
    raw = bytearray(p.read_bytes()[:4096])
    raw[18:20] = struct.pack("<H", 183)  # EM_AARCH64
    q = tmp_path / "arm"
    q.write_bytes(bytes(raw))
    with pytest.raises(ParseError, match="x86_64 kernels only"):
        Kcore(str(q))
    with Kcore(str(p)) as k:
        assert k.read(BASE + HOLE[0] * 64, 64) is None  # in the hole
        assert k.read(SYM, 8) == BASE.to_bytes(8, "little")
    assert kallsyms_address("ffffffff81000000 T _stext\n", "vmemmap_base") is None
