"""Real util-linux lsmem reads trees exported by memscan; what it prints must match the model.

The Debian package util-linux provides lsmem; .ci/run installs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

import memscan

LSMEM = shutil.which("lsmem")
pytestmark = pytest.mark.skipif(LSMEM is None, reason="util-linux lsmem is not installed")
ALL_COLS = "RANGE,SIZE,STATE,REMOVABLE,BLOCK,NODE,ZONES"


def lsmem(root, *args):
    out = subprocess.run(
        [LSMEM, "--sysroot", str(root), *args], check=True, capture_output=True, text=True
    )
    return out.stdout


def lsmem_json(root, *args):
    return json.loads(lsmem(root, "-J", "-b", *args))["memory"]


LSMEM_ZONES = {
    z.lower(): z for z in ("None", "DMA", "DMA32", "Normal", "Highmem", "Movable", "Device")
}


def model_rows(m, kernel, on_fault="missing"):
    """Per block what lsmem reads: state, removable flag (a missing file reads as 0), node, and
    zones: lsmem reads valid_zones only when the literal memory0/valid_zones exists, and maps
    each token to its own spelling ("none" prints as "None")."""
    s = m.scan(kernel, progress=False)
    have_zones = 0 in s.block.tolist()
    faulted = {f.block for f in s.faults}
    states = m.block_states()
    secs = m.sections()
    spb = m.geometry.sections_per_block
    rows = []
    for i, b in enumerate(s.block.tolist()):
        state = memscan.BlockState(int(states[b])).sysfs
        rem = (on_fault == "1") if b in faulted else bool(s.value[i] == 1)
        nid = min(
            int(secs["nid"][x])
            for x in range(b * spb, (b + 1) * spb)
            if secs["flags"][x] & 1 and not secs["flags"][x] & 8
        )
        zones = None
        if have_zones:
            zones = "/".join(
                LSMEM_ZONES.get(t.lower(), "Unknown") for t in m.valid_zones(b, kernel).split()
            )
        rows.append({"block": b, "state": state, "removable": rem, "node": nid, "zones": zones})
    return rows


def merge(rows, bs, split):
    """lsmem's merge: contiguous block ids with equal values of the split columns."""
    out = []
    for r in rows:
        prev = out[-1] if out else None
        zones_ok = r["zones"] is None or "Unknown" not in r["zones"]
        if (
            prev
            and r["block"] == prev["last"] + 1
            and all(prev[k] == r[k] for k in split)
            and ("zones" not in split or zones_ok)
        ):
            prev["last"] = r["block"]
        else:
            out.append(dict(r, first=r["block"], last=r["block"]))
    res = []
    for x in out:
        start, end = x["first"] * bs, (x["last"] + 1) * bs - 1
        blk = str(x["first"]) if x["first"] == x["last"] else f"{x['first']}-{x['last']}"
        res.append(
            (f"0x{start:016x}-0x{end:016x}", end - start + 1, x["state"], x["removable"], blk)
        )
    return res


def lsmem_tuples(mem):
    # lsmem prints REMOVABLE only for online blocks (null otherwise)
    return [
        (
            r["range"],
            r["size"],
            r["state"],
            r["removable"] if r["state"] == "online" else None,
            r["block"],
        )
        for r in mem
    ]


def expect(rows, bs, split):
    return [(a, b, c, d if c == "online" else None, e) for a, b, c, d, e in merge(rows, bs, split)]


@pytest.fixture(scope="module")
def seed_tree(tmp_path_factory):
    m = memscan.Machine.seed().populate("movable-node", seed=1)
    root = tmp_path_factory.mktemp("seed")
    info = m.export_sysfs(root, kernel="5.5+debug")
    return m, root, info


def test_default_table_matches_model(seed_tree):
    m, root, info = seed_tree
    assert info["faulted"] == [96] and info["blocks"] == 96
    rows = model_rows(m, "5.5+debug")
    bs = m.geometry.block_size
    got = lsmem_tuples(lsmem_json(root))
    assert got == expect(rows, bs, ("state", "removable"))
    # removable changes split the ranges: more than the two gap-separated runs
    assert len(got) > 2


def test_all_blocks_and_columns(seed_tree):
    m, root, _ = seed_tree
    rows = model_rows(m, "5.5+debug")
    got = lsmem_json(root, "-a", "-o", ALL_COLS)
    assert [int(r["block"]) for r in got] == [r["block"] for r in rows]
    for g, r in zip(got, rows):
        assert (g["state"], g["removable"], g["node"], g["zones"]) == (
            r["state"],
            r["removable"],
            r["node"],
            r["zones"],
        )
    assert (
        got[-1]["removable"] is False
    )  # memory96: the read that crashed; no file, lsmem says "no"


def test_split_none_merges_all_contiguous_blocks(seed_tree):
    m, root, _ = seed_tree
    rows = model_rows(m, "5.5+debug")
    got = lsmem_json(root, "-S", "none", "-o", "RANGE,SIZE,BLOCK")
    want = merge(rows, m.geometry.block_size, ())
    assert [(r["range"], r["size"], r["block"]) for r in got] == [
        (a, b, e) for a, b, _, _, e in want
    ]
    assert [r["block"] for r in got] == ["0", "2-96"]


def test_totals_match_model(seed_tree):
    m, root, _ = seed_tree
    out = lsmem(root, "-b", "--summary=only")
    online = sum(
        m.geometry.block_size
        for b in m.blocks().tolist()
        if m.block_state(b) == memscan.BlockState.ONLINE
    )
    assert f"{m.geometry.block_size}" in out and f"{online}" in out


def test_post_patch_tree_is_one_range_per_gap(tmp_path):
    m = memscan.Machine.seed().populate("fragmented", seed=1)
    m.export_sysfs(tmp_path, kernel="5.6")
    got = lsmem_json(tmp_path)
    assert [r["block"] for r in got] == ["0", "2-96"] and all(r["removable"] for r in got)


def test_nodes_zones_and_offline_blocks(tmp_path):
    m = memscan.Machine.synthetic("2G", block_size="128M", nodes=2).populate("movable-node", seed=3)
    assert m.offline(42, "6.1", dry_run=False).ok
    m.export_sysfs(tmp_path, kernel="6.1")
    rows = model_rows(m, "6.1")
    got = lsmem_json(tmp_path, "-o", ALL_COLS)
    bs = m.geometry.block_size
    want = merge(rows, bs, ("state", "removable", "node", "zones"))
    assert [(r["range"], r["state"], r["block"]) for r in got] == [
        (a, c, e) for a, _, c, _, e in want
    ]
    offline = [r for r in got if r["state"] == "offline"]
    assert offline and offline[0]["block"] == "42"
    assert {r["node"] for r in got} == {0, 1}
    # no memory0 on this machine: lsmem does not read valid_zones at all
    assert all(r["zones"] is None for r in got)


def test_zones_with_memory0_and_offline_block(tmp_path):
    # s390x: memory starts at 0, so memory0/valid_zones exists and lsmem shows ZONES
    m = memscan.Machine.from_layout(
        {"arch": "s390x", "ranges": [{"start": 0, "size": "4G", "kind": "ram"}]}
    )
    # freshly booted: every page free, nothing to migrate
    assert m.offline(12, "6.1", dry_run=False).ok
    m.export_sysfs(tmp_path, kernel="6.1")
    rows = model_rows(m, "6.1")
    got = lsmem_json(tmp_path, "-a", "-o", ALL_COLS)
    assert [(int(g["block"]), g["state"], g["zones"]) for g in got] == [
        (r["block"], r["state"], r["zones"]) for r in rows
    ]
    assert got[12]["state"] == "offline" and got[12]["zones"] == "Normal/Movable"
    assert got[0]["zones"] == "DMA" and got[11]["zones"] == "Normal"  # s390 DMA is below 2 GiB


def test_fault_policy_one(tmp_path):
    m = memscan.Machine.seed()
    m.export_sysfs(tmp_path, kernel="5.5+debug", on_fault="1")
    got = lsmem_json(tmp_path, "-a")
    assert got[-1]["block"] == "96" and got[-1]["removable"] is True


def test_export_refuses_real_sysfs():
    m = memscan.Machine.synthetic("1G")
    with pytest.raises(memscan.ArgumentError, match="refusing"):
        m.export_sysfs("/sys/kernel/../")
    with pytest.raises(memscan.ArgumentError):
        m.export_sysfs("/tmp/x", on_fault="maybe")


def test_cli_export_then_lsmem(tmp_path, capsys):
    from memscan.cli import main

    assert main(["sysfs", "export", str(tmp_path), "--kernel", "5.6", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["blocks"] == 96 and info["faulted"] == []
    assert [r["block"] for r in lsmem_json(tmp_path)] == ["0", "2-96"]


def test_export_refuses_a_non_empty_target_and_force_replaces_it_whole(tmp_path):
    """An export never merges with a tree already there (lsmem would show two machines
    mixed): a second export into the same root is refused; with force the earlier export is
    replaced whole, so a block only the first machine had is gone."""
    m = memscan.Machine.seed()
    m.export_sysfs(tmp_path, kernel="5.6")
    mem = tmp_path / "sys/devices/system/memory"
    (mem / "memory999").mkdir()  # a block of some other machine left in the tree
    before = lsmem(tmp_path, "-a", "-o", "BLOCK,STATE")
    m.set_block_state(5, "offline")
    with pytest.raises(memscan.ArgumentError, match="not empty"):
        m.export_sysfs(tmp_path, kernel="5.6")
    assert lsmem(tmp_path, "-a", "-o", "BLOCK,STATE") == before  # untouched
    m.export_sysfs(tmp_path, kernel="5.6", force=True)
    after = lsmem_json(tmp_path, "-a")
    assert [r["state"] for r in after if r["block"] == "5"] == ["offline"]
    assert [r["state"] for r in after if r["block"] == "6"] == ["online"]
    assert not (mem / "memory999").exists()
    assert (mem / "memory5/online").read_text() == "0\n"
    assert (mem / "memory6/online").read_text() == "1\n"
    # force replaces an export, not whatever the directory holds
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(memscan.ArgumentError, match="notes.txt"):
        m.export_sysfs(tmp_path, kernel="5.6", force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine\n" and (mem / "memory5").is_dir()


def test_export_has_the_kernels_modes_and_a_write_changes_one_block(tmp_path):
    """drivers/base/memory.c: removable, phys_index, phys_device, valid_zones and
    block_size_bytes are 0444; state and online (drivers/base/core.c) 0644. Writing one
    block's state must not reach any other block (no shared inode behind a writable file)."""
    import os
    import stat

    m = memscan.Machine.seed()
    m.export_sysfs(tmp_path, kernel="5.6")
    mem = tmp_path / "sys/devices/system/memory"
    mode = lambda p: stat.S_IMODE(os.lstat(p).st_mode)  # noqa: E731
    assert mode(mem / "block_size_bytes") == 0o444
    for attr in ("removable", "phys_index", "phys_device", "valid_zones"):
        assert mode(mem / "memory40" / attr) == 0o444, attr
    for attr in ("state", "online"):
        assert mode(mem / "memory40" / attr) == 0o644, attr
        assert os.stat(mem / "memory40" / attr).st_nlink == 1, attr
    (mem / "memory40/state").write_text("offline\n")
    states = {r["block"]: r["state"] for r in lsmem_json(tmp_path, "-a")}
    assert states["40"] == "offline"
    assert sum(s == "offline" for s in states.values()) == 1


def test_export_never_writes_through_a_planted_entry(tmp_path):
    """Nothing outside the target directory is written: an export into a directory holding
    anything is refused, and with force a planted symlink, hard link or FIFO where an
    attribute or a block directory goes is removed, never followed, written or opened."""
    import os

    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("keep\n")
    root = tmp_path / "root"
    mem = root / "sys/devices/system/memory"
    (mem / "memory0").mkdir(parents=True)
    (mem / "memory0/phys_index").symlink_to(victim)
    os.link(victim, mem / "block_size_bytes")
    os.mkfifo(mem / "memory0/state")
    m = memscan.Machine.seed()
    with pytest.raises(memscan.ArgumentError, match="not empty"):
        m.export_sysfs(root)
    m.export_sysfs(root, force=True)  # would block forever on the FIFO if it opened it
    assert victim.read_text() == "keep\n" and os.stat(victim).st_nlink == 1
    assert (mem / "block_size_bytes").read_text() == f"{m.geometry.block_size:x}\n"
    assert (mem / "memory0/phys_index").read_text() == "00000000\n"
    assert not (mem / "memory0/phys_index").is_symlink()
    other = tmp_path / "other"
    other.mkdir()
    (other / "sys").symlink_to(outside)  # a planted directory on the way to memory/
    with pytest.raises(memscan.ArgumentError, match="sys: not a directory"):
        m.export_sysfs(other, force=True)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


def _check_link_rotation(root, info, limit):
    import os

    values = root / ".memscan-values"
    mem = root / "sys/devices/system/memory"
    # "1\n" is every block's removable: more links than one inode may hold, so they are
    # spread over value files none past the limit
    files = [p for p in values.iterdir() if not p.is_symlink()]
    ones = [os.stat(p) for p in files if p.read_text() == "1\n"]
    assert all(st.st_nlink <= limit for st in ones)
    assert len(ones) >= -(-info["blocks"] // limit)
    inos = {st.st_ino for st in ones}
    linked = sum(os.stat(p).st_ino in inos for p in mem.glob("memory*/removable"))
    assert sum(st.st_nlink - 1 for st in ones) == linked == info["blocks"]
    # the blocks' node links: symlinks to the node, sharing inodes the same way
    links = [os.lstat(p) for p in values.iterdir() if p.is_symlink()]
    assert links and all(st.st_nlink <= limit for st in links)
    node_links = list(mem.glob("memory*/node0"))
    assert len(node_links) == info["blocks"]
    assert all(os.readlink(p) == "../../node/node0" for p in node_links)
    assert all(p.resolve() == (root / "sys/devices/system/node/node0") for p in node_links[:20])
    assert {os.lstat(p).st_ino for p in node_links} <= {st.st_ino for st in links}
    assert sum(st.st_nlink - 1 for st in links) == info["blocks"]
    got = lsmem_json(root)
    assert len(got) == 1 and got[0]["state"] == "online" and got[0]["removable"] in (True, "yes")


def test_export_rotates_value_files_at_the_link_limit(tmp_path):
    """A file system limits links per inode (ext4: 65,000): when a link fails with EMLINK
    the export starts a new value file. Here the limit is set low, so the rotation runs on
    any file system."""
    from memscan.sysfs import export_sysfs

    m = memscan.Machine.synthetic("64G", block_size="128M")  # 512 blocks
    info = export_sysfs(m, tmp_path, kernel="6.1", _link_limit=50)
    assert info["blocks"] == 512
    _check_link_rotation(tmp_path, info, 50)


@pytest.mark.skipif(
    not os.environ.get("MEMSCAN_SLOW"), reason="70,000 directories on ext4; set MEMSCAN_SLOW=1"
)
def test_export_past_the_file_systems_link_limit(tmp_path):
    """The same against the file system's own limit (ext4 65,000; tmpfs has none). Opt-in:
    it makes 70,000 directories (15 minutes on a loaded ext4)."""
    limit = os.pathconf(tmp_path, "PC_LINK_MAX")
    if limit > 100_000 or limit < 1000:  # tmpfs reports 127 but does not enforce it
        pytest.skip(f"{tmp_path}: no enforced per-inode link limit ({limit})")
    blocks = (limit // 4096 + 1) * 4096  # a few thousand past the limit, 256 MiB blocks
    m = memscan.Machine.synthetic(f"{blocks // 4}G", block_size="256M")
    try:
        info = m.export_sysfs(tmp_path, kernel="6.1")
        assert info["blocks"] > limit
        _check_link_rotation(tmp_path, info, limit)
    finally:  # 70,000 directories: do not leave them to pytest's tmp_path rotation
        shutil.rmtree(tmp_path / "sys", ignore_errors=True)


def test_arm64_zones_follow_max_zone_phys(tmp_path):
    """arm64 zones as zone_sizes_init()/max_zone_phys() (6.x) lay them out, read by lsmem.

    DRAM from 2 GiB: ZONE_DMA (32 bits) runs to 4 GiB and ZONE_DMA32 is empty. DRAM from
    1 TiB, laid out as util-linux's aarch64_16K_16g dump (16 KiB pages, 128 MiB blocks
    8192-8316 and 8319, 128 MiB sections as arm64 has them since v5.12): every block is DMA, which is what upstream's
    tests/expected/lsmem/lsmem-aarch64_16K_16g prints (that dump itself is not in any
    release tarball Debian carries, up to 2.42.4). The zones are read from the tree's
    valid_zones files: lsmem 2.38 prints ZONES only when memory0 exists, and these have none."""

    def valid_zones(root):
        mem = root / "sys/devices/system/memory"
        return {
            int(p.parent.name[6:]): p.read_text().strip() for p in mem.glob("memory*/valid_zones")
        }

    low = memscan.Machine.from_layout(
        {
            "arch": "arm64",
            "block_size": "1G",
            "ranges": [{"start": 2 << 30, "size": "4G", "kind": "ram"}],
        }
    )
    low.export_sysfs(tmp_path / "low", kernel="6.1")
    assert valid_zones(tmp_path / "low") == {2: "DMA", 3: "DMA", 4: "Normal", 5: "Normal"}
    bs = 128 << 20
    high = memscan.Machine.from_layout(
        {
            "arch": "arm64",
            "page_size": "16K",
            "block_size": "128M",
            "geometry": {"section_size_bits": 27},
            "ranges": [
                {"start": 8192 * bs, "size": 125 * bs, "kind": "ram"},
                {"start": 8319 * bs, "size": bs, "kind": "ram"},
            ],
        }
    )
    assert high.geometry.page_size == 16 << 10
    high.export_sysfs(tmp_path / "high", kernel="6.1")
    assert set(valid_zones(tmp_path / "high").values()) == {"DMA"}
    rows = lsmem_json(tmp_path / "high", "-o", "RANGE,STATE,REMOVABLE,BLOCK,NODE")
    assert [(r["range"], r["block"], r["removable"], r["node"]) for r in rows] == [
        ("0x0000010000000000-0x00000103e7ffffff", "8192-8316", True, 0),
        ("0x00000103f8000000-0x00000103ffffffff", "8319", True, 0),
    ]
