"""Raw struct pages (5.4.59 x86_64 layout) decoded into page kinds: Machine.import_memmap.

Each struct page is built field by field as 5.4.59 lays it out (src/memmap.rs); the kind it
must give follows has_unmovable_pages' reading of those fields."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from memscan import Machine, PageKind
from memscan.errors import ArgumentError, ParseError

VMEMMAP = 0xFFFF_EA00_0000_0000
PG_LRU, PG_SLAB, PG_RESERVED, PG_HEAD, PG_SWAPBACKED = 1 << 4, 1 << 9, 1 << 12, 1 << 16, 1 << 19
NOTYPE = 0xFFFFFFFF  # _mapcount -1: no page type, not mapped


#: the test blocks lie in ZONE_NORMAL (index 2) of node 0 (the synthetic machine's only zone)
NORMAL = 2


def links(zone=NORMAL, node=0, nodes_shift=6, zones_width=3):
    """The node and zone bits set_page_links() puts at the top of flags (SPARSEMEM_VMEMMAP)."""
    node_bits = node << (64 - nodes_shift) if nodes_shift else 0
    return node_bits | zone << (64 - nodes_shift - zones_width)


def sp(flags=0, w1=0, w2=0, mapping=0, private=0, ptype=NOTYPE, ref=0, link=None):
    flags |= links() if link is None else link
    return struct.pack("<QQQQQQIiQ", flags, w1, w2, mapping, 0, private, ptype, ref, 0)


def machine_and_base():
    m = Machine.synthetic("1G", block_size="128M")
    b = int(m.blocks()[-2])
    return m, b * m.geometry.pages_per_block


def kinds(m, base, n):
    return [PageKind(m.page(base + i) & 15) for i in range(n)]


def test_each_field_gives_its_kind():
    m, base = machine_and_base()
    lru_next = VMEMMAP + 64 * (base + 100)  # a list pointer, not a tail mark
    pages = [
        sp(ptype=NOTYPE & ~0x80, private=1),  # PageBuddy, order 1 ...
        sp(),  # ... and its other page (all zero: left as modeled)
        sp(w1=lru_next, ref=0),  # refcount 0, not buddy: a per-CPU free page
        sp(flags=PG_LRU | PG_SWAPBACKED, mapping=0xFFFF888000001001, ptype=0, ref=1),  # LRU anon
        sp(flags=PG_SWAPBACKED, mapping=0xFFFF888000001001, ptype=0, ref=2),  # in a pagevec
        sp(flags=PG_SLAB, mapping=0xFFFF888000002000, ref=1),  # slab
        sp(flags=PG_RESERVED, ref=1),  # PG_reserved
        sp(mapping=0xFFFF888000003002, ref=1),  # __PageMovable (mapping & 3 == 2)
        # a compound slab of order 1: head, then a tail pointing at it (dtor 1, order 1)
        sp(flags=PG_SLAB | PG_HEAD, mapping=0xFFFF888000002000, ref=1),
        sp(w1=VMEMMAP + 64 * (base + 8) + 1, w2=0x0101, ref=0),
    ]
    st = m.import_memmap(b"".join(pages), base)
    assert st["pages"] == len(pages) and st["pcp_free"] == 1 and st["lru_pagevec"] == 1
    assert kinds(m, base, len(pages)) == [
        PageKind.BUDDY,
        PageKind.FREE,
        PageKind.FREE,
        PageKind.LRU,
        PageKind.UNMOVABLE,
        PageKind.UNMOVABLE,
        PageKind.RESERVED,
        PageKind.MOVABLE,
        PageKind.UNMOVABLE,
        PageKind.THP_TAIL,  # a refcount-0 compound tail
    ]
    assert m.page(base) >> 4 == 1  # the buddy order from page->private


def test_pin_bias_gives_pinned():
    """pin_user_pages() (v5.7+, io_uring fixed buffers) adds GUP_PIN_COUNTING_BIAS (1024) per
    pin to an order-0 page's refcount: references beyond the map count by 1024 or more are a
    pin; 1024 mappings of a page cache page are not."""
    m, base = machine_and_base()
    anon, file = 0xFFFF888000001001, 0xFFFF888000004000
    lru = PG_LRU | PG_SWAPBACKED
    pages = [
        sp(flags=lru, mapping=anon, ptype=0, ref=1 + 1024),  # mapped once, pinned once
        sp(flags=lru, mapping=anon, ptype=0, ref=1 + 1023),  # 1023 extra references
        sp(flags=PG_LRU, mapping=file, ptype=1999, ref=2001),  # 2000 mappings + page cache
        sp(flags=PG_LRU, mapping=file, ptype=NOTYPE, ref=1 + 2048),  # unmapped, pinned twice
    ]
    st = m.import_memmap(b"".join(pages), base)
    assert st["pinned"] == 2
    assert kinds(m, base, len(pages)) == [
        PageKind.PINNED,
        PageKind.LRU,
        PageKind.LRU,
        PageKind.PINNED,
    ]


def test_hugetlb_and_thp_by_destructor():
    m, base = machine_and_base()
    nine = 512

    def compound(dtor, ref, flags=PG_HEAD):
        head = base if dtor == 2 else base + nine
        out = [sp(flags=flags, ref=ref)]
        out.append(sp(w1=VMEMMAP + 64 * head + 1, w2=dtor | (9 << 8)))
        out += [sp(w1=VMEMMAP + 64 * head + 1)] * (nine - 2)
        return out

    raw = b"".join(compound(2, 0) + compound(3, 1, PG_HEAD | PG_LRU))
    m.import_memmap(raw, base)
    assert PageKind(m.page(base) & 15) == PageKind.HUGETLB_HEAD
    assert m.page(base) >> 4 & 8  # refcount 0: free in the pool
    assert PageKind(m.page(base + 5) & 15) == PageKind.HUGETLB_TAIL
    assert PageKind(m.page(base + nine) & 15) == PageKind.THP_HEAD
    assert PageKind(m.page(base + nine + 7) & 15) == PageKind.THP_TAIL


def test_offline_sections_are_left_alone_and_bad_input_refused():
    m, base = machine_and_base()
    assert m.offline(base // m.geometry.pages_per_block, "6.1", dry_run=False).errno is None
    before = m.page(base)
    m.import_memmap(sp(flags=PG_SLAB, ref=1), base)
    assert m.page(base) == before
    with pytest.raises(ParseError, match="64-byte struct pages"):
        m.import_memmap(b"x" * 65, base)
    with pytest.raises(ArgumentError, match="not decoded"):
        m.import_memmap(sp(), base, layout="4.19-x86_64")
    with pytest.raises(ArgumentError, match="uint8"):
        m.import_memmap(np.zeros(8, dtype=np.uint64), base)
    from memscan.errors import PfnRangeError

    with pytest.raises(PfnRangeError):
        m.import_memmap(sp(), m.geometry.max_pfn)


def test_node_and_zone_bits_of_another_layout_are_refused_not_decoded():
    """A struct page names its node and zone (page-flags-layout.h): the decode accepts the
    widths a 5.4/6.1 x86_64 config can give (Debian 6.1's NODES_SHIFT 10 as our 5.4's 6) and,
    given the config's NODES_SHIFT, refuses pages whose bits do not fit it, before writing."""
    m, base = machine_and_base()
    assert m.zones() == [(0, "Normal", 1 << 20, 1310720)]
    slab = dict(flags=PG_SLAB, mapping=0xFFFF888000002000, ref=1)
    for ns in (0, 6, 10):
        raw = sp(**slab, link=links(nodes_shift=ns)) * 4
        st = m.copy().import_memmap(raw, base)
        assert st["layout_checked"] == 4 and (ns, 3) in st["layout_fits"]
        assert m.copy().import_memmap(raw, base, nodes_shift=ns)["layout_fits"] == [(ns, 3)]
    before = [m.page(base + i) for i in range(4)]
    wrong_zone = sp(**slab, link=links(zone=1)) * 4  # ZONE_DMA32 where the machine has Normal
    with pytest.raises(
        ArgumentError, match=r"4 of 4 initialised pages .*NODES_SHIFT 6.* zone Normal"
    ):
        m.import_memmap(wrong_zone, base, nodes_shift=6)
    # a lone zone bit also reads as another zone one place lower: without the config that
    # is ambiguous, and the widths it fits say so
    fits = m.copy().import_memmap(wrong_zone, base)["layout_fits"]
    assert (6, 3) not in fits and (7, 3) in fits
    wrong_node = sp(**slab, link=links(node=1)) * 4  # node 1 on a one-node machine
    with pytest.raises(ArgumentError, match="pfn " + hex(base)):
        m.import_memmap(wrong_node, base, nodes_shift=6)
    for bad in (11, 1 << 40):
        with pytest.raises(ArgumentError, match=f"nodes_shift {bad}"):
            m.import_memmap(wrong_node, base, nodes_shift=bad)
    assert [m.page(base + i) for i in range(4)] == before
    # reserved pages (a 5.x hole's memmap: node 0, zone 0 anywhere) are not held against it
    st = m.import_memmap(sp(flags=PG_RESERVED, ref=1, link=0) * 4, base, nodes_shift=6)
    assert st["layout_checked"] == 0
