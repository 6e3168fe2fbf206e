"""Exporting a sysfs tree against real lsmem reading it, in one run (the issue's target:
export no slower than lsmem). 8 TiB in 256 MiB blocks: 32,768 block directories, on tmpfs
when /dev/shm exists so the figures are of memscan and lsmem, not of a disk.
Run: pytest benches/bench_sysfs.py --benchmark-enable"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

import memscan

LSMEM = shutil.which("lsmem")
BASE = "/dev/shm" if os.path.isdir("/dev/shm") else None


@pytest.fixture(scope="module")
def machine():
    return memscan.Machine.synthetic("8T", block_size="256M")


@pytest.fixture
def root():
    d = tempfile.mkdtemp(prefix="memscan-bench-", dir=BASE)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_export_8t(benchmark, machine, root):
    benchmark.group = "sysfs 8T: export vs lsmem"

    def fresh():  # each round writes a new tree, as a first export does
        shutil.rmtree(os.path.join(root, "sys"), ignore_errors=True)
        shutil.rmtree(os.path.join(root, ".memscan-values"), ignore_errors=True)
        return (), {}

    info = benchmark.pedantic(
        lambda: machine.export_sysfs(root, kernel="6.1"), setup=fresh, rounds=5
    )
    assert info["blocks"] == 32768


@pytest.mark.skipif(LSMEM is None, reason="util-linux lsmem is not installed")
def test_lsmem_reads_8t(benchmark, machine, root):
    benchmark.group = "sysfs 8T: export vs lsmem"
    machine.export_sysfs(root, kernel="6.1")
    out = benchmark.pedantic(
        lambda: subprocess.run(
            [LSMEM, "--sysroot", root, "-J"], check=True, capture_output=True, text=True
        ),
        rounds=5,
    )
    assert '"state": "online"' in out.stdout


@pytest.fixture(scope="module")
def tree_4096(tmp_path_factory):
    """A 4,096-block tree as a directory and as a .tar.gz of it."""
    import tarfile

    d = tmp_path_factory.mktemp("tree")
    memscan.Machine.synthetic("512G", block_size="128M").export_sysfs(d / "dir", kernel="6.1")
    with tarfile.open(d / "t.tar.gz", "w:gz") as t:
        t.add(d / "dir" / "sys", arcname="sys")
    return d


@pytest.mark.parametrize("form", ["dir", "t.tar.gz"])
def test_import_4096_blocks(benchmark, tree_4096, form):
    """Tarball import reads each member once, in archive order (it was quadratic: every
    member read decompressed the archive from the start). Compare the two rows."""
    benchmark.group = "sysfs import 4096 blocks: directory vs tarball"
    m = benchmark.pedantic(lambda: memscan.Machine.from_sysfs(tree_4096 / form), rounds=3)
    assert len(m.blocks()) == 4096
