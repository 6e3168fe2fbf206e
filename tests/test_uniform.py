"""Uniform sections (every page one byte, held compact) are tested in O(1); the answers and
the struct page reads must be exactly the page-by-page ones (the same pages made dense)."""

from __future__ import annotations

import numpy as np
import pytest

import memscan
from memscan import PageKind


def pair(kind, zone_movable=False):
    """The same machine twice (1 GiB at 4 GiB, 8 blocks; ZONE_MOVABLE or Normal): pages
    uniform (compact) and the same bytes dense."""
    start = (4 << 30) >> 12
    zone = "Movable" if zone_movable else "Normal"
    layout = {
        "arch": "x86_64",
        "block_size": "128M",
        "ranges": [{"start": 4 << 30, "size": "1G", "kind": "ram"}],
        "zones": [{"nid": 0, "zone": zone, "start_pfn": start, "end_pfn": start + 0x40000}],
    }
    out = []
    for dense in (False, True):
        m = memscan.Machine.from_layout(layout)
        ppb = m.geometry.pages_per_block
        for b in m.blocks():
            if dense:
                m.write_pages(int(b) * ppb, np.full(ppb, int(kind), dtype=np.uint8))
            else:
                m.set_pages(int(b) * ppb, ppb, kind)
        out.append(m)
    return out


@pytest.mark.parametrize(
    "kind",
    [
        PageKind.LRU,
        PageKind.FREE,
        PageKind.MOVABLE,
        PageKind.PINNED,
        PageKind.UNMOVABLE,
        PageKind.OFFLINE,
        PageKind.HWPOISON,
        PageKind.RESERVED,
    ],
)
@pytest.mark.parametrize("movable", [False, True])
def test_uniform_sections_scan_as_dense_ones(kind, movable):
    uni, dense = pair(kind, movable)
    assert uni.memory_bytes() < dense.memory_bytes()  # the first really is compact
    for k in ("5.4", "5.5", "5.6-rc"):
        a, b = uni.scan(k, progress=False), dense.scan(k, progress=False)
        assert a.value.tolist() == b.value.tolist(), k
        assert a.struct_pages_read.tolist() == b.struct_pages_read.tolist(), k
    for k in ("5.5", "6.1"):
        for blk in uni.blocks()[:6]:
            x, y = uni.offline(int(blk), k), dense.offline(int(blk), k)
            assert (x.errno, x.reason, x.pfn, x.struct_pages_read) == (
                y.errno,
                y.reason,
                y.pfn,
                y.struct_pages_read,
            ), (k, int(blk))
