"""Import sysfs trees (directories, tarballs, the live /sys read-only) and export them again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile

import pytest

import memscan
from memscan.errors import ParseError

LSMEM = shutil.which("lsmem")
ALL_COLS = "RANGE,SIZE,STATE,REMOVABLE,BLOCK,NODE,ZONES"
needs_lsmem = pytest.mark.skipif(LSMEM is None, reason="util-linux lsmem is not installed")


def lsmem(root, *args):
    cmd = [LSMEM, *args] if root is None else [LSMEM, "--sysroot", str(root), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def seed_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("orig")
    m = memscan.Machine.seed().populate("movable-node", seed=2)
    m.export_sysfs(root, kernel="5.5+debug")
    return m, root


def test_import_recovers_blocks_states_nodes_zones(seed_tree):
    m, root = seed_tree
    i = memscan.Machine.from_sysfs(root)
    assert i.geometry.block_size == m.geometry.block_size
    assert i.blocks().tolist() == m.blocks().tolist()  # gaps kept (no memory1)
    ids = m.blocks()
    assert (i.block_states()[ids] == m.block_states()[ids]).all()
    scan = m.scan("5.5+debug", progress=False)
    want = {
        b: (None if v < 0 else int(v)) for b, v in zip(scan.block.tolist(), scan.value.tolist())
    }
    assert i.sysfs_removable == want  # memory96 had no removable file: None
    zones = {z[1] for z in i.zones()}
    assert {"DMA", "DMA32", "Normal"} <= zones


@needs_lsmem
def test_export_after_import_prints_the_same(seed_tree, tmp_path):
    _, root = seed_tree
    i = memscan.Machine.from_sysfs(root)
    i.export_sysfs(tmp_path, kernel="5.5", values="sysfs")
    for args in ([], ["-a"], ["-o", ALL_COLS], ["-S", "none"], ["-J", "-b"]):
        assert lsmem(tmp_path, *args) == lsmem(root, *args), args


@needs_lsmem
def test_tarball_import(seed_tree, tmp_path):
    _, root = seed_tree
    tar = tmp_path / "dump.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(root / "sys", arcname="x86_64-seed/sys")
    i = memscan.Machine.from_sysfs(tar)
    out = tmp_path / "out"
    i.export_sysfs(out, values="sysfs")
    assert lsmem(out, "-o", ALL_COLS) == lsmem(root, "-o", ALL_COLS)


@needs_lsmem
@pytest.mark.skipif(not os.path.isdir("/sys/devices/system/memory"), reason="no memory sysfs here")
def test_live_sys_read_only_and_model_matches_lsmem(tmp_path):
    live = memscan.Machine.from_sysfs("/")  # reads /sys only
    assert len(live.blocks()) > 0
    removable = set(live.sysfs_removable.values())
    live.export_sysfs(tmp_path, kernel="6.1")
    cols = ALL_COLS if removable == {1} else "RANGE,SIZE,STATE,BLOCK,NODE,ZONES"
    assert lsmem(tmp_path, "-o", cols) == lsmem(None, "-o", cols)


def _tree(tmp_path, block_size="8000000", blocks=None):
    mem = tmp_path / "sys" / "devices" / "system" / "memory"
    mem.mkdir(parents=True)
    if block_size is not None:
        (mem / "block_size_bytes").write_text(block_size + "\n")
    for n, files in ({32: {}} if blocks is None else blocks).items():
        d = mem / f"memory{n}"
        d.mkdir()
        base = {"phys_index": f"{n:08x}\n", "state": "online\n", "removable": "1\n"}
        base.update(files)
        for k, v in base.items():
            if v is not None:
                (d / k).write_text(v)
    return tmp_path


@pytest.mark.parametrize(
    "kw,needle",
    [
        (dict(block_size=None), "block_size_bytes is missing"),
        (dict(block_size="zz"), "not hexadecimal"),
        (dict(block_size="6000000"), "not a power of two"),
        (dict(blocks={32: {"phys_index": "00000021\n"}}), "phys_index reads"),
        (dict(blocks={32: {"state": "sleeping\n"}}), "state reads 'sleeping'"),
        (dict(blocks={32: {"valid_zones": "Normal Bogus\n"}}), "unknown zone names"),
        (dict(blocks={32: {"removable": "2\n"}}), "removable reads '2'"),
        (dict(blocks={}), "no memoryN directories"),
    ],
)
def test_bad_trees(tmp_path, kw, needle):
    root = _tree(tmp_path, **kw)
    with pytest.raises(ParseError, match=needle) as e:
        memscan.Machine.from_sysfs(root)
    assert str(root) in str(e.value)


def test_bad_tarballs_and_paths(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        info = tarfile.TarInfo("../outside/sys/devices/system/memory/block_size_bytes")
        data = b"8000000\n"
        info.size = len(data)
        import io

        t.addfile(info, io.BytesIO(data))
    with pytest.raises(ParseError, match="outside the archive root"):
        memscan.Machine.from_sysfs(evil)
    assert not (tmp_path.parent / "outside").exists()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a tar")
    with pytest.raises(ParseError, match="not a directory or a readable tarball"):
        memscan.Machine.from_sysfs(junk)
    with pytest.raises(ParseError, match="no such directory"):
        memscan.Machine.from_sysfs(tmp_path / "nope")
    with pytest.raises(ParseError, match="no sys/devices/system/memory"):
        memscan.Machine.from_sysfs(tmp_path)
    m = memscan.Machine.synthetic("1G")
    with pytest.raises(memscan.ArgumentError, match="from_sysfs"):
        m.export_sysfs(tmp_path / "x", values="sysfs")


def test_json_summary_of_export(tmp_path):
    m = memscan.Machine.synthetic("1G")
    info = m.export_sysfs(tmp_path, kernel="6.1")
    assert json.loads(json.dumps(info))["blocks"] == 8


def test_inconsistent_s390_phys_device_is_refused(tmp_path):
    m = memscan.Machine.synthetic("2G", block_size="256M", arch="s390x")
    m.export_sysfs(tmp_path, kernel="5.6")
    mem = tmp_path / "sys/devices/system/memory"
    for p in mem.glob("memory*"):
        b = int(p.name[6:])
        (p / "phys_device").unlink()
        (p / "phys_device").write_text(f"{b * 32}\n")  # 8 MiB increments
    (mem / "memory3/phys_device").unlink()
    (mem / "memory3/phys_device").write_text("95\n")
    with pytest.raises(memscan.ParseError, match="memory3/phys_device 95"):
        memscan.Machine.from_sysfs(tmp_path, arch="s390x")
    (mem / "memory3/phys_device").unlink()
    (mem / "memory3/phys_device").write_text("x\n")
    with pytest.raises(memscan.ParseError, match="phys_device reads 'x'"):
        memscan.Machine.from_sysfs(tmp_path, arch="s390x")


@needs_lsmem
def test_arm64_16k_tree_round_trips_with_its_page_size(tmp_path):
    """sysfs does not say the page size: an arm64 16K tree (the layout of util-linux's
    aarch64_16K dump) imports with page_size="16K", keeps 16 KiB pages, and re-exports to a
    tree lsmem prints the same on."""
    src = memscan.Machine.synthetic("16G", arch="arm64", page_size="16K")
    src.set_block_state(int(src.blocks()[-1]), "offline")
    orig = tmp_path / "orig"
    src.export_sysfs(orig, kernel="6.1")
    m = memscan.Machine.from_sysfs(orig, arch="arm64", page_size="16K")
    assert m.geometry.page_size == 16 << 10
    assert m.geometry.block_size == src.geometry.block_size
    assert m.blocks().tolist() == src.blocks().tolist()
    assert m.memory_bytes() > 0
    again = tmp_path / "again"
    m.export_sysfs(again, kernel="6.1", values="sysfs")
    for opts in ([], ["-a", "-o", ALL_COLS], ["-J"]):
        assert lsmem(again, *opts) == lsmem(orig, *opts)
    with pytest.raises(memscan.ArgumentError, match="page_size '8K'"):
        memscan.Machine.from_sysfs(orig, arch="arm64", page_size="8K")
