"""Bad input gets a clear exception naming the input and the problem."""

from __future__ import annotations

import pytest

import memscan
from conftest import tiny
from memscan.errors import (
    ArgumentError,
    GeometryError,
    LayoutError,
    NoSuchBlockError,
    ParseError,
    PfnRangeError,
)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("00000000-0000zzzz : System RAM\n", "iomem:1"),
        ("100000000-fffffff : System RAM\n", "below start"),
        ("100000000-1ffffffff : System RAM\n180000000-27fffffff : System RAM\n", "overlaps"),
        (
            "100000000-1ffffffff : System RAM\n    300000000-3000fffff : Kernel code\n",
            "parent is missing",
        ),
        (
            "100000000-1ffffffff : System RAM\n  300000000-3000fffff : Kernel code\n",
            "not inside its parent",
        ),
        ("00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n", "without root"),
        ("00000000-00000fff : Reserved\n", "no 'System RAM' line"),
        ("", "no iomem lines"),
    ],
)
def test_malformed_iomem(text, needle):
    with pytest.raises(ParseError, match=needle) as e:
        memscan.Machine.from_iomem(text, source="iomem")
    assert isinstance(e.value, ValueError)  # catchable as ValueError too


def test_unknown_arch_and_impossible_geometry():
    with pytest.raises(GeometryError, match="unknown arch"):
        memscan.Machine.synthetic("1G", arch="riscv")
    with pytest.raises(GeometryError, match="not a power of two"):
        memscan.Machine.synthetic("6G", block_size="3G")
    with pytest.raises(GeometryError, match="smaller than a section"):
        memscan.Machine.synthetic("1G", block_size="64M")
    with pytest.raises(GeometryError, match="larger than a section"):
        tiny(geometry={"pageblock_order": 16})
    with pytest.raises(GeometryError, match="unknown geometry key"):
        tiny(geometry={"pageblok_order": 9})
    with pytest.raises(ArgumentError, match="page_size"):
        memscan.Machine.synthetic("4G", arch="arm64", page_size="8K")


def test_overlapping_ranges_and_bad_layouts(tmp_path):
    with pytest.raises(LayoutError, match="overlap"):
        tiny(
            ranges=[
                {"start": 4 << 30, "size": "256M", "kind": "ram"},
                {"start": (4 << 30) + (128 << 20), "size": "256M", "kind": "ram"},
            ]
        )
    with pytest.raises(LayoutError, match="not inside one System RAM"):
        tiny(
            ranges=[
                {"start": 4 << 30, "size": "256M", "kind": "ram"},
                {"start": 8 << 30, "size": "4K", "kind": "reserved"},
            ]
        )
    with pytest.raises(LayoutError, match="unknown kind"):
        tiny(ranges=[{"start": 4 << 30, "size": "256M", "kind": "rom"}])
    with pytest.raises(LayoutError, match="unknown layout keys"):
        memscan.Machine.from_layout({"arch": "x86_64", "rangez": []})
    with pytest.raises(LayoutError, match="no RAM"):
        memscan.Machine.from_layout({"arch": "x86_64", "ranges": []})
    with pytest.raises(LayoutError, match="outside every zone"):
        tiny(zones=[{"nid": 0, "zone": "Normal", "start_pfn": 0x100000, "end_pfn": 0x108000}])
    with pytest.raises(LayoutError, match="unknown zone"):
        tiny(zones=[{"nid": 0, "zone": "Highmem", "start_pfn": 0x100000, "end_pfn": 0x110000}])
    p = tmp_path / "layout.json"
    p.write_text("{not json")
    with pytest.raises(LayoutError, match="layout.json: not valid JSON"):
        memscan.Machine.from_layout(p)
    with pytest.raises(LayoutError, match="cannot read"):
        memscan.Machine.from_layout(tmp_path / "missing.json")
    with pytest.raises(NoSuchBlockError, match="no present RAM"):
        tiny(offline_blocks=[5])


def test_out_of_range_block_ids(m):
    for b in (0, 31, 34, 10**9):
        with pytest.raises(NoSuchBlockError, match=f"memory block {b} does not exist"):
            m.removable(b, "5.5")
    with pytest.raises(NoSuchBlockError):
        m.scan("5.5", blocks=[32, 99])
    with pytest.raises(NoSuchBlockError):
        m.pages(10**6)
    with pytest.raises(LookupError):
        m.block_state(-1)


def test_bad_kernels_pfns_and_workloads(m):
    for k in ("5.7", "4.19", "5.5.14", "five", "5.6-rc9"):
        with pytest.raises(ArgumentError):
            m.removable(32, k)
    with pytest.raises(PfnRangeError):
        m.set_pages(m.geometry.max_pfn, 1, memscan.PageKind.LRU)
    with pytest.raises(PfnRangeError):
        m.page_bytes(0, 0)
    with pytest.raises(ArgumentError, match="unknown workload preset"):
        m.populate("busy")
    with pytest.raises(ArgumentError, match="not a fraction"):
        m.populate(memscan.Workload(free=1.5))
    with pytest.raises(ArgumentError, match="exceeds 1"):
        m.populate(memscan.Workload(free=0.7, unmovable=0.5))
    with pytest.raises(ArgumentError, match="hugetlb_hstate"):
        m.populate(memscan.Workload(hugetlb=0.1, hugetlb_hstate=5))
    with pytest.raises(ArgumentError):
        m.set_pages(0x100000, 1, memscan.PageKind.BUDDY, 16)
    with pytest.raises(ArgumentError):
        m.set_block_state(32, "gone")
    with pytest.raises(ArgumentError):
        memscan.parse_size("12Q")


def test_bad_driver_managed_ram():
    """A driver on a range that is not RAM, or a driver-managed range outside the machine or
    over another, is refused with what is wrong."""
    ram = {"start": 4 << 30, "size": "256M", "kind": "ram"}
    with pytest.raises(LayoutError, match=r"ranges\[1\]\.driver"):
        memscan.Machine.from_layout(
            {"ranges": [ram, {"start": 5 << 30, "size": "128M", "kind": "device", "driver": "x"}]}
        )
    with pytest.raises(LayoutError, match=r"ranges\[0\]\.driver"):
        memscan.Machine.from_layout({"ranges": [dict(ram, driver=7)]})
    m = memscan.Machine.from_layout({"ranges": [ram]})
    with pytest.raises(LayoutError, match="beyond max_pfn"):
        m._core.set_driver_managed([(0x100000, 0x900000, "virtio_mem")])
    with pytest.raises(LayoutError, match="overlap at pfn 0x104000"):
        m._core.set_driver_managed(
            [(0x100000, 0x108000, "virtio_mem"), (0x104000, 0x108000, "kmem")]
        )
    with pytest.raises(LayoutError, match="empty"):
        m._core.set_driver_managed([(0x100000, 0x100000, "virtio_mem")])
