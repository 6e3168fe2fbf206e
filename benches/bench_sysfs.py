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
