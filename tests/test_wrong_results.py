"""Results that used to be silently wrong (the usability issue's first list, the fidelity
issue's offline_many bug): each input the old code turned into something else."""

from __future__ import annotations

import subprocess
import sys

import pytest

import memscan
from memscan.errors import ArgumentError
from memscan.sizes import parse_size
from memscan.sources.snapshot import parse_zoneinfo


def test_parse_size_reads_hex_and_units_and_refuses_the_rest():
    # "0xb0000000" was 0 and "0x1b0000000" 256 MiB: every B was stripped before parsing
    assert parse_size("0xb0000000") == 0xB0000000
    assert parse_size("0x1b0000000") == 0x1B0000000
    assert parse_size("2GiB") == parse_size("2G") == parse_size("2 GB") == 2 << 30
    assert parse_size("64KB") == 64 << 10
    for bad in ("1B2", "0xZZ", "12Q", "", "1.5", "-1G"):
        with pytest.raises(ArgumentError):
            parse_size(bad)


def test_zoneinfo_with_a_device_zone_loads():
    # every pmem machine (the crash's kind) prints ZONE_DEVICE; it comes from iomem instead
    text = (
        "Node 0, zone   Normal\n  pages free 1\n        spanned  32768\n  start_pfn: 1048576\n"
        "Node 0, zone   Device\n        spanned  131072\n  start_pfn: 17170432\n"
    )
    assert parse_zoneinfo(text) == [(0, "Normal", 1048576, 1048576 + 32768)]


def test_report_into_a_closed_pipe_is_quiet():
    p = subprocess.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{sys.executable} -m memscan report --synthetic 256G --block-size 128M "
            "--workload idle -a | head -1",
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0 and p.stdout.count("\n") == 1
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr


def test_offline_many_keeps_the_faults_offline_returns():
    # a poisoned struct page where v5.5 test_pages_in_a_zone samples (one per
    # MAX_ORDER_NR_PAGES): page_zone() BUGs on a debug kernel
    m = memscan.Machine.synthetic("1G", block_size="128M")
    b = int(m.blocks()[-1])
    pfn = b * m.geometry.pages_per_block + (1 << (m.geometry.max_order - 1))
    m.set_pages(pfn, 1, memscan.PageKind.UNINIT)
    one = m.offline(b, kernel="5.5+debug")
    assert one.fault is not None and one.fault.kind == "bug" and one.fault.pfn == pfn
    many = m.offline_many([b], kernel="5.5+debug")[0]
    assert (many.errno, many.reason, many.pfn) == (one.errno, one.reason, one.pfn)
    assert many.fault == one.fault  # offline_many used to drop it (fault=None)


def test_virtio_mem_ram_nested_under_its_device_is_ram():
    # 6.1 virtio-mem: its memory is "System RAM (virtio_mem)" under the device's resource;
    # it used to be dropped silently (and capture stopped reading kpageflags before it)
    text = (
        "00001000-0009fbff : System RAM\n"
        "00100000-bfffffff : System RAM\n"
        "  01000000-01e01040 : Kernel code\n"
        "  01e01041-0277b3ff : Kernel data\n"
        "140000000-17fffffff : virtio0\n"
        "  140000000-147ffffff : System RAM (virtio_mem)\n"
    )
    m = memscan.Machine.from_iomem(text, block_size="128M")
    b = 0x140000000 // (128 << 20)
    assert b in m.blocks().tolist()
    assert (b + 1) not in m.blocks().tolist()  # the rest of virtio0 is not plugged
    # the two kernel resources share pfn 0x1e01: one reserved range, not an overlap
    assert m.page(0x1E01) & 15 == memscan.PageKind.RESERVED
