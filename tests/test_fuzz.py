"""Fuzzing every input surface with hypothesis (bounded, a few seconds each in the normal
suite; MEMSCAN_FUZZ_EXAMPLES raises the count for a long run): whatever the input, only
MemscanError subclasses escape, nothing hangs (hypothesis's deadline), and nothing is written
outside the target."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memscan
from memscan.errors import MemscanError

EXAMPLES = int(os.environ.get("MEMSCAN_FUZZ_EXAMPLES", "60"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=5000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HEX = st.integers(0, (1 << 52) + (1 << 40)).map(lambda v: f"{v:x}")
NAMES = st.sampled_from(
    [
        "System RAM",
        "Reserved",
        "Kernel code",
        "Kernel data",
        "Persistent Memory (legacy)",
        "Persistent Memory",
        "System RAM (virtio_mem)",
        "PCI Bus 0000:00",
        "ACPI Tables",
        "",
        "\x00",
    ]
)


@st.composite
def iomem_text(draw):
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        indent = "  " * draw(st.integers(0, 3))
        a, b = draw(HEX), draw(HEX)
        sep = draw(st.sampled_from(["-", "-", "--", " ", ""]))
        lines.append(f"{indent}{a}{sep}{b} : {draw(NAMES)}")
    if draw(st.booleans()):
        lines.append(draw(st.text(max_size=40)))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


@fuzz
@given(iomem_text(), st.sampled_from([None, "128M", "2G", "3M", "0"]))
def test_iomem_text(text, block_size):
    try:
        m = memscan.Machine.from_iomem(text, block_size=block_size)
    except MemscanError:
        return
    m.scan("5.5", progress=False)  # what loads, scans


SIZE = st.one_of(
    st.integers(-(1 << 20), 1 << 45),
    st.sampled_from(["128M", "4K", "1G", "0x1000", "3M", "1T", "-1", "x", ""]),
)


@st.composite
def layout_dict(draw):
    ranges = [
        {
            "start": draw(st.one_of(st.integers(-1, 1 << 44), st.sampled_from(["4G", "x"]))),
            "size": draw(SIZE),
            "kind": draw(st.sampled_from(["ram", "reserved", "pmem", "device", "rom", 3])),
            **({"nid": draw(st.integers(-1, 4))} if draw(st.booleans()) else {}),
        }
        for _ in range(draw(st.integers(0, 4)))
    ]
    d = {
        "arch": draw(st.sampled_from(["x86_64", "arm64", "ppc64", "s390x", "mips", 7])),
        "ranges": ranges,
    }
    if draw(st.booleans()):
        d["block_size"] = draw(SIZE)
    if draw(st.booleans()):
        d["geometry"] = {
            draw(
                st.sampled_from(
                    ["page_shift", "section_size_bits", "pageblock_order", "max_order", "bogus"]
                )
            ): draw(st.integers(-2, 70))
        }
    if draw(st.booleans()):
        d["offline_blocks"] = draw(st.lists(st.integers(-1, 1 << 20), max_size=3))
    if draw(st.booleans()):
        d["zones"] = [
            {
                "nid": draw(st.integers(-1, 3)),
                "zone": draw(
                    st.sampled_from(["DMA", "DMA32", "Normal", "Movable", "Device", "Highmem", "?"])
                ),
                "start_pfn": draw(st.integers(-1, 1 << 32)),
                "end_pfn": draw(st.integers(-1, 1 << 32)),
            }
        ]
    return d


@fuzz
@given(layout_dict())
def test_layout_dict(d):
    try:
        m = memscan.Machine.from_layout(d)
    except MemscanError:
        return
    m.scan("6.1", progress=False)
    ids = m.blocks()
    if len(ids):
        m.offline(int(ids[0]), "5.5")


VALUES = st.one_of(
    st.sampled_from(
        [
            "online\n",
            "offline\n",
            "going-offline\n",
            "1\n",
            "0\n",
            "Normal\n",
            "DMA32 Normal\n",
            "none\n",
            "8000000\n",
            "\n",
            "",
        ]
    ),
    st.text(max_size=20),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)


@st.composite
def sysfs_files(draw):
    files = {"sys/devices/system/memory/block_size_bytes": draw(VALUES | st.just("8000000\n"))}
    for _ in range(draw(st.integers(0, 4))):
        b = draw(st.integers(0, 40))
        for attr in draw(
            st.sets(
                st.sampled_from(
                    ["phys_index", "state", "removable", "valid_zones", "phys_device", "online"]
                )
            )
        ):
            files[f"sys/devices/system/memory/memory{b}/{attr}"] = draw(VALUES)
    return files


def _write_tree(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, errors="surrogateescape")


@fuzz
@given(sysfs_files())
def test_sysfs_directory_and_tarball(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("tree")
    _write_tree(root, files)
    around = sorted(os.listdir(root.parent))
    for src in (root, _tar(root, root.parent / f"{root.name}.tar.gz")):
        try:
            m = memscan.Machine.from_sysfs(src)
        except MemscanError:
            continue
        m.scan("5.5", progress=False)
    # nothing but the tarball was added beside the tree
    assert sorted(os.listdir(root.parent)) == sorted(around + [f"{root.name}.tar.gz"])


def _tar(root, out):
    with tarfile.open(out, "w:gz") as t:
        t.add(root / "sys", arcname="sys")
    return out


@fuzz
@given(
    st.binary(max_size=64),
    st.sampled_from(["meta.json", "proc/iomem", "proc/zoneinfo", "proc/kpageflags", "sys/x"]),
)
def test_snapshot_tarball(tmp_path_factory, blob, member):
    d = tmp_path_factory.mktemp("snap")
    files = {
        "meta.json": json.dumps({"arch": "x86_64", "page_size": 4096}).encode(),
        "proc/iomem": b"00001000-3fffffff : System RAM\n",
        "proc/zoneinfo": b"Node 0, zone    DMA32\n  spanned  262143\n  start_pfn:           1\n",
        "sys/devices/system/memory/block_size_bytes": b"8000000\n",
        "sys/devices/system/memory/memory0/state": b"online\n",
    }
    files[member] = blob
    out = d / "s.tar.gz"
    with tarfile.open(out, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    try:
        memscan.Machine.from_snapshot(out)
    except MemscanError:
        pass


@fuzz
@given(st.lists(st.integers(0, (1 << 64) - 1), max_size=300), st.integers(0, 1 << 19))
def test_kpageflags_words(words, start):
    m = memscan.Machine.from_iomem("00001000-3fffffff : System RAM\n", block_size="128M")
    arr = np.array(words, dtype=np.uint64)
    from memscan.kpageflags import import_words

    try:
        import_words(m, arr, start)
    except MemscanError:
        return
    m.scan("5.5", progress=False)
    m.offline(3, "6.1")


ARG = st.one_of(
    st.integers(-(1 << 65), 1 << 65), st.floats(allow_nan=True), st.text(max_size=5), st.none()
)


@fuzz
@given(
    st.sampled_from(
        [
            "removable",
            "offline",
            "valid_zones",
            "page",
            "pages",
            "page_bytes",
            "set_pages",
            "is_mem_section_removable",
            "online",
            "set_block_state",
            "block_state",
        ]
    ),
    st.lists(ARG, min_size=1, max_size=3),
    st.sampled_from(["5.5", "5.4+debug", "6.1", "7.0", "", "5.6-rc9"]),
)
def test_api_arguments(name, args, kernel):
    m = _API_MACHINE
    fn = getattr(m, name)
    try:
        if name in ("removable", "offline", "valid_zones", "is_mem_section_removable"):
            fn(*args[:2], kernel) if name == "is_mem_section_removable" else fn(args[0], kernel)
        else:
            fn(*args)
    except MemscanError:
        pass
    except TypeError as e:
        # a wrong number of arguments is Python's own TypeError, not bad input to memscan
        if "argument" not in str(e):
            raise


_API_MACHINE = memscan.Machine.from_iomem("00001000-3fffffff : System RAM\n", block_size="128M")


@pytest.mark.parametrize("threads", ["1", "2"])
def test_same_seed_same_pages_across_thread_counts(threads, tmp_path):
    """Deterministic: the same seed gives byte-identical pages and results whatever
    RAYON_NUM_THREADS is (in a child process, so the pool is built with that count)."""
    import subprocess
    import sys

    code = (
        "import hashlib, memscan;"
        "m = memscan.Machine.synthetic('64G', block_size='128M').populate('fragmented', seed=7);"
        "h = hashlib.sha256();"
        "[h.update(m.pages(int(b)).tobytes()) for b in m.blocks()];"
        "s = m.scan('5.5', progress=False);"
        "h.update(s.value.tobytes()); h.update(s.struct_pages_read.tobytes());"
        "print(h.hexdigest())"
    )
    env = dict(os.environ, RAYON_NUM_THREADS=threads)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    ref = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, RAYON_NUM_THREADS="3"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == ref and len(out) == 64


def test_threads_mixing_operations_give_the_serial_answers():
    """8 threads mixing scans, removable, dry-run offlines, offline_many, valid_zones,
    predict and page views on one machine give the answers a serial run gives."""
    from concurrent.futures import ThreadPoolExecutor

    m = memscan.Machine.synthetic("32G", block_size="128M").populate("fragmented", seed=2)
    ids = [int(b) for b in m.blocks()][::7]

    def work(i):
        b = ids[i % len(ids)]
        return (
            m.removable(b, "5.5").value,
            m.offline(b, "6.1").errno,
            m.valid_zones(b, "6.1"),
            int(m.pages(b).sum()),
            m.scan("5.5", blocks=[b], progress=False).value.tolist(),
            [o.errno for o in m.offline_many([b], "5.5")],
        )

    serial = [work(i) for i in range(48)]
    with ThreadPoolExecutor(8) as ex:
        parallel = list(ex.map(work, range(48)))
    assert parallel == serial
    assert m.predict().removable_pre.tolist() == m.predict().removable_pre.tolist()
