"""Offlining and onlining (kernel-semantics.md 6-7, kernel-6.1-offline.md), on hand-built
layouts: every errno and reason, the decisive pfn, the work done, and the model after."""

from __future__ import annotations

import math

import pytest

import memscan
from conftest import GIB, PFN0, tiny
from memscan import MigrateType, PageKind, reference

SEC = 32768
PB = 512


def two_node(zone="Movable"):
    """Node 0: 256 MiB Normal at 4 GiB (blocks 32-33); node 1: 256 MiB at 4.25 GiB (34-35)."""
    ranges = [
        {"start": 4 << 30, "size": "256M", "kind": "ram", "nid": 0},
        {"start": (4 << 30) + (256 << 20), "size": "256M", "kind": "ram", "nid": 1},
    ]
    zones = [
        {"nid": 0, "zone": "Normal", "start_pfn": PFN0, "end_pfn": PFN0 + 2 * SEC},
        {"nid": 1, "zone": zone, "start_pfn": PFN0 + 2 * SEC, "end_pfn": PFN0 + 4 * SEC},
    ]
    return tiny(ranges=ranges, zones=zones)


def user_pages(m):
    c = m.kind_counts()
    return {
        "lru": c["LRU"] + c["THP_HEAD"] + c["THP_TAIL"],
        "movable": c["MOVABLE"],
        "unmovable": c["UNMOVABLE"],
        "hugetlb": c["HUGETLB_HEAD"] + c["HUGETLB_TAIL"],
    }


@pytest.mark.parametrize("kernel", ["5.5", "5.6", "6.1"])
def test_seed_memory96_cannot_go_offline(seed, kernel):
    o = seed.offline(96, kernel)
    assert o.errno == "EINVAL" and not o.applied
    # 5.5/5.6: section_count 8 != 16; 6.1: the Reserved gap is not System RAM
    assert o.reason == ("memory holes" if kernel == "6.1" else "non-present sections")
    assert seed.valid_zones(96, "5.5") == "none"


def test_x86_block0_has_no_cached_zone_in_6_1(seed):
    o = seed.offline(0, "6.1")
    assert o.errno == "EINVAL" and o.reason is None  # mem->zone == NULL: no reason logged
    assert seed.valid_zones(0, "6.1") == "none"


def test_normal_block_fails_isolation_at_first_unmovable_page_by_version():
    m = tiny()
    m.set_pages(PFN0, SEC, PageKind.LRU)
    m.set_pages(PFN0 + 3 * PB + 7, 1, PageKind.UNMOVABLE)  # middle pageblock
    m.set_pages(PFN0 + SEC - 5, 1, PageKind.UNMOVABLE)  # last pageblock
    o55 = m.offline(32, "5.5")
    assert (o55.errno, o55.reason, o55.pfn) == (
        "EBUSY",
        "failure to isolate range",
        PFN0 + 3 * PB + 7,
    )
    assert o55.pageblocks_isolated == 3 and o55.drain_all_pages == 3
    o61 = m.offline(32, "6.1")  # first, last, then middle pageblocks
    assert (o61.errno, o61.pfn) == ("EBUSY", PFN0 + SEC - 5)
    assert o61.pageblocks_isolated == 1 and o61.drain_all_pages == 1 and o61.lru_add_drain_all == 1


def test_cma_pageblock_fails_isolation():
    m = tiny()
    m.set_pages(PFN0, SEC, PageKind.LRU)
    m.set_migratetype(PFN0 + 2 * PB, MigrateType.CMA)
    o = m.offline(32, "5.5")
    assert (o.errno, o.pfn, o.detail) == ("EBUSY", PFN0 + 2 * PB, "dump_page: CMA page")
    assert m.offline(32, "6.1").detail == "dump_page: unmovable page"


def test_movable_block_succeeds_and_moves_its_pages_to_the_other_node():
    m = two_node()
    m.set_pages(PFN0 + 2 * SEC, 1000, PageKind.LRU)
    m.set_pages(PFN0 + 2 * SEC + 5000, 10, PageKind.MOVABLE)
    m.set_pages(PFN0 + 2 * SEC + 6000, 1, PageKind.UNMOVABLE)  # passes isolation in Movable...
    o = m.offline(34, "6.1")
    assert (o.errno, o.reason, o.pfn) == ("EINTR", "signal backoff", PFN0 + 2 * SEC + 6000)
    assert "neither migrate nor be freed" in o.detail
    m.set_pages(PFN0 + 2 * SEC + 6000, 1, PageKind.LRU)  # ...so remove it
    before = user_pages(m)
    o = m.offline(34, "6.1")
    assert o.ok and not o.applied and o.pages_migrated == 1011 and o.migration_rounds == 1
    o = m.offline(34, "6.1", dry_run=False)
    assert o.ok and o.applied
    assert m.block_state(34) == memscan.BlockState.OFFLINE
    assert user_pages(m) == before  # nothing lost or duplicated
    v = m.pages(32)  # node 0 took them: the other node is preferred
    assert ((v & 0xF) == PageKind.LRU).sum() == 1001 and ((v & 0xF) == PageKind.MOVABLE).sum() == 10
    # 6.1 without DEBUG_VM: the offlined struct pages stay as they were, free (the
    # assertion that they were poisoned encoded a departure: page_init_poison is a no-op
    # without DEBUG_VM)
    assert (m.pages(34) & 0xF == PageKind.FREE).all()
    assert not m.sections()["flags"][0x22] & 2  # section offline
    assert m.offline(34, "6.1").errno == "EINVAL"  # already offline
    assert m.valid_zones(34, "6.1") == "Normal Movable"
    assert m.removable(34, "5.5").value == 1  # offline blocks read 1 without a scan


def test_movable_zone_span_shrinks_and_grows_back():
    m = two_node()
    zones = {(z[0], z[1]): z for z in m.zones()}
    assert zones[(1, "Movable")][2:] == (PFN0 + 2 * SEC, PFN0 + 4 * SEC)
    assert m.offline(34, "6.1", dry_run=False).ok
    zones = {(z[0], z[1]): z for z in m.zones()}
    assert zones[(1, "Movable")][2:] == (PFN0 + 3 * SEC, PFN0 + 4 * SEC)
    assert m.online(34, "online_movable") is None
    zones = {(z[0], z[1]): z for z in m.zones()}
    assert zones[(1, "Movable")][2:] == (PFN0 + 2 * SEC, PFN0 + 4 * SEC)
    assert m.block_state(34) == memscan.BlockState.ONLINE
    assert m.online(34, "online") == "EINVAL"  # already online
    with pytest.raises(memscan.ArgumentError):
        m.online(35, "online_fast")


def test_long_term_pin_loops_until_the_signal():
    m = two_node()
    m.set_pages(PFN0 + 2 * SEC + 77, 1, PageKind.PINNED)
    m.set_pages(PFN0 + 2 * SEC + 100, 50, PageKind.LRU)
    for kernel in ("5.5", "6.1"):
        o = m.offline(34, kernel, patience_rounds=250)
        assert (o.errno, o.reason, o.pfn) == ("EINTR", "signal backoff", PFN0 + 2 * SEC + 77)
        assert o.migration_rounds == 250 and o.pages_migrated == 50
        assert "pinned" in o.detail
    assert m.offline(34, "5.5", patience_rounds=250).lru_add_drain_all == 250


def test_no_free_memory_for_migration_targets():
    m = two_node(zone="Normal")
    m.set_pages(PFN0, 2 * SEC, PageKind.UNMOVABLE)  # node 0 full
    m.set_pages(PFN0 + 2 * SEC, SEC, PageKind.LRU)  # block 34 full of LRU pages
    o = m.offline(34, "5.5")
    assert o.errno == "EINTR" and "no free memory" in o.detail
    # node 1 is excluded while node 0 has memory; with node 0's memory free it works
    m.set_pages(PFN0, 2 * SEC, PageKind.FREE)
    for p in range(PFN0, PFN0 + 2 * SEC, 1024):
        m.set_pages(p, 1, PageKind.BUDDY, 10)
    assert m.offline(34, "5.5").ok


def test_page_offline_with_reference_by_version():
    m = two_node()
    m.set_pages(PFN0 + 2 * SEC + 9, 1, PageKind.OFFLINE)
    o55 = m.offline(34, "5.5")
    assert o55.errno == "EBUSY" and o55.reason == "failure to isolate range" or o55.errno == "EINTR"
    o61 = m.offline(34, "6.1")
    assert (o61.errno, o61.reason, o61.pfn) == ("EBUSY", "unmovable page", PFN0 + 2 * SEC + 9)


def test_page_offline_in_normal_zone_5_5_fails_isolation():
    m = tiny()
    m.set_pages(PFN0, SEC, PageKind.LRU)  # no free buddy block around it
    m.set_pages(PFN0 + 9, 1, PageKind.OFFLINE)
    o = m.offline(32, "5.5")
    assert (o.errno, o.reason, o.pfn) == ("EBUSY", "failure to isolate range", PFN0 + 9)


def test_holes_by_version():
    # a hole inside block 32's first section: RAM from 4 GiB + 1 MiB
    m = tiny(
        ranges=[{"start": (4 << 30) + (1 << 20), "size": (256 << 20) - (1 << 20), "kind": "ram"}]
    )
    # v5.5 __offline_pages refuses holes (walk_system_ram_range + count_system_ram_pages_cb,
    # read in v5.5-rc5); the earlier assertion that 5.5 had no such check was the departure
    # of the fidelity issue's item 1.
    for k in ("5.5", "5.6", "6.1"):
        assert (m.offline(32, k).errno, m.offline(32, k).reason) == ("EINVAL", "memory holes")
    # 5.4 (5.4.59 read) has no holes check: the zeroed hole struct pages read as zone DMA in
    # test_pages_in_a_zone
    assert (m.offline(32, "5.4").errno, m.offline(32, "5.4").reason) == (
        "EINVAL",
        "multizone range",
    )


def test_holes_inside_a_zone_are_allocated_pages_up_to_5_6():
    """memmap_init_zone() (v5.4.18, v5.5-rc5, v5.6.4) initialises every pfn of a zone span,
    holes of present sections included: refcount 1, no flags, so has_unmovable_pages()
    finds the hole. 6.1 marks holes PG_reserved and refuses them first ("memory holes").
    The same shape on real kernels: tests/groundtruth/holes-5.4-* and holes-6.1-debian."""
    iomem = (
        "00001000-0009fbff : System RAM\n"
        "00100000-5fffffff : System RAM\n"
        "60000000-600fffff : Reserved\n"  # 1 MiB hole in DMA32, block 12
        "60100000-bfffffff : System RAM\n"
    )
    m = memscan.Machine.from_iomem(iomem)
    assert m.geometry.block_size == 128 << 20
    for k in ("5.4", "5.5", "5.6-rc"):
        assert m.removable(12, k).value == 0, k
        assert m.removable(11, k).value == 1, k
    o = m.offline(12, "5.4")  # no holes check in 5.4: isolation stops at the hole
    assert (o.errno, o.reason, o.pfn) == ("EBUSY", "failure to isolate range", 0x60000)
    for k in ("5.5", "5.6", "6.1"):
        assert (m.offline(12, k).errno, m.offline(12, k).reason) == ("EINVAL", "memory holes")
    assert m.removable(12, "6.1").value == 1
    # the hole's struct page has its zone: valid_zones reads DMA32, not a zeroed page's DMA
    assert m.valid_zones(12, "5.5") == "DMA32"
    assert m.offline(11, "5.4").errno is None


def test_x86_holes_below_1mib_are_reserved():
    """trim_low_memory_range() and reserve_bios_regions() memblock-reserve every hole below
    1 MiB on x86 and reserve_bootmem_region() makes them PG_reserved (a real 5.4.59 guest
    reads KPF_RESERVED at pfn 0 and 0x9f..0xff); holes elsewhere stay holes."""
    from memscan.kpageflags import KPF

    iomem = (
        "00000000-00000fff : Reserved\n"
        "00001000-0009efff : System RAM\n"
        "0009f000-000fffff : Reserved\n"
        "00100000-5fffffff : System RAM\n"
        "60000000-600fffff : Reserved\n"
        "60100000-bfffffff : System RAM\n"
    )
    m = memscan.Machine.from_iomem(iomem)
    for pfn in (0, 0x9F, 0xA0, 0xFF):
        assert m.page(pfn) & 0xF == PageKind.RESERVED, hex(pfn)
    assert m.page(0x60000) & 0xF == PageKind.ZEROED  # the mid-RAM hole: a hole
    assert m.page(0x100) & 0xF != PageKind.RESERVED  # RAM from 1 MiB
    words = m._core.kpageflags_export(0, 0x101)
    assert all(int(words[p]) >> KPF["RESERVED"] & 1 for p in (0, 0x9F, 0xFF))


@pytest.mark.parametrize(
    "kernel, after",
    [
        ("5.4", PageKind.RESERVED),  # __offline_isolated_pages: SetPageReserved (5.4.18)
        ("5.4+debug", PageKind.RESERVED),
        ("5.5+debug", PageKind.FREE),  # 5.5: left stale, no poisoning yet
        ("5.6-rc3+debug", PageKind.UNINIT),  # remove_pfn_range_from_zone: page_init_poison
        ("5.6+debug", PageKind.UNINIT),
        ("5.6", PageKind.FREE),  # page_init_poison is a no-op without DEBUG_VM
        ("6.1+debug", PageKind.UNINIT),
        ("6.1", PageKind.FREE),
    ],
)
def test_offlined_memmap_by_version(kernel, after):
    m = tiny()
    o = m.offline(33, kernel, dry_run=False)
    assert o.ok and o.applied
    assert set((m.pages(33) & 0xF).tolist()) == {int(after)}


def test_a_write_to_a_going_offline_block_waits_for_the_offline_in_progress():
    """state_store() (v5.5-rc5, 6.1-rc6): lock_device_hotplug_sysfs() fails while the
    offline in progress holds device_hotplug_lock and restarts the write. When that offline
    succeeds, this write finds the block offline (EINVAL, no work of its own); when it fails,
    the block is online again and this write fails the same way."""
    for kernel in ("5.5", "6.1"):
        m = tiny()
        m.set_block_state(32, "going-offline")
        o = m.offline(32, kernel)
        assert (o.errno, o.reason) == ("EINVAL", "already offline") and "waited" in o.detail
        assert o.struct_pages_read == 0 and not o.applied
        assert m.block_state(32) == memscan.BlockState.GOING_OFFLINE  # a dry run
        o = m.offline(32, kernel, dry_run=False)
        assert o.errno == "EINVAL" and o.applied  # the offline in progress completed
        assert m.block_state(32) == memscan.BlockState.OFFLINE
        m = tiny()
        m.set_pages(PFN0 + SEC + 9, 1, PageKind.PINNED)
        m.set_block_state(33, "going-offline")
        o, fresh = m.offline(33, kernel), tiny()
        fresh.set_pages(PFN0 + SEC + 9, 1, PageKind.PINNED)
        assert (
            (o.errno, o.pfn)
            == (fresh.offline(33, kernel).errno, PFN0 + SEC + 9)
            == (
                "EINTR",
                PFN0 + SEC + 9,
            )
        )
        assert "in progress failed" in o.detail


def test_hotremove_and_arm64_notifier():
    a = memscan.Machine.synthetic("4G", arch="arm64")
    b = int(a.blocks()[0])
    assert (a.offline(b, "5.5").errno, a.offline(b, "5.5").reason) == (
        "EINVAL",
        "no CONFIG_MEMORY_HOTREMOVE",
    )
    o = a.offline(b, "6.1")
    assert (o.errno, o.reason) == ("EPERM", "notifier failure") and "boot memory" in o.detail
    with pytest.raises(memscan.ArgumentError):
        a.valid_zones(b, "5.5")


def test_valid_zones_online_and_offline_blocks():
    m = tiny(offline_blocks=[33])
    assert m.valid_zones(32, "5.5") == "Normal"
    assert m.valid_zones(32, "6.1") == "Normal"
    assert m.valid_zones(33, "5.5") == "Normal Movable"
    # valid_zones_show(): only MEM_ONLINE shows the block's zone; going-offline lists the
    # zones an online would pick, as offline does (v5.5-rc5, 6.1)
    m.set_block_state(32, "going-offline")
    for k in ("5.5", "6.1"):
        assert m.valid_zones(32, k) == m.valid_zones(33, k), k
    with pytest.raises(memscan.NoSuchBlockError):
        m.valid_zones(40, "5.5")
    with pytest.raises(memscan.NoSuchBlockError):
        m.offline(40, "5.5")


def test_6_1_keeps_mem_zone_rather_than_reading_zone_spans():
    """6.1-rc6 drivers/base/memory.c: mem->zone is set at boot (early_node_zone_for_memory_block),
    to the chosen zone by memory_block_online() and to NULL by memory_block_offline(); nothing
    recomputes it from the zone spans. Onlining blocks 33 and 35 movable inside Normal's span
    makes Movable's span cover block 34 too: 34 stays Normal, each onlined block Movable."""
    m = tiny(ranges=[{"start": 4 * GIB, "size": "512M", "kind": "ram"}], offline_blocks=[33, 35])
    for b in (33, 35):
        assert m.online(b, "online_movable") is None
    assert [m.valid_zones(b, "6.1") for b in (32, 33, 34, 35)] == [
        "Normal",
        "Movable",
        "Normal",
        "Movable",
    ]
    for b in (34, 33):
        o = m.offline(b, "6.1", dry_run=False)
        assert o.ok, (b, o)
    # offline: valid_zones lists what an online would pick; mem->zone is NULL again
    assert m.valid_zones(33, "6.1") == m.valid_zones(33, "5.5")
    assert m.online(33, "online_kernel") is None
    assert m.valid_zones(33, "6.1") == "Normal" and m.offline(33, "6.1").ok
    # 5.5 has no mem->zone: test_pages_in_a_zone() reads the pages, which agree here
    assert m.valid_zones(35, "5.5") == "Movable"


def test_kernel_zone_pages_cannot_migrate_into_zone_movable():
    m = two_node()  # node 1 is all ZONE_MOVABLE; node 0's own memory is excluded
    m.set_pages(PFN0 + SEC, SEC, PageKind.LRU)
    o = m.offline(33, "6.1")
    assert o.errno == "EINTR" and "no free memory" in o.detail


def test_predict_and_confusion_matrix():
    m = two_node(zone="Normal")
    m.set_pages(PFN0, 2 * SEC, PageKind.LRU)
    m.set_pages(PFN0 + 5, 1, PageKind.UNMOVABLE)  # block 32: removable 0, offline EBUSY
    m.set_pages(PFN0 + 2 * SEC + 3, 1, PageKind.PINNED)  # block 34: removable 1, offline EINTR
    p = m.predict("5.5", offline_kernel="6.1")
    assert p.block.tolist() == [32, 33, 34, 35]
    assert p.removable_pre.tolist() == [0, 1, 1, 1] and p.removable_post.tolist() == [1, 1, 1, 1]
    assert [o.errno for o in p.offline] == ["EBUSY", None, "EINTR", None]
    pre, post = p.confusion("pre"), p.confusion("post")
    assert (pre["tp"], pre["fp"], pre["tn"], pre["fn"]) == (2, 1, 1, 0)
    assert (post["tp"], post["fp"], post["tn"], post["fn"]) == (2, 2, 0, 0)
    assert list(pre["fp_reasons"]) == [
        "EINTR signal backoff (long-term pinned page: migration fails on every pass)"
    ]


def test_offline_online_cycles_keep_every_page():
    m = memscan.Machine.synthetic("2G", block_size="128M", nodes=2).populate("movable-node", seed=4)
    before = user_pages(m)
    done = []
    for b in m.blocks().tolist():
        o = m.offline(b, "6.1", dry_run=False)
        if o.ok:
            done.append(b)
        assert user_pages(m) == before, b
    assert done, "no block could be offlined"
    for b in done:
        assert m.online(b, "online_movable") is None
    assert user_pages(m) == before
    for b in done[:3]:
        assert m.offline(b, "6.1", dry_run=False).ok
    assert user_pages(m) == before


def test_pseries_cmm_loaned_pages_by_version():
    """pseries CMM: 5.4.18 registers a memory isolate notifier (MEM_ISOLATE_COUNT: its loaned
    pages are `count`) and gives them back in MEM_GOING_OFFLINE; from v5.5 it uses balloon
    compaction (no notifier in v5.5-rc5): the pages are __PageMovable, passed by
    has_unmovable_pages and migrated. The assertions that 5.5 kept the notifier and 5.6
    failed isolation encoded the fidelity issue's item 3."""
    # ppc64: 64K pages, 16 MiB sections (one pageblock each), 256 MiB LMBs.
    m = memscan.Machine.from_layout(
        {"arch": "ppc64", "ranges": [{"start": 0, "size": "1G", "kind": "ram"}]}
    )
    b = 1
    ppb = m.geometry.pages_per_block
    base = b * ppb
    m.set_pages(base, ppb, PageKind.LRU)
    m.set_pages(base + 7, 3, PageKind.OFFLINE)  # pages the CMM balloon has loaned
    # 5.4: removable passes count 0, so the loaned pages read unmovable: a false "no" (why
    # drmgr ignored it under AMS ballooning); the offline counts them, CMM releases them
    assert m.removable(b, "5.4").value == 0
    o = m.offline(b, "5.4")
    assert o.ok and o.pages_migrated == ppb - 3
    # 5.5 on: balloon pages are movable: removable 1, and they migrate with the rest
    assert m.removable(b, "5.5").value == 1
    for k in ("5.5", "5.6", "6.1"):
        o = m.offline(b, k)
        assert o.ok and o.pages_migrated == ppb, k


@pytest.mark.parametrize("kernel", ["5.5", "6.1"])
def test_s390_standby_memory_goes_offline_again_once_onlined(kernel):
    """s390 sclp_mem_notifier (v5.5-rc5): MEM_GOING_ONLINE assigns the block's storage
    increments and clears their standby mark, MEM_OFFLINE sets it back; GOING_OFFLINE vetoes
    (EPERM) only a block that still holds standby increments. An onlined standby block goes
    offline again (the earlier assertion that it could not was the fidelity issue's item 2)."""
    # s390x: 256 MiB sections and blocks; block 3 is standby memory, added offline at boot.
    m = memscan.Machine.from_layout(
        {
            "arch": "s390x",
            "ranges": [{"start": 0, "size": "1G", "kind": "ram"}],
            "offline_blocks": [3],
        }
    )
    assert m.block_state(3) == memscan.BlockState.OFFLINE
    assert m._core.standby_blocks() == [3]
    assert m.online(3, "online") is None
    assert m._core.standby_blocks() == []
    assert m.offline(3, kernel).ok  # dry run: no veto
    assert m.offline(3, kernel, dry_run=False).applied
    assert m._core.standby_blocks() == [3]  # standby again
    assert m.offline(2, kernel, dry_run=False).applied  # boot memory too becomes standby
    assert sorted(m._core.standby_blocks()) == [2, 3]


def test_free_hugetlb_pages_all_reserved_fail_to_dissolve():
    m = two_node()
    base = PFN0 + 2 * SEC
    m.set_pages(base, SEC, PageKind.LRU)
    for i in range(4):  # four free 2 MiB hugetlb pages (hstate 0) in block 34
        p = base + i * PB
        m.set_pages(p, 1, PageKind.HUGETLB_HEAD, memscan.HUGETLB_FREE)
        m.set_pages(p + 1, PB - 1, PageKind.HUGETLB_TAIL, memscan.HUGETLB_FREE)
    assert m.offline(34, "6.1").ok  # nothing reserved: they dissolve
    m.set_hugetlb_reserved(0, 2)  # 4 free, 2 promised: the third cannot go
    o = m.offline(34, "6.1")
    assert (o.errno, o.reason, o.pfn) == ("EBUSY", "failure to dissolve huge pages", base + 2 * PB)
    with pytest.raises(memscan.ArgumentError):
        m.set_hugetlb_reserved(7, 1)


def hugetlb(m, pfn, hstate, order, free=False):
    f = hstate | (memscan.HUGETLB_FREE if free else 0)
    m.set_pages(pfn, 1, PageKind.HUGETLB_HEAD, f)
    m.set_pages(pfn + 1, (1 << order) - 1, PageKind.HUGETLB_TAIL, f)


@pytest.mark.parametrize("kernel", ["5.5", "6.1"])
def test_hugetlb_migration_takes_a_free_pool_page_first(kernel):
    """alloc_huge_page_nodemask() (v5.5-rc5, 5.6.4, 6.1-rc6): a free pool page on an allowed
    node while the hstate's free pages exceed its reserved ones, and only then a fresh huge
    page from the buddy allocator. Block 33 has no free memory but one free 2 MiB pool page:
    the in-use huge page of block 32 moves onto it."""
    m = tiny()
    m.set_pages(PFN0 + SEC, SEC, PageKind.LRU)
    hugetlb(m, PFN0 + SEC + 4 * PB, 0, 9, free=True)
    hugetlb(m, PFN0, 0, 9)
    o = m.offline(32, kernel)
    assert o.ok and o.pages_migrated == PB, o
    m.set_hugetlb_reserved(0, 1)  # the only free page is promised: a fresh page is needed
    o = m.offline(32, kernel)
    assert (o.errno, o.pfn) == ("EINTR", PFN0) and "no free memory" in o.detail
    m.set_hugetlb_reserved(0, 0)
    assert m.offline(32, kernel, dry_run=False).applied
    head = m.page(PFN0 + SEC + 4 * PB)
    assert (head & 0xF, head >> 4) == (PageKind.HUGETLB_HEAD, 0)  # in use now
    tails = set(m.page_bytes(PFN0 + SEC + 4 * PB + 1, PB - 1).tolist())
    assert tails == {int(PageKind.HUGETLB_TAIL)}  # hstate 0, no longer marked free


@pytest.mark.parametrize("kernel", ["5.5", "6.1"])
def test_gigantic_page_migrates_only_onto_a_free_pool_page(kernel):
    """alloc_migrate_huge_page() returns NULL for a gigantic hstate (5.5-rc5, 6.1-rc6): a
    1 GiB page in use moves only onto a free 1 GiB pool page; with none, migration fails on
    every pass although free memory abounds, and the write ends on a signal."""
    m = tiny(ranges=[{"start": 4 * GIB, "size": "8G", "kind": "ram"}], block_size="2G")
    g0 = (4 * GIB) // 4096  # block 2
    hugetlb(m, g0, 1, 18)
    o = m.offline(2, kernel)
    assert (o.errno, o.pfn) == ("EINTR", g0) and "no free memory" in o.detail
    hugetlb(m, g0 + 2 * (1 << 19), 1, 18, free=True)  # block 4
    assert m.offline(2, kernel).ok


@pytest.mark.parametrize("kernel", ["5.5", "6.1"])
def test_dissolve_runs_while_a_page_the_scan_cannot_see_stays(kernel):
    """__offline_pages() (v5.5-rc5, 5.6.4) / offline_pages() (6.1-rc6): the inner loop ends
    once scan_movable_pages() finds nothing, even while a page it skips (an unmovable page in
    ZONE_MOVABLE that passed isolation) stays; dissolve_free_huge_pages() then runs in the
    same round: EBUSY when the pool's free pages are all reserved, and EINTR only when
    dissolve succeeds and test_pages_isolated() keeps failing. A pinned page, which the scan
    returns on every pass, never lets dissolve run."""
    m = two_node()  # node 1: blocks 34-35, ZONE_MOVABLE
    base = PFN0 + 2 * SEC
    hugetlb(m, base + 8 * PB, 0, 9, free=True)
    m.set_pages(base + 3, 1, PageKind.UNMOVABLE)  # passes isolation in ZONE_MOVABLE
    m.set_hugetlb_reserved(0, 1)
    o = m.offline(34, kernel)
    assert (o.errno, o.reason, o.pfn) == ("EBUSY", "failure to dissolve huge pages", base + 8 * PB)
    m.set_hugetlb_reserved(0, 0)
    o = m.offline(34, kernel)
    assert (o.errno, o.pfn) == ("EINTR", base + 3)
    m.set_hugetlb_reserved(0, 1)
    m.set_pages(base + 20, 1, PageKind.PINNED)
    o = m.offline(34, kernel)
    assert (o.errno, o.pfn) == ("EINTR", base + 20) and "pinned" in o.detail
    for k in (kernel,):
        assert reference.offline(m, 34, k).errno == "EINTR"


def test_6_1_dissolve_with_hvo_needs_pages_to_restore_the_vmemmap():
    """6.1-rc6 dissolve_free_huge_page(): with HugeTLB Vmemmap Optimization on (off by
    default), hugetlb_vmemmap_restore() needs the huge page's vmemmap back (7 pages for 2 MiB)
    as order-0 pages of its node (__GFP_THISNODE, GFP_KERNEL): none free → -ENOMEM, "failure
    to dissolve huge pages". 5.x has no HVO."""
    m = tiny()
    m.set_pages(PFN0, SEC, PageKind.LRU)  # block 32: no free page left on node 0
    hugetlb(m, PFN0 + SEC + 4 * PB, 0, 9, free=True)
    assert m.offline(33, "6.1").ok
    m.hugetlb_vmemmap_optimize = True
    o = m.offline(33, "6.1")
    assert (o.errno, o.reason, o.pfn) == (
        "ENOMEM",
        "failure to dissolve huge pages",
        PFN0 + SEC + 4 * PB,
    )
    assert reference.offline(m, 33, "6.1").errno == "ENOMEM"
    assert m.offline(33, "5.5").ok
    m.set_pages(PFN0 + 1024, 8192, PageKind.FREE)  # free pages above the min watermark
    assert m.offline(33, "6.1").ok and reference.offline(m, 33, "6.1").errno is None
    with pytest.raises(memscan.ArgumentError):
        m.hugetlb_vmemmap_optimize = 1


def test_lru_add_drain_all_before_every_scan_movable_pages():
    """5.4.18/5.5-rc5/5.6.4 __offline_pages: the inner loop drains before each
    scan_movable_pages(); after the moves a rescan finds nothing, so a block with pages to
    migrate drains twice and an empty one once. 6.1 drains once, in lru_cache_disable()."""
    m = tiny()
    m.set_pages(PFN0 + 100, 10, PageKind.LRU)  # block 32: ten pages to move
    for k in ("5.4", "5.5", "5.6"):
        assert m.offline(32, k).lru_add_drain_all == 2, k
        assert m.offline(33, k).lru_add_drain_all == 1, k  # nothing to move
    assert m.offline(32, "6.1").lru_add_drain_all == 1


@pytest.mark.parametrize("kernel", ["5.4+debug", "5.5+debug", "5.5", "5.6+debug", "6.1+debug"])
def test_no_modeled_read_reaches_the_memmap_tail_beyond_max_pfn(kernel):
    """5.4.18 and v5.5-rc5 zero_resv_unavail() stop at max_pfn; from v5.6-rc1 (e822969cab48,
    Cc stable: in 5.4.59, unknown for 5.5.10) the memmap is initialised up to the section
    end. Whichever the seed's 5.5.10 had, no modeled read meets that tail:
    is_mem_section_removable() clamps to the zone end, test_pages_in_a_zone() stops at
    zone_spans_pfn(), and the offline is refused ("memory holes", "multizone range")
    before isolation. A poisoned tail gives the same answers as a zeroed one."""

    def mk(poison):
        m = tiny(ranges=[{"start": 4 * GIB, "size": "200M", "kind": "ram"}])
        if poison:
            tail = PFN0 + (200 << 20) // 4096
            m.set_pages(tail, PFN0 + 2 * SEC - tail, PageKind.UNINIT)
        return m

    a, b = mk(False), mk(True)
    for blk in a.blocks().tolist():
        ra, rb = a.removable(blk, kernel), b.removable(blk, kernel)
        assert (ra.value, rb.fault) == (rb.value, None)
        va, vb = a.valid_zones_read(blk, kernel), b.valid_zones_read(blk, kernel)
        assert (va.value, vb.fault) == (vb.value, None)
        oa, ob = a.offline(blk, kernel), b.offline(blk, kernel)
        assert (oa.errno, oa.reason, ob.fault) == (ob.errno, ob.reason, None)


def test_min_free_kbytes_by_version_user_setting_and_thp():
    """5.5-rc5 init_per_zone_wmark_min(): int_sqrt(lowmem KiB x 16) clamped to 128..65536;
    6.1-rc6 calculate_min_free_kbytes(): to 128..262144; a user setting at least as large
    stands. khugepaged's set_recommended_min_free_kbytes() raises it to 11 pageblocks per
    populated zone up to Normal (at most 5% of lowmem) where THP is enabled; 5.x loses the
    raise at the next online or offline (restored in v5.10), 6.1 keeps it."""
    big = memscan.Machine.synthetic("1T")
    assert (big.min_free_kbytes("5.5"), big.min_free_kbytes("6.1")) == (65536, 131072)
    m = memscan.Machine.synthetic("1G", block_size="128M")
    raise_kb = 512 * 11 * 4  # one zone (Normal), 2 MiB pageblocks
    assert m.min_free_kbytes("5.5") == m.min_free_kbytes("6.1") == raise_kb
    m.thp_enabled = False
    assert m.min_free_kbytes("5.5") == int(math.sqrt((1 << 20) * 16)) == 4096
    m.thp_enabled = True
    assert m.offline(int(m.blocks()[-1]), "5.5", dry_run=False).applied
    assert m.min_free_kbytes("5.5") == int(math.sqrt((896 << 10) * 16)) // 4 * 4  # in pages
    assert m.min_free_kbytes("6.1") == raise_kb
    m.set_min_free_kbytes(100_000)
    assert m.min_free_kbytes("5.5") == m.min_free_kbytes("6.1") == 100_000
    for k in ("5.5", "6.1"):
        snap = reference.Snapshot.of(m)
        ref = reference.OfflineReference(snap, reference.Profile.parse(k, "x86_64"))
        assert ref.min_free_pages() * 4 == m.min_free_kbytes(k), k
    m.set_min_free_kbytes(None)
    snap = reference.Snapshot.of(m)
    for k in ("5.5", "6.1"):
        ref = reference.OfflineReference(snap, reference.Profile.parse(k, "x86_64"))
        assert ref.min_free_pages() * 4 == m.min_free_kbytes(k), k


@pytest.mark.parametrize("kernel", ["5.5", "6.1"])
def test_targets_leave_the_allowed_zones_own_min_watermarks(kernel):
    """__setup_per_zone_wmarks() (5.5-rc5, 6.1-rc6) spreads min_free_kbytes over the zones in
    proportion to their managed pages; migration from node 0 allocates on node 1, which keeps
    only its own share free (half here), not the whole machine's min."""
    m = two_node(zone="Normal")  # two 256 MiB nodes, Normal on both
    share = m.min_free_kbytes(kernel) // 4 // 2  # pages: node 1 holds half the managed pages
    move = 30_000
    m.set_pages(PFN0, move, PageKind.LRU)  # block 32, node 0
    node1 = PFN0 + 2 * SEC
    m.set_pages(node1, 2 * SEC - (move + share), PageKind.LRU)  # free: exactly move + share
    o = m.offline(32, kernel)
    assert o.ok and o.pages_migrated == move, o
    assert reference.offline(m, 32, kernel).errno is None
    m.set_pages(node1 + 2 * SEC - (move + share), 1, PageKind.LRU)  # one page fewer
    o = m.offline(32, kernel)
    assert o.errno == "EINTR" and "no free memory" in o.detail
    assert reference.offline(m, 32, kernel).errno == "EINTR"
