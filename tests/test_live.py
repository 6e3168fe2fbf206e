"""The live sysfs: unmodified util-linux lsmem and chmem (and a plain writer) run against a
modeled machine through FUSE in a private mount namespace. Needs root, /dev/fuse, libfuse3,
mfusepy, unshare, lsmem and chmem; .ci/run installs them and sets MEMSCAN_REQUIRE_LIVE=1, so
there these tests fail rather than skip."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

import memscan

MISSING = [
    what
    for what, ok in (
        ("root", os.geteuid() == 0),
        ("/dev/fuse", os.path.exists("/dev/fuse")),
        ("unshare", shutil.which("unshare") is not None),
        ("lsmem", shutil.which("lsmem") is not None),
        ("chmem", shutil.which("chmem") is not None),
    )
    if not ok
]
try:
    import mfusepy  # noqa: F401
except (ImportError, OSError) as e:  # OSError: libfuse3 missing
    MISSING.append(f"mfusepy ({e})")
if MISSING and os.environ.get("MEMSCAN_REQUIRE_LIVE"):
    raise RuntimeError(f"MEMSCAN_REQUIRE_LIVE is set but {', '.join(MISSING)} missing")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"missing: {', '.join(MISSING)}")

from memscan import live  # noqa: E402

COLS = "RANGE,SIZE,STATE,REMOVABLE,BLOCK,NODE,ZONES"


def test_live_lsmem_prints_what_it_prints_on_the_exported_tree(tmp_path):
    """lsmem with no --sysroot, in the sandbox, reads the model as it reads an export of it
    (with on_fault="eio" the faulting memory96 read fails: lsmem says "no" for it in both)."""
    m = memscan.Machine.seed().populate("fragmented", seed=1)
    m.export_sysfs(tmp_path, kernel="5.5+debug")
    for args in (["-a", "-o", COLS], ["-J", "-a", "-o", COLS], []):
        want = subprocess.run(
            ["lsmem", "--sysroot", str(tmp_path), *args], capture_output=True, text=True
        )
        got = live.run(m, "5.5+debug", ["lsmem", *args], on_fault="eio")
        assert got["returncode"] == want.returncode == 0
        assert got["stdout"] == want.stdout, args
    s = got["summary"]
    assert s["faults"] == 1 and s["struct_pages_read"] > 0
    assert "memory96/removable" in got["dmesg"] and "PagePoisoned" in got["dmesg"]


def test_live_lsmem_is_killed_by_the_faulting_read_as_on_the_real_kernel():
    """A real 5.4.59 +debug kernel BUGs in is_mem_section_removable on the seed's shape and
    the oops kills lsmem (tests/groundtruth seed-clients); in the sandbox the live view sends
    the reader SIGSEGV at the same read. A process outside the sandbox is never signalled."""
    m = memscan.Machine.seed().populate("fragmented", seed=1)
    got = live.run(m, "5.5+debug", ["lsmem", "-a"])
    assert got["returncode"] == -signal.SIGSEGV, got["stderr"]
    killed = [o for o in got["ops"] if "killed" in o]
    assert [(o["block"], o["attr"]) for o in killed] == [(96, "removable")]
    assert "killed the reader" in got["dmesg"]
    assert not live._descends(os.getpid(), os.getpid())
    assert not live._descends(1, os.getpid())


def test_live_chmem_offlines_what_the_model_offlines():
    """chmem -d -b writes offline to each block's state: the model's offline_pages runs for
    real, chmem prints the kernel's errno for the ones that fail, and the machine's states
    are those of the same offlines made directly on a twin."""
    a = memscan.Machine.synthetic("16G").populate("fragmented", seed=3)
    b = memscan.Machine.synthetic("16G").populate("fragmented", seed=3)
    first = int(a.blocks()[0])
    ids = list(range(first + 4, first + 12))
    r = live.run(a, "6.1", ["chmem", "-d", "-b", f"{ids[0]}-{ids[-1]}"])
    failed = []
    for blk in ids:
        o = b.offline(blk, "6.1", dry_run=False)
        if not o.ok:
            failed.append((blk, o.errno))
    assert a.block_states().tolist() == b.block_states().tolist()
    assert [o["block"] for o in r["ops"] if o["op"] == "offline"] == ids
    for blk, err in failed:
        msg = os.strerror(getattr(__import__("errno"), err))
        assert f"Memory Block {blk} " in r["stderr"] and msg in r["stderr"], (blk, err)
    assert (r["returncode"] == 0) == (not failed)


@pytest.mark.parametrize("kernel", ["5.5", "6.1"])
@pytest.mark.parametrize("zone", [None, "DMA32"])
def test_live_chmem_enable_onlines_offline_blocks(kernel, zone):
    """chmem -e SIZE writes online_movable to the state of offline blocks whose valid_zones
    lists Movable (util-linux chmem.c: "by default, use zone Movable"), -z DMA32 -e writes
    online_kernel, until SIZE is online; the model onlines each into the zone the kernel
    picks, and chmem reports what it enabled. chmem 2.38.1 reads zones only where
    memory0/valid_zones exists, so RAM starts at 0 here."""
    offline = [4, 5, 6, 7]
    m = memscan.Machine.from_layout(
        {
            "arch": "x86_64",
            "block_size": "128M",
            "ranges": [{"start": 0, "size": "1G", "kind": "ram"}],
            "offline_blocks": offline,
        }
    )
    argv = (
        ["chmem", "-v", "-e", "256M"] if zone is None else ["chmem", "-v", "-z", zone, "-e", "256M"]
    )
    r = live.run(m, kernel, argv)
    assert r["returncode"] == 0, r["stderr"]
    onl = [o for o in r["ops"] if o["op"] == "online"]
    assert len(onl) == 2 and all(o["errno"] is None for o in onl)
    assert {o["wrote"] for o in onl} == {"online_kernel" if zone else "online_movable"}
    done = [o["block"] for o in onl]
    assert set(done) <= set(offline)
    for b in offline:
        want = memscan.BlockState.ONLINE if b in done else memscan.BlockState.OFFLINE
        assert m.block_state(b) == want, b
    for b in done:
        assert f"Memory Block {b} " in r["stdout"] + r["stderr"], b
        got = m.valid_zones(b, kernel)
        assert got == (zone or "Movable"), (b, got)
        assert m.offline(b, kernel).ok  # a fresh online block, all free


def test_live_stores_answer_as_state_store_does():
    """Bad strings EINVAL; offline of an offline block EINVAL; online_movable then reads
    Movable in valid_zones; read-only attributes refuse to open for writing (EACCES) even for
    root, as kernfs does."""
    m = memscan.Machine.synthetic("16G")
    blk = int(m.blocks()[-1])
    d = f"/sys/devices/system/memory/memory{blk}"
    code = f"""
import os
def w(name, text):
    try:
        fd = os.open("{d}/" + name, os.O_WRONLY)
    except OSError as e:
        return "open " + e.strerror
    try:
        os.write(fd, text.encode())
        return "ok"
    except OSError as e:
        return e.strerror
    finally:
        os.close(fd)
def r(name):
    with open("{d}/" + name) as f:
        return f.read().strip()
print(w("state", "bogus"))
print(w("online", "maybe"))
print(w("state", "offline\\n"))
print(r("state"), r("online"))
print(w("state", "offline"))
print(w("state", "online_movable"))
print(r("state"), r("valid_zones"))
print(w("removable", "1"))
"""
    r = live.run(m, "6.1", [sys.executable, "-c", code])
    assert r["returncode"] == 0, r["stderr"]
    assert r["stdout"].splitlines() == [
        "Invalid argument",
        "Invalid argument",
        "ok",
        "offline 0",
        "Invalid argument",
        "ok",
        "online Movable",
        "open Permission denied",
    ]
    assert m.block_state(blk) == memscan.BlockState.ONLINE


def test_the_sandbox_refuses_a_directory_that_is_not_the_live_mount(tmp_path):
    """Before exec the sandbox checks that what the command will see is the FUSE mount; a
    plain directory is refused and the command never runs."""
    (tmp_path / "sys/devices/system/memory").mkdir(parents=True)
    marker = tmp_path / "ran"
    r = subprocess.run(
        live.sandbox_argv(str(tmp_path), ["touch", str(marker)]),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 125 and "refusing" in r.stderr
    assert not marker.exists()


def test_a_write_in_the_sandbox_reaches_the_model_not_the_machine():
    """The command sees the model's block size and blocks; a block that only the model has
    (memory5120 and up: 640 GiB into the address space) goes offline in the model, and the
    real /sys never has it (a write that escaped would fail with ENOENT, harmlessly)."""
    real = "/sys/devices/system/memory"
    before = sorted(os.listdir(real)) if os.path.isdir(real) else None
    m = memscan.Machine.from_layout(
        {
            "arch": "x86_64",
            "block_size": "128M",
            "ranges": [{"start": 640 << 30, "size": "1G", "kind": "ram"}],
        }
    )
    blk = int(m.blocks()[0])
    assert blk == 5120
    code = (
        "import os;"
        f"print(open('{real}/block_size_bytes').read().strip());"
        f"print(sorted(x for x in os.listdir('{real}') if x.startswith('memory'))[0]);"
        f"open('{real}/memory{blk}/state', 'w').write('offline')"
    )
    r = live.run(m, "6.1", [sys.executable, "-c", code])
    assert r["returncode"] == 0, r["stderr"]
    assert r["stdout"].split() == ["8000000", f"memory{blk}"]
    assert m.block_state(blk) == memscan.BlockState.OFFLINE
    if before is not None:
        assert sorted(os.listdir(real)) == before
        assert not os.path.exists(f"{real}/memory{blk}")
    # and the mount is gone afterwards
    with open("/proc/self/mountinfo") as f:
        assert "fuse.memscan" not in f.read()


def test_memscan_run_cli_passes_the_commands_exit_code(tmp_path):
    log = tmp_path / "ops.jsonl"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "memscan",
            "run",
            "--synthetic",
            "8G",
            "--workload",
            "idle",
            "--kernel",
            "5.5",
            "--log",
            str(log),
            "--",
            "lsmem",
            "-b",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "Memory block size:" in r.stdout
    assert "memscan run: lsmem exited 0; kernel 5.5:" in r.stderr
    ops = [json.loads(x) for x in log.read_text().splitlines()]
    assert ops and all(o["op"] in ("read", "readdir") for o in ops)  # lsmem only reads
    assert sum(o["attr"] == "removable" for o in ops) == len(
        memscan.Machine.synthetic("8G").blocks()
    )


def test_real_clients_agree_with_their_emulations_and_lsmem_dies_at_the_oops():
    """tradeoff's real clients: util-linux lsmem and chmem -d through the live view make the
    reads, attempts and outcomes their emulations count, on the seed (lsmem killed at
    memory96 under 5.5+debug, its valid_zones never read) and on a synthetic machine; the
    emulated lsmem stops where the real one is killed."""
    from memscan.studies import Case, tradeoff
    from memscan.studies.real import real_clients

    cases = [
        Case("seed", memscan.Machine.seed),
        Case("4G", lambda: memscan.Machine.synthetic("4G", block_size="128M")),
    ]
    recs = tradeoff(cases, levels=(0.0, 1.0), pre="5.5+debug", post="5.6")
    real_clients(recs, cases, "5.5+debug", "5.6")
    for r in recs:
        ls, ch = r["real_lsmem_pre"], r["real_chmem_post"]
        assert ls["agrees"] and ch["agrees"], (r["machine"], r["fragmentation"], ls, ch)
        assert ls["killed"] == (r["machine"] == "seed")
        assert ls["emulated"] == {**r["lsmem_pre"]}
        assert abs(ls["kernel_ns"] - r["lsmem_pre"]["kernel_ns"]) < ls["syscalls"]  # rounding
        assert ch["emulated"] == r["chmem_post"]
    seed = [r for r in recs if r["machine"] == "seed"]
    assert all(r["lsmem_pre"]["killed_at"] == 96 for r in seed)
