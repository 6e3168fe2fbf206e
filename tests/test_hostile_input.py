"""Hostile input from other machines: a sysfs tree, a tarball or a snapshot never makes memscan
hang, read outside the tree, read without bound, or echo what it read into an error."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading

import numpy as np
import pytest

import memscan
from memscan.errors import ParseError
from memscan.sources.sysfs_tree import MAX_VALUE_BYTES

IOMEM = "00001000-3fffffff : System RAM\n"  # 1 GiB from pfn 1: blocks 0-7 of 128 MiB


def small_tree(root, iomem=IOMEM):
    m = memscan.Machine.from_iomem(iomem, block_size="128M")
    m.export_sysfs(root, kernel="6.1")
    return root / "sys/devices/system/memory"


def in_time(fn, seconds=20):
    """Run fn in a thread; fail (not hang) if it does not return in time."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn} did not return in {seconds} s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def replace(path, make):
    path.chmod(0o644) if path.exists() and not path.is_symlink() else None
    path.unlink()
    make(path)


def test_a_fifo_as_a_value_file_is_refused_not_waited_on(tmp_path):
    mem = small_tree(tmp_path)
    replace(mem / "memory2/state", os.mkfifo)
    with pytest.raises(ParseError, match=r"memory2/state is not a regular file"):
        in_time(lambda: memscan.Machine.from_sysfs(tmp_path))


def test_value_file_symlinks_out_of_the_tree_are_not_followed(tmp_path):
    """sys/.../block_size_bytes -> a file outside: refused, and its content is not printed."""
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0:SECRET-CONTENT\n")
    tree = tmp_path / "tree"
    mem = small_tree(tree)
    replace(mem / "block_size_bytes", lambda p: p.symlink_to(secret))
    with pytest.raises(ParseError, match="block_size_bytes is a symlink") as e:
        memscan.Machine.from_sysfs(tree)
    assert "SECRET" not in str(e.value)


def test_a_block_directory_symlinked_out_of_the_tree_is_not_entered(tmp_path):
    outside = tmp_path / "outside"
    tree = tmp_path / "tree"
    mem = small_tree(tree)
    os.rename(mem / "memory3", outside)
    (mem / "memory3").symlink_to(outside)
    with pytest.raises(ParseError, match="memory3 is a symlink"):
        memscan.Machine.from_sysfs(tree)


def test_device_and_oversized_value_files_are_read_with_a_cap(tmp_path):
    """/dev/zero never ends and a sparse 1 GiB file is not one line: neither is read whole,
    and the error quotes none of it."""
    mem = small_tree(tmp_path)
    replace(mem / "memory1/state", lambda p: p.symlink_to("/dev/zero"))
    with pytest.raises(ParseError, match="memory1/state is a symlink"):
        memscan.Machine.from_sysfs(tmp_path)
    (mem / "memory1/state").unlink()
    with open(mem / "memory1/state", "wb") as f:
        f.truncate(1 << 30)  # sparse: costs no disk
    with pytest.raises(ParseError, match=f"more than {MAX_VALUE_BYTES} bytes") as e:
        memscan.Machine.from_sysfs(tmp_path)
    assert len(str(e.value)) < 300


def test_a_long_value_is_quoted_short_and_escaped(tmp_path):
    mem = small_tree(tmp_path)
    (mem / "memory1/state").chmod(0o644)
    (mem / "memory1/state").write_text("\x1b[2J" + "x" * 3000 + "\n")
    with pytest.raises(ParseError, match="memory1/state reads") as e:
        memscan.Machine.from_sysfs(tmp_path)
    assert "\x1b" not in str(e.value) and len(str(e.value)) < 300


def _tar_of(tree_root, out, extra=()):
    with tarfile.open(out, "w:gz") as tar:
        tar.add(tree_root / "sys", arcname="sys")
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def test_a_tar_member_larger_than_a_value_is_refused_before_reading(tmp_path):
    tree = tmp_path / "tree"
    small_tree(tree)
    big = b"0" * (MAX_VALUE_BYTES + 1)
    tb = _tar_of(tree, tmp_path / "t.tar.gz", [("sys/devices/system/memory/huge", big)])
    with pytest.raises(ParseError, match=r"member 'sys/devices/system/memory/huge' is \d+ bytes"):
        memscan.Machine.from_sysfs(tb)


def test_a_tarball_tree_reads_as_its_directory_does(tmp_path):
    """Members are indexed once: the same answers as the directory, block for block."""
    tree = tmp_path / "tree"
    small_tree(tree, iomem="00001000-1ffffffff : System RAM\n")
    tb = _tar_of(tree, tmp_path / "t.tar.gz")
    a, b = memscan.Machine.from_sysfs(tree), memscan.Machine.from_sysfs(tb)
    assert a.blocks().tolist() == b.blocks().tolist()
    assert a.sysfs_removable == b.sysfs_removable
    assert [x.valid_zones for x in a.sysfs_tree.blocks] == [
        x.valid_zones for x in b.sysfs_tree.blocks
    ]


def _snapshot(tmp_path, words: bytes, name="s.tar.gz", meta=None):
    """A minimal snapshot of the small machine, with ``words`` as proc/kpageflags."""
    tree = tmp_path / "tree"
    if not tree.exists():
        small_tree(tree)
    iomem = IOMEM
    zoneinfo = (
        "Node 0, zone      DMA\n  pages free 0\n  spanned  4095\n  present 4095\n"
        "  managed 4095\n  start_pfn:           1\n"
        "Node 0, zone    DMA32\n  pages free 0\n  spanned  258048\n  present 258048\n"
        "  managed 258048\n  start_pfn:           4096\n"
    )
    meta = json.dumps(meta or {"arch": "x86_64", "page_size": 4096}).encode()
    files = [("meta.json", meta), ("proc/iomem", iomem.encode())]
    files += [("proc/zoneinfo", zoneinfo.encode()), ("proc/kpageflags", words)]
    return _tar_of(tree, tmp_path / name, files)


@pytest.mark.parametrize(
    "nbytes, problem",
    [
        (8 * 1000 + 3, "not a whole number of 8-byte words"),
        (4, "not a whole number of 8-byte words"),
        (0, "empty"),
        (8 * (1 << 20), "covers 0x100000 pfns but the machine ends at pfn 0x40000"),
    ],
)
def test_snapshot_kpageflags_gets_the_same_checks_as_a_file(tmp_path, nbytes, problem):
    snap = _snapshot(tmp_path, b"\0" * nbytes)
    with pytest.raises(ParseError, match=problem):
        memscan.Machine.from_snapshot(snap)
    # the same bytes as a file: the same refusal
    f = tmp_path / "kpageflags"
    f.write_bytes(b"\0" * nbytes)
    m = memscan.Machine.from_iomem(IOMEM, block_size="128M")
    with pytest.raises(ParseError, match=problem):
        m.import_kpageflags(f)


def test_snapshot_that_loads(tmp_path):
    """The minimal snapshot above is a good one when its kpageflags fits (the checks above
    fail for the reason they name, not for another)."""
    words = np.zeros(0x40000, dtype="<u8")
    m = memscan.Machine.from_snapshot(_snapshot(tmp_path, words.tobytes()))
    assert m.geometry.max_pfn == 0x40000


def test_snapshot_meta_that_is_not_json_is_a_parse_error(tmp_path):
    tree = tmp_path / "tree"
    small_tree(tree)
    tb = _tar_of(tree, tmp_path / "s.tar.gz", [("meta.json", b"{not json")])
    with pytest.raises(ParseError, match="meta.json is not JSON"):
        memscan.Machine.from_snapshot(tb)


def test_snapshot_sysfs_member_past_the_cap_is_refused(tmp_path):
    tree = tmp_path / "tree"
    small_tree(tree)
    big = b"1" * (MAX_VALUE_BYTES + 1)
    extra = [("meta.json", b"{}"), ("sys/devices/system/memory/memory0/extra", big)]
    tb = _tar_of(tree, tmp_path / "s.tar.gz", extra)
    with pytest.raises(ParseError, match="memory0/extra"):
        memscan.Machine.from_snapshot(tb)


def _layout(start, size, block_size=None, **geometry):
    d = {"arch": "x86_64", "ranges": [{"start": start, "size": size, "kind": "ram"}]}
    if block_size is not None:
        d["block_size"] = block_size
    if geometry:
        d["geometry"] = geometry
    return d


@pytest.mark.parametrize(
    "layout, error, problem",
    [
        # a power of two that passed validation and then could not be allocated (SIGABRT)
        (_layout(0, "1G", block_size=2**63), memscan.GeometryError, "larger than 1 TiB"),
        # one page below 4 PiB: the address span, not the RAM, would set the cost
        (_layout((1 << 52) - (2 << 30), "4K"), memscan.LayoutError, "describes only 0x1 pages"),
        (
            _layout((1 << 52) - (2 << 30), "4K", pageblock_order=0),
            memscan.LayoutError,
            "would need",
        ),
        (
            _layout(1 << 40, "4K", section_size_bits=13, pageblock_order=0, max_order=1),
            memscan.LayoutError,
            "would need",
        ),
    ],
)
def test_layouts_whose_tables_cannot_be_built_are_refused_not_aborted(layout, error, problem):
    with pytest.raises(error, match=problem):
        memscan.Machine.from_layout(layout)


def test_populate_beyond_this_machines_memory_is_a_memory_error():
    """A fully dense machine needs a byte per page (64 TiB: 16 GiB): more than this
    machine's RAM is refused before allocating, as MemoryError, never an abort."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    size = 1 << (2 * 4096 * total).bit_length()  # page bytes: more than twice this RAM
    if size > 1 << 52:
        pytest.skip(f"this machine's RAM ({total} bytes) is more than any modeled machine needs")
    m = memscan.Machine.synthetic(f"{size >> 40}T")
    with pytest.raises(MemoryError, match="dense page bytes need"):
        m.populate("idle")
    assert isinstance(memscan.ModelMemoryError("x"), memscan.MemscanError)


def test_write_pages_refuses_what_it_would_cast():
    m = memscan.Machine.from_iomem(IOMEM, block_size="128M")
    with pytest.raises(memscan.ArgumentError, match="value 300 is not a page byte"):
        m.write_pages(0x1000, np.array([1, 300]))
    with pytest.raises(memscan.ArgumentError, match="value -1 is not a page byte"):
        m.write_pages(0x1000, np.array([-1]))
    with pytest.raises(memscan.ArgumentError, match=r"shape \(2, 2\)"):
        m.write_pages(0x1000, np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(memscan.ArgumentError, match="dtype float64"):
        m.write_pages(0x1000, np.array([1.5]))
    with pytest.raises(memscan.PfnRangeError, match="negative"):
        m.write_pages(-1, np.array([1], dtype=np.uint8))
    with pytest.raises(memscan.NoSuchBlockError, match="negative"):
        m.removable(-3)
    with pytest.raises(memscan.ArgumentError, match="want an integer"):
        m.page(3.7)
    m.write_pages(0x1000, np.array([1, 255]))  # a list of ints in range is fine
    assert m.page_bytes(0x1000, 2).tolist() == [1, 255]


def test_populate_under_a_memory_limit_is_a_memory_error_not_an_abort(tmp_path):
    """Under RLIMIT_AS the page-byte allocations fail: MemoryError, not SIGABRT (run in a
    child process, so the limit is its own)."""
    import subprocess
    import sys

    code = (
        "import resource, memscan\n"
        "m = memscan.Machine.synthetic('8T')\n"  # 2 GiB of page bytes when populated
        "import os\n"
        "vm = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), vm + (512 << 20)))\n"
        "try:\n"
        "    m.populate('idle')\n"
        "except MemoryError as e:\n"
        "    print('MemoryError', type(e).__name__, e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("MemoryError ModelMemoryError"), r.stdout + r.stderr[-500:]
    assert "allocating" in r.stdout and "failed" in r.stdout


def test_kpageflags_compound_runs_stop_at_an_offline_block(tmp_path):
    """fs/proc/page.c reports only online memmap (pfn_to_online_page): a compound run that
    reaches into an offline block is not written into that block's pages."""
    from memscan.kpageflags import KPF

    m = memscan.Machine.from_layout(
        {
            "arch": "x86_64",
            "block_size": "128M",
            "ranges": [{"start": 4096, "size": (1 << 30) - 4096, "kind": "ram"}],
            "offline_blocks": [3],
        }
    )
    ppb = m.geometry.pages_per_block
    before = m.page_bytes(3 * ppb, 512).tolist()
    words = np.zeros(4 * ppb, dtype="<u8")
    head = 3 * ppb - 256  # a 2 MiB THP whose second half lies in block 3
    thp = (1 << KPF["THP"]) | (1 << KPF["MMAP"]) | (1 << KPF["ANON"])
    words[head] = (1 << KPF["COMPOUND_HEAD"]) | (1 << KPF["LRU"]) | thp
    words[head + 1 : head + 512] = (1 << KPF["COMPOUND_TAIL"]) | thp
    f = tmp_path / "kpageflags"
    f.write_bytes(words.tobytes())
    m.import_kpageflags(f)
    assert m.page_bytes(3 * ppb, 512).tolist() == before  # the offline block is untouched
    tails = m.page_bytes(head + 1, 255)
    assert set((tails & 0xF).tolist()) == {int(memscan.PageKind.THP_TAIL)}


@pytest.mark.parametrize("what", ["populate", "export"])
def test_ctrl_c_stops_long_core_work(tmp_path, what):
    """SIGINT during a populate or an export raises KeyboardInterrupt from inside the call
    (the core checks a flag between blocks or chunks), instead of after the work is done;
    the machine stays usable."""
    import subprocess
    import sys

    code = f"""
import os, signal, threading, memscan
m = memscan.Machine.synthetic("8T", block_size="128M")
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    if {what!r} == "populate":
        m.populate("fragmented", seed=1)
    else:
        m.export_sysfs({str(tmp_path / "t")!r}, kernel="6.1")
    print("finished")
except KeyboardInterrupt:
    print("interrupted")
m.removable(int(m.blocks()[0]), "5.5")
print("usable")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.split() == ["interrupted", "usable"], r.stdout + r.stderr[-1000:]


def test_many_nodes_build_and_bad_block_sizes_are_refused_first():
    """synthetic(nodes=N): a bad block size is refused before any per-node work, and the
    per-node zones are derived once per node (they were a filter per node: quadratic)."""
    with pytest.raises(memscan.GeometryError, match="not a power of two"):
        memscan.Machine.synthetic("16T", nodes=65536, block_size="3M")
    m = memscan.Machine.synthetic("1T", nodes=4096, block_size="128M")
    zones = m._core.zones()
    assert sorted({z[0] for z in zones}) == list(range(4096))
    assert all(z[2] < z[3] for z in zones)


def test_snapshot_with_coldplugged_dimms_still_offline_loads(tmp_path):
    """Hot-added memory that is not onlined yet is System RAM in iomem, in no zone (it joins
    one when onlined: move_pfn_range_to_zone) and offline in sysfs: the normal state of a
    coldplugged DIMM. Such a snapshot loads, and onlining it picks the zone the kernel would."""
    files = {
        "meta.json": json.dumps({"arch": "x86_64", "page_size": 4096}).encode(),
        "proc/iomem": b"00001000-3fffffff : System RAM\n100000000-13fffffff : System RAM\n",
        "proc/zoneinfo": (
            b"Node 0, zone      DMA\n  spanned  4095\n  start_pfn:           1\n"
            b"Node 0, zone    DMA32\n  spanned  258048\n  start_pfn:           4096\n"
        ),
        "sys/devices/system/memory/block_size_bytes": b"8000000\n",
    }
    for b in range(8):
        files[f"sys/devices/system/memory/memory{b}/state"] = b"online\n"
    for b in range(32, 40):
        files[f"sys/devices/system/memory/memory{b}/state"] = b"offline\n"
    out = tmp_path / "dimm.tar.gz"
    with tarfile.open(out, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    m = memscan.Machine.from_snapshot(out)
    assert [int(x) for x in m.block_states()[32:40]] == [int(memscan.BlockState.OFFLINE)] * 8
    assert m.valid_zones(33, "6.1") == "Normal Movable"
    assert m.online(33, "online_movable") is None
    assert m.valid_zones(33, "6.1") == "Movable" and m.offline(33, "6.1").ok
    # an explicit layout with online RAM outside every zone is still a contradiction
    with pytest.raises(memscan.LayoutError, match="outside every zone"):
        memscan.Machine.from_layout(
            {
                "arch": "x86_64",
                "block_size": "128M",
                "ranges": [
                    {"start": 4096, "size": (1 << 30) - 4096, "kind": "ram"},
                    {"start": 4 << 30, "size": "1G", "kind": "ram"},
                ],
                "zones": [{"nid": 0, "zone": "DMA32", "start_pfn": 1, "end_pfn": 0x40000}],
            }
        )
