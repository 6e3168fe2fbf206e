"""util-linux's own lsmem test dumps: import, re-export, and let the real lsmem judge.

The dumps (x86_64-16g, s390-zvm-6g) and the output upstream expects for them come from the
util-linux 2.38.1 release tarball; ``.ci/fetch-util-linux-tests`` downloads it from Debian's
archive, checks a pinned sha256 and unpacks it outside the repository (``.ci/run`` does this and
sets MEMSCAN_REQUIRE_UTIL_LINUX_TESTS=1, so in CI a missing download fails instead of skipping).

For every dump and every option set of util-linux's tests/ts/lsmem/lsmem:
- lsmem on our export (after ``Machine.from_sysfs`` of the tarball) prints exactly what it prints
  on the original tree, stdout and stderr;
- the transcript of those runs equals upstream's expected file byte for byte (when the installed
  lsmem is 2.38.x, the version the expected files were written by).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import memscan

LSMEM = shutil.which("lsmem")
DATA = Path(
    os.environ.get("MEMSCAN_UTIL_LINUX_TESTS")
    or Path.home() / ".cache" / "memscan" / "util-linux-2.38.1"
)
REQUIRED = os.environ.get("MEMSCAN_REQUIRE_UTIL_LINUX_TESTS") == "1"

if not (DATA / ".complete").exists():
    if REQUIRED:
        raise RuntimeError(
            f"util-linux lsmem test data missing at {DATA}: run .ci/fetch-util-linux-tests"
        )
    pytestmark = pytest.mark.skip(
        reason=f"util-linux lsmem test data not at {DATA}; run .ci/fetch-util-linux-tests"
    )
elif LSMEM is None:
    pytestmark = pytest.mark.skip(reason="util-linux lsmem is not installed")

# (dump name, arch) as util-linux names them.
DUMPS = [("x86_64-16g", "x86_64"), ("s390-zvm-6g", "s390x")]
COLS = "RANGE,SIZE,STATE,REMOVABLE,BLOCK,NODE"
# The option sets util-linux's tests/ts/lsmem/lsmem runs on each dump, in its order.
OPTION_SETS = [
    ["--split=STATE,REMOVABLE"],
    ["--output", "RANGE,SIZE", "--split", "none"],
    ["--output", "RANGE,SIZE,STATE", "--split", "STATE"],
    ["--all", "--output", COLS],
    ["--raw", "--output", COLS, "--split", COLS],
    ["--json", "--output", COLS, "--split", COLS],
    ["-o", "+ZONES"],
    [],
]


def run_lsmem(root, opts):
    p = subprocess.run(
        [LSMEM, *opts, "--sysroot", str(root)], capture_output=True, text=True, check=False
    )
    return p.returncode, p.stdout, p.stderr


def lsmem_version():
    out = subprocess.run([LSMEM, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


@pytest.fixture(scope="module", params=DUMPS, ids=[d for d, _ in DUMPS])
def dump(request, tmp_path_factory):
    name, arch = request.param
    tarball = DATA / "dumps" / f"{name}.tar.bz2"
    original = tmp_path_factory.mktemp(f"orig-{name}")
    with tarfile.open(tarball) as tf:
        tf.extractall(original, filter="data")
    m = memscan.Machine.from_sysfs(tarball, arch=arch)
    ours = tmp_path_factory.mktemp(f"ours-{name}")
    m.export_sysfs(ours, values="sysfs")
    return name, tarball, original / name, ours, m


@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: " ".join(o) or "default")
def test_lsmem_prints_the_same_on_the_reexport(dump, opts):
    _, _, original, ours, _ = dump
    assert run_lsmem(ours, opts) == run_lsmem(original, opts)


def test_transcript_matches_upstream_expected(dump):
    name, _, _, ours, _ = dump
    if lsmem_version()[:2] != (2, 38):
        pytest.skip(f"upstream's expected files are lsmem 2.38 output; lsmem is {lsmem_version()}")
    transcript = ""
    for opts in OPTION_SETS:
        transcript += "\n---\n\n$ lsmem " + " ".join(opts) + "\n"
        rc, out, _ = run_lsmem(ours, opts)
        assert rc == 0
        transcript += out
    assert transcript == (DATA / "expected" / f"lsmem-{name}").read_text()


def test_import_keeps_the_kernels_own_values(dump):
    """Read the tarball independently of memscan: every memoryN's state, node link and removable
    must be what the imported model holds."""
    name, tarball, _, _, m = dump
    prefix = f"{name}/sys/devices/system/memory/"
    state, removable, node = {}, {}, {}
    with tarfile.open(tarball) as tf:
        for mem in tf.getmembers():
            if not mem.name.startswith(prefix):
                continue
            parts = mem.name[len(prefix) :].split("/")
            if len(parts) != 2 or not parts[0].startswith("memory"):
                continue
            block = int(parts[0][len("memory") :])
            if parts[1] == "state":
                state[block] = tf.extractfile(mem).read().decode().strip()
            elif parts[1] == "removable":
                removable[block] = int(tf.extractfile(mem).read().decode().strip())
            elif parts[1].startswith("node") and parts[1][4:].isdigit():
                node[block] = int(parts[1][4:])
    assert state, f"no memory blocks found in {tarball}"
    assert sorted(m.blocks().tolist()) == sorted(state)
    for b, s in state.items():
        assert m.block_state(b).sysfs == s, b
    assert m.sysfs_removable == removable
    secs = m.sections()
    spb = m.geometry.sections_per_block
    for b, nid in node.items():
        assert {int(n) for n in secs["nid"][b * spb : (b + 1) * spb]} == {nid}, b


def test_s390_phys_device_is_the_storage_increment(dump, tmp_path):
    """s390x phys_device = start address / storage increment (arch_get_memory_phys_device):
    from_sysfs infers the increment from the dump, and the model's own export (values="model")
    writes the same phys_device as the original for every block; x86_64 reads 0 everywhere."""
    name, tarball, original, _, m = dump
    mem = original / "sys/devices/system/memory"
    want = {int(p.name[6:]): int((p / "phys_device").read_text()) for p in mem.glob("memory*")}
    if name.startswith("s390"):
        assert m.storage_increment == 8 << 20  # 256 MiB blocks; memory1 reads 32
    else:
        assert m.storage_increment is None and set(want.values()) == {0}
    m.export_sysfs(tmp_path, kernel="5.6", values="model")
    out = tmp_path / "sys/devices/system/memory"
    got = {b: int((out / f"memory{b}/phys_device").read_text()) for b in want}
    assert got == want
