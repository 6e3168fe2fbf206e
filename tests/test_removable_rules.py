"""Each rule of the pre-patch removable scan on a hand-built layout (kernel-semantics.md 2-4)."""

from __future__ import annotations

import pytest

import memscan
from conftest import PFN0, tiny
from memscan import MigrateType, PageKind, reference

SEC = 32768  # pages per x86 section
PB = 512


def lru_machine(**kw):
    m = tiny(**kw)
    m.set_pages(PFN0, 2 * SEC, PageKind.LRU)
    return m


def test_all_lru_normal_is_removable_and_reads_every_page():
    m = lru_machine()
    r = m.removable(32, "5.5")
    assert r.value == 1 and r.fault is None and r.scanned
    # per pageblock: nid/zone read + 512 pages + next_active_pageblock; plus page_zone per section
    assert r.pageblocks_visited == SEC // PB
    assert r.struct_pages_read == 1 + (SEC // PB) * (1 + PB + 1)
    assert r.sections_scanned == 1


def test_single_unmovable_page_in_normal_makes_block_not_removable():
    m = lru_machine()
    m.set_pages(PFN0 + 1000, 1, PageKind.UNMOVABLE)
    r = m.removable(32, "5.5")
    assert r.value == 0
    assert r.first_unmovable["pfn"] == PFN0 + 1000
    assert r.first_unmovable["reason"] == "unmovable page"
    # scan stopped in the second pageblock, at page 1000-512 of it
    assert r.pageblocks_visited == 2
    assert r.struct_pages_read == 1 + (1 + PB + 1) + (1 + (1000 - PB) + 1)


def movable_zone_machine():
    z = [{"nid": 0, "zone": "Movable", "start_pfn": PFN0, "end_pfn": PFN0 + 2 * SEC}]
    m = tiny(zones=z)
    m.set_pages(PFN0, 2 * SEC, PageKind.LRU)
    return m


def test_unmovable_page_in_zone_movable_passes_the_shortcut():
    m = movable_zone_machine()
    m.set_pages(PFN0 + 1000, 1, PageKind.UNMOVABLE)
    r = m.removable(32, "5.5")
    assert r.value == 1


def test_zone_movable_reads_every_page_even_free_buddies():
    m = movable_zone_machine()
    m.set_pages(PFN0, SEC, PageKind.FREE)
    for p in range(PFN0, PFN0 + SEC, 1024):
        m.set_pages(p, 1, PageKind.BUDDY, 10)
    r = m.removable(32, "5.5")
    assert r.value == 1
    # next_active_pageblock still skips the order-10 buddies (every other pageblock is visited),
    # but has_unmovable_pages reads all 512 pages of each visited pageblock: no buddy skip.
    assert r.pageblocks_visited == SEC // 1024
    assert r.struct_pages_read == 1 + (SEC // 1024) * (1 + PB + 1)
    # the same pages in Normal: the buddy is skipped inside has_unmovable_pages too
    n = tiny()
    n.set_pages(PFN0, SEC, PageKind.FREE)
    for p in range(PFN0, PFN0 + SEC, 1024):
        n.set_pages(p, 1, PageKind.BUDDY, 10)
    rn = n.removable(32, "5.5")
    assert rn.value == 1
    assert rn.struct_pages_read == 1 + (SEC // 1024) * (1 + 1 + 1)


def test_reserved_page_in_zone_movable_is_unmovable():
    m = movable_zone_machine()
    m.set_pages(PFN0 + 7, 1, PageKind.RESERVED)
    r = m.removable(32, "5.5")
    assert r.value == 0
    assert r.first_unmovable == {
        "pfn": PFN0 + 7,
        "reason": "unmovable page",
        "movable_zone_warning": True,
    }
    # 5.6 moved the WARN into set_migratetype_isolate(): the removable scan no longer warns
    r = m.removable(32, "5.6-rc3")
    assert r.value == 0 and r.first_unmovable["movable_zone_warning"] is False


def test_cma_pageblock_reason_by_version():
    m = lru_machine()
    m.set_migratetype(PFN0 + PB, MigrateType.CMA)
    r55 = m.removable(32, "5.5")
    assert r55.value == 0 and r55.first_unmovable["reason"] == "CMA page"
    assert r55.first_unmovable["pfn"] == PFN0 + PB
    r56 = m.removable(32, "5.6-rc")
    assert r56.value == 0 and r56.first_unmovable["reason"] == "unmovable page"
    # the CMA test reads the pageblock bitmap, not struct pages
    assert r55.struct_pages_read == 1 + (1 + PB + 1) + 1


@pytest.mark.parametrize("migratable,expect", [(True, 1), (False, 0)])
def test_hugetlb_skip_and_migratability(migratable, expect):
    m = tiny(hstates=[(9, migratable), (18, True)])
    m.set_pages(PFN0, 2 * SEC, PageKind.LRU)
    for p in range(PFN0, PFN0 + SEC, PB):
        m.set_pages(p, 1, PageKind.HUGETLB_HEAD, 0)
        m.set_pages(p + 1, PB - 1, PageKind.HUGETLB_TAIL, 0)
    r = m.removable(32, "5.5")
    assert r.value == expect
    if migratable:
        # one struct page read per hugetlb page (then skip to its end)
        assert r.struct_pages_read == 1 + (SEC // PB) * (1 + 1 + 1)


def test_hugetlb_tail_at_pageblock_start_skips_to_end_of_gigantic_page():
    # A 1 GiB hugetlb page (hstate 1) covering the whole section: every pageblock starts on a tail.
    m = tiny(ranges=[{"start": 4 << 30, "size": "1G", "kind": "ram"}], block_size="1G")
    m.set_pages(PFN0, 1, PageKind.HUGETLB_HEAD, 1)
    m.set_pages(PFN0 + 1, (1 << 18) - 1, PageKind.HUGETLB_TAIL, 1)
    r = m.removable(4, "5.5")
    assert r.value == 1
    # per section one page_zone read; per pageblock: nid/zone, one page, next_active_pageblock
    assert r.struct_pages_read == 8 * (1 + 64 * 3)


def test_first_page_zone_ends_inside_the_section_clamps_the_scan():
    # Normal ends half-way through section 0x20; Movable holds the rest.
    half = PFN0 + SEC // 2
    z = [
        {"nid": 0, "zone": "Normal", "start_pfn": PFN0, "end_pfn": half},
        {"nid": 0, "zone": "Movable", "start_pfn": half, "end_pfn": PFN0 + 2 * SEC},
    ]
    m = tiny(zones=z)
    m.set_pages(PFN0, 2 * SEC, PageKind.LRU)
    m.set_pages(half + 100, 1, PageKind.UNMOVABLE)  # never looked at: beyond the clamp
    r = m.removable(32, "5.5")
    assert r.value == 1
    assert r.pageblocks_visited == (SEC // 2) // PB


def test_vacuous_true_when_first_page_zone_ends_before_the_section():
    m = lru_machine()
    m.set_pages(PFN0 + 5, 1, PageKind.UNMOVABLE)
    # A zeroed first struct page reads node 0 / zone DMA, which ends far below 4 GiB.
    m.set_pages(PFN0, 1, PageKind.ZEROED)
    r = m.removable(32, "5.5")
    assert r.value == 1
    assert r.pageblocks_visited == 0 and r.struct_pages_read == 1
    assert r.note is not None and r.note.kind == "wrong-answer"


def test_pseries_zeroed_struct_page_reads_zone_normal():
    """pseries has no ZONE_DMA (arch/powerpc/Kconfig, v5.5-rc5 and 6.1-rc6: only for
    PPC_BOOK3E_64) and no ZONE_DMA32, so zone index 0 of a zeroed struct page is ZONE_NORMAL:
    at node 0 that is the page's real zone, and the 5.5 scan goes on to the unmovable page
    (on x86 the same page reads ZONE_DMA and the section passes vacuously, above)."""
    m = tiny(arch="ppc64", block_size="256M", ranges=[{"start": 0, "size": "1G", "kind": "ram"}])
    pfn = (256 << 20) >> 16  # block 1, 64 KiB pages
    n = (256 << 20) >> 16
    m.set_pages(pfn, n, PageKind.LRU)
    m.set_pages(pfn + 7, 1, PageKind.UNMOVABLE)
    m.set_pages(pfn, 1, PageKind.ZEROED)
    r = m.removable(1, "5.5")
    assert r.value == 0 and r.note is None
    assert reference.removable(m, 1, "5.5").value == 0


def test_offline_and_going_offline_blocks_read_1_without_scan():
    m = lru_machine()
    m.set_pages(PFN0 + 5, 1, PageKind.UNMOVABLE)
    for state in ("offline", "going-offline"):
        m.set_block_state(32, state)
        r = m.removable(32, "5.5")
        assert r.value == 1 and not r.scanned and r.struct_pages_read == 0
    m.set_block_state(32, "online")
    assert m.removable(32, "5.5").value == 0


def test_hot_added_offline_block_has_uninitialised_memmap_but_reads_1():
    m = tiny(offline_blocks=[33])
    assert m.block_state(33) == memscan.BlockState.OFFLINE
    assert m.page(PFN0 + SEC) & 0xF == PageKind.UNINIT
    assert m.removable(33, "5.5+debug").value == 1


def test_no_short_circuit_between_sections_and_absent_sections_skipped():
    # 512 MiB block: sections 0x20 (RAM), 0x21 (absent), 0x22 (RAM), 0x23 (absent)
    ranges = [
        {"start": 4 << 30, "size": "128M", "kind": "ram"},
        {"start": (4 << 30) + (256 << 20), "size": "128M", "kind": "ram"},
    ]
    m = tiny(ranges=ranges, block_size="512M")
    m.set_pages(PFN0, SEC, PageKind.UNMOVABLE)
    m.set_pages(PFN0 + 2 * SEC, SEC, PageKind.LRU)
    r = m.removable(8, "5.5")
    assert r.value == 0
    assert r.sections_scanned == 2  # the second RAM section is scanned although ret is already 0


def test_next_active_pageblock_skips_by_buddy_order():
    m = lru_machine()
    m.set_pages(PFN0, 1024, PageKind.FREE)
    m.set_pages(PFN0, 1, PageKind.BUDDY, 10)
    r = m.removable(32, "5.5")
    assert r.value == 1
    # the order-10 buddy covers two pageblocks: the second is never visited
    assert r.pageblocks_visited == SEC // PB - 1


def test_next_active_pageblock_bug_on_unaligned_pfn():
    m = lru_machine()
    d = m.is_mem_section_removable(PFN0 + 1, 1024, "5.5")
    assert d["value"] is None
    assert d["fault"].function == "next_active_pageblock" and d["fault"].kind == "bug"


def test_hwpoison_is_skipped_under_memory_offline():
    m = lru_machine()
    m.set_pages(PFN0 + 3, 1, PageKind.HWPOISON)
    assert m.removable(32, "5.5").value == 1


def test_balloon_page_offline_is_unmovable_in_5_5():
    m = lru_machine()
    m.set_pages(PFN0 + 3, 1, PageKind.OFFLINE)
    assert m.removable(32, "5.5").value == 0


def test_pinned_lru_passes_the_scan():
    m = lru_machine()
    m.set_pages(PFN0 + 3, 100, PageKind.PINNED)
    assert m.removable(32, "5.5").value == 1


def test_thp_head_lru_and_tails_refcount_zero():
    m = lru_machine()
    m.set_pages(PFN0, 1, PageKind.THP_HEAD, 9)
    m.set_pages(PFN0 + 1, PB - 1, PageKind.THP_TAIL)
    assert m.removable(32, "5.5").value == 1


def test_post_patch_is_constant_and_reads_nothing():
    m = lru_machine()
    m.set_pages(PFN0 + 3, 1, PageKind.UNMOVABLE)
    for k in ("5.6", "5.6.1", "6.1", "6.1.119"):
        r = m.removable(32, k)
        assert r.value == 1 and not r.scanned and r.struct_pages_read == 0


def test_arm64_without_hotremove_in_5_5_and_5_6():
    m = memscan.Machine.synthetic("4G", arch="arm64")
    b = int(m.blocks()[0])
    assert m.removable(b, "5.5").value == 0  # stub returns false for online blocks
    assert m.removable(b, "5.6").value == 0  # IS_ENABLED(CONFIG_MEMORY_HOTREMOVE) = 0
    assert m.removable(b, "6.1").value == 1


def test_poisoned_page_inside_a_pageblock_on_each_config():
    m = lru_machine()
    m.set_pages(PFN0 + 10, 1, PageKind.UNINIT)
    assert m.removable(32, "5.5+debug").fault.kind == "bug"
    assert m.removable(32, "5.5+debug").fault.access == "PageReserved"
    r = m.removable(32, "5.5")
    assert r.value is None and r.fault.kind == "undefined"


def test_direct_is_mem_section_removable_exists_as_the_kernel_has_it():
    """5.4..5.6 have it (a stub returning false without MEMORY_HOTREMOVE, 5.6.4
    memory_hotplug.h); 6.1 has none."""
    m = lru_machine()
    assert m.is_mem_section_removable(PFN0, SEC, "5.5")["value"] == 1
    with pytest.raises(memscan.ArgumentError, match="does not exist in 6.1"):
        m.is_mem_section_removable(PFN0, SEC, "6.1")
    a = memscan.Machine.synthetic("4G", arch="arm64")  # no MEMORY_HOTREMOVE before 5.7
    p0 = int(a.blocks()[0]) * a.geometry.pages_per_block
    r = a.is_mem_section_removable(p0, a.geometry.pages_per_section, "5.5")
    assert r["value"] == 0 and r["struct_pages_read"] == 0
