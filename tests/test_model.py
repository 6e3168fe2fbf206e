"""The model itself: views, determinism, workloads, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import memscan
from conftest import PFN0, tiny
from memscan import PageKind


def test_pages_view_is_zero_copy_and_read_only(m):
    v = m.pages(32)
    assert v.shape == (32768,) and v.dtype == np.uint8 and not v.flags.writeable
    assert v.base is not None
    m.set_pages(PFN0 + 5, 1, PageKind.UNMOVABLE)
    assert v[5] == PageKind.UNMOVABLE  # the view sees the model's own bytes
    del m
    assert v[5] == PageKind.UNMOVABLE  # and keeps it alive


def _covered_by_a_buddy(v: np.ndarray) -> np.ndarray:
    """Per page of a block's bytes: whether a free buddy block's head claims it."""
    covered = np.zeros(len(v), bool)
    for h in np.nonzero((v & 0xF) == PageKind.BUDDY)[0]:
        covered[h : h + (1 << int(v[h] >> 4))] = True
    return covered


def test_pages_planted_in_free_memory_split_the_buddy_blocks_around_them():
    """A page set in use inside a free buddy block: the block is split around it as the page
    allocator's handing out of that page would, so no buddy head claims a page in use (the
    isolation scan's buddy skip and the target search read the heads), and every other page
    of the old block is still free."""
    m = tiny()
    before = int(((m.pages(32) & 0xF) == PageKind.BUDDY).sum())
    m.set_pages(PFN0 + 1500, 3, PageKind.PINNED)
    m.write_pages(PFN0 + 4000, np.array([PageKind.LRU, PageKind.FREE, PageKind.LRU], np.uint8))
    v = m.pages(32).copy()
    used = np.isin(v & 0xF, [PageKind.FREE, PageKind.BUDDY], invert=True)
    assert used.sum() == 5
    cov = _covered_by_a_buddy(v)
    assert not (cov & used).any()
    expected = ~used
    expected[4001] = False  # written FREE by hand: free, but no head claims it
    assert (cov == expected).all()
    assert int(((v & 0xF) == PageKind.BUDDY).sum()) > before
    # an offline stops at the pinned page
    o = m.offline(32, "5.5")
    assert (o.errno, o.pfn) == ("EINTR", PFN0 + 1500)


def test_boot_state_is_max_order_buddies(m):
    v = m.pages(32)
    heads = np.nonzero((v & 0xF) == PageKind.BUDDY)[0]
    assert (heads == np.arange(0, 32768, 1024)).all()
    assert set((v[heads] >> 4).tolist()) == {10}


def test_populate_is_deterministic_and_seed_dependent():
    a = memscan.Machine.synthetic("2G", block_size="128M").populate("fragmented", seed=3)
    b = memscan.Machine.synthetic("2G", block_size="128M").populate("fragmented", seed=3)
    c = memscan.Machine.synthetic("2G", block_size="128M").populate("fragmented", seed=4)
    assert all((a.pages(int(x)) == b.pages(int(x))).all() for x in a.blocks())
    assert any((a.pages(int(x)) != c.pages(int(x))).any() for x in a.blocks())
    sa, sb = a.scan("5.5"), b.scan("5.5")
    assert (sa.value == sb.value).all() and (sa.struct_pages_read == sb.struct_pages_read).all()


def test_presets_realise_their_fractions():
    m = memscan.Machine.synthetic("4G", block_size="128M")
    for name, w in memscan.PRESETS.items():
        m.populate(w, seed=1)
        c = m.kind_counts()
        total = sum(c.values())
        free = (c["FREE"] + c["BUDDY"]) / total
        assert abs(free - w.free) < 0.05, (name, free)
        assert (
            abs(c["UNMOVABLE"] / total - (0 if w.movable_node else w.unmovable)) < 0.05
            or w.movable_node
        )


def test_worst_case_preset_is_all_lru_and_removable():
    m = memscan.Machine.synthetic("1G", block_size="128M").populate("worst-case")
    assert m.kind_counts()["LRU"] == (1 << 30) // 4096
    s = m.scan("5.5")
    assert (s.value == 1).all()


def test_movable_node_moves_upper_half_to_zone_movable():
    m = memscan.Machine.synthetic("4G", block_size="128M").populate("movable-node", seed=2)
    zones = {z[1]: z for z in m.zones()}
    assert "Movable" in zones and zones["Normal"][3] == zones["Movable"][2]
    s = m.scan("5.5")
    blocks = s.block.tolist()
    mv_first = zones["Movable"][2] // (128 << 20 >> 12)
    # everything in ZONE_MOVABLE reads removable (no reserved pages there)
    assert all(s.value[i] == 1 for i, b in enumerate(blocks) if b >= mv_first)


def test_hugetlb_cma_hwpoison_balloon_knobs():
    m = memscan.Machine.synthetic("2G", block_size="128M")
    m.populate(
        memscan.Workload(hugetlb=0.2, cma_pages=4096, hwpoison_pages=5, balloon_pages=7), seed=1
    )
    c = m.kind_counts()
    assert c["HUGETLB_HEAD"] > 0 and c["HWPOISON"] == 5 and c["OFFLINE"] == 7
    bits = m._core.pageblock_bits()
    assert int(((bits & 0xF) == memscan.MigrateType.CMA).sum()) == 8
    g = memscan.Machine.synthetic("4G", block_size="1G")
    g.populate(memscan.Workload(hugetlb=0.5, hugetlb_hstate=1, free=0.1), seed=5)
    assert g.kind_counts()["HUGETLB_HEAD"] >= 1


def test_scan_from_many_threads_agrees():
    m = memscan.Machine.synthetic("2G", block_size="128M").populate("fragmented", seed=9)
    ref = m.scan("5.5")
    out = []

    def work():
        out.append(m.scan("5.5", parallel=True))

    ts = [threading.Thread(target=work) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(out) == 6
    for s in out:
        assert (s.value == ref.value).all() and (s.struct_pages_read == ref.struct_pages_read).all()


def test_from_iomem_probe_rule_and_reserved_pages():
    text = "100000000-10fffffffff : System RAM\n  100000000-1001fffff : Kernel code\n"
    m = memscan.Machine.from_iomem(text)
    assert m.geometry.block_size == 2 << 30  # 1 TiB + 4 GiB end: 2G divides
    assert m.page(0x100000) & 0xF == PageKind.RESERVED
    small = memscan.Machine.from_iomem("100000000-13fffffff : System RAM\n")
    assert small.geometry.block_size == 128 << 20


def test_layout_offline_block_and_tiny_sizes():
    m = tiny(offline_blocks=[33])
    assert m.block_states()[33] == 2
    assert len(m.scan("5.5")) == 2


def test_copy_is_independent_and_equal():
    """Machine.copy(): the same pages, states and answers; changes to one never reach the
    other (the trade-off study populates once and copies)."""
    import numpy as np

    a = memscan.Machine.synthetic("8G", block_size="128M").populate("movable-node", seed=4)
    b = a.copy()
    ids = a.blocks()
    assert all(np.array_equal(a.pages(int(x)), b.pages(int(x))) for x in ids)
    assert (
        a.scan("5.5", progress=False).value.tolist() == b.scan("5.5", progress=False).value.tolist()
    )
    ok = [int(x) for x in ids if a.offline(int(x), "6.1").ok][:3]
    assert ok
    for x in ok:
        assert b.offline(x, "6.1", dry_run=False).applied
    assert all(a.block_state(x) == memscan.BlockState.ONLINE for x in ok)
    assert all(b.block_state(x) == memscan.BlockState.OFFLINE for x in ok)
    assert not np.array_equal(a.pages(ok[0]), b.pages(ok[0]))


def test_arm64_geometry_follows_the_kernel():
    """arm64 SECTION_SIZE_BITS: 30 in v5.5-rc5; from v5.12 (f0b13ee23241, read in 6.1-rc6
    arch/arm64/include/asm/sparsemem.h) 27 with 4K or 16K pages and 29 with 64K; a memory
    block is one section. The node split takes the core's block size, so three nodes of
    4 GiB split at block boundaries on every page size (it used to guess 128 MiB and refuse
    1 GiB-section layouts)."""
    want = {
        (None, "4K"): 30,
        (None, "64K"): 30,
        ("5.5", "16K"): 30,
        ("6.1", "4K"): 27,
        ("6.1", "16K"): 27,
        ("6.1", "64K"): 29,
    }
    for (kernel, ps), bits in want.items():
        m = memscan.Machine.synthetic("4G", arch="arm64", nodes=3, page_size=ps, kernel=kernel)
        g = m.geometry
        assert (g.section_size_bits, g.block_size) == (bits, 1 << bits), (kernel, ps)
        assert sorted(set(m._core.sections()["nid"].tolist())) == [0, 1, 2]
    lay = {"arch": "arm64", "kernel": "6.1", "ranges": [{"start": 1 << 30, "size": "2G"}]}
    assert memscan.Machine.from_layout(lay).geometry.block_size == 128 << 20
    with pytest.raises(memscan.ArgumentError):
        memscan.Machine.synthetic("4G", arch="arm64", kernel="5.10")


def test_memory_after_populate_is_known_before_allocating():
    """populate makes every block with online RAM dense (a byte per page): the estimate
    equals what the model holds afterwards, and a 64 TiB machine's 16 GiB is known without
    allocating it."""
    m = memscan.Machine.synthetic("1G", block_size="128M")
    est = m.memory_bytes(after_populate=True)
    assert est > m.memory_bytes()
    m.populate("idle", seed=1)
    assert m.memory_bytes() == est == m.memory_bytes(after_populate=True)
    big = memscan.Machine.synthetic("64T")
    pages = (64 << 40) // 4096
    assert big.memory_bytes(after_populate=True) - big.memory_bytes() == pages
    assert big.memory_bytes() < 256 << 20  # nothing dense yet


def test_populate_a_subset_of_blocks_gives_them_their_full_populate_pages():
    """populate(blocks=...) fills only those blocks, each with the pages (and pageblock
    migratetypes) a full populate gives it; the others keep their compact pages and cost
    nothing; the memory estimate for the subset is known before and exact after."""
    full = memscan.Machine.synthetic("8G", block_size="128M", nodes=2)
    full.populate("fragmented", seed=4, progress=False)
    m = memscan.Machine.synthetic("8G", block_size="128M", nodes=2)
    chosen = m.blocks()[::8]
    before = m.memory_bytes()
    est = m.memory_bytes(after_populate=True, blocks=chosen)
    assert est - before == len(chosen) * m.geometry.pages_per_block
    m.populate("fragmented", seed=4, progress=False, blocks=list(chosen) + [int(chosen[0])])
    assert m.memory_bytes() == est
    bits, fbits = m._core.pageblock_bits(), full._core.pageblock_bits()
    per = m.geometry.pages_per_block // m.geometry.pageblock_nr_pages
    rest = sorted(set(m.blocks().tolist()) - set(chosen.tolist()))
    for b in chosen.tolist():
        assert (m.pages(b) == full.pages(b)).all(), b
        assert (bits[b * per : (b + 1) * per] == fbits[b * per : (b + 1) * per]).all(), b
    fresh = memscan.Machine.synthetic("8G", block_size="128M", nodes=2)
    for b in rest[:: max(1, len(rest) // 8)]:
        assert (m.pages(b) == fresh.pages(b)).all(), b  # untouched
    # a scan of the sparse machine reads what a page-by-page scan reads (the oracle agrees
    # on the populated blocks; the others are uniform free)
    s = m.scan("5.5", progress=False)
    assert (s.value[np.isin(s.block, rest)] == 1).all()


def test_populate_subset_refuses_blocks_it_cannot_fill():
    m = memscan.Machine.synthetic("4G", block_size="128M")
    with pytest.raises(memscan.NoSuchBlockError, match="memory blocks 0-"):
        m.populate("idle", blocks=[10**6], progress=False)
    hole = next(b for b in range(int(m.blocks()[0])) if b not in set(m.blocks().tolist()))
    with pytest.raises(memscan.ArgumentError, match=f"memory block {hole} has no online RAM"):
        m.populate("idle", blocks=[hole], progress=False)
    with pytest.raises(memscan.ArgumentError, match="after_populate"):
        m.memory_bytes(blocks=[int(m.blocks()[0])])
    assert m.memory_bytes(after_populate=True, blocks=[]) == m.memory_bytes()


def test_copies_share_pages_until_written_and_views_follow_their_own_machine():
    """copy() is copy-on-write per block: a populated machine's copy shares its page bytes
    (shared_bytes), an offline committed on either side changes that side alone, and a
    pages() view shows its own machine's bytes whatever the other side does, before and
    after the copy."""
    m = memscan.Machine.synthetic("4G", block_size="128M")
    m.populate("fragmented", seed=2, progress=False)
    before = {b: m.pages(b).copy() for b in m.blocks().tolist()}
    dense = m.memory_bytes() - memscan.Machine.synthetic("4G", block_size="128M").memory_bytes()
    b0, b1 = (int(x) for x in m.blocks()[-2:])
    view0 = m.pages(b0)  # pinned before the copy: the copy takes its own bytes of b0
    c = m.copy()
    assert 0 < m.shared_bytes() == c.shared_bytes() <= dense
    assert m.shared_bytes() == dense - m.geometry.pages_per_block
    pfn = b0 * m.geometry.pages_per_block
    c.set_pages(pfn, 7, PageKind.HWPOISON)
    assert (view0 == before[b0]).all() and (m.pages(b0) == before[b0]).all()
    m.set_pages(pfn + 100, 1, PageKind.HWPOISON)
    assert view0[100] == PageKind.HWPOISON  # the view follows its machine, in place
    assert c.pages(b0)[100] == before[b0][100] and (c.pages(b0)[:7] == PageKind.HWPOISON).all()
    # a view taken on the copy of a shared block stays the copy's
    view1 = c.pages(b1)
    m.set_pages(b1 * m.geometry.pages_per_block, 3, PageKind.HWPOISON)
    assert (view1 == before[b1]).all()
    for b in m.blocks().tolist():
        if b not in (b0, b1):
            assert (m.pages(b) == before[b]).all(), b


def test_an_offline_committed_on_a_copy_leaves_the_original_alone():
    m = memscan.Machine.synthetic("4G", block_size="128M")
    m.populate("idle", seed=2, progress=False)
    pages = {b: m.pages(b).copy() for b in m.blocks().tolist()}
    states = m.block_states().copy()
    c = m.copy()
    done = [b for b in m.blocks().tolist()[-8:] if c.offline(b, "6.1", dry_run=False).ok]
    assert done, "idle blocks offline"
    assert (c.block_states()[done] != states[done]).all()
    assert (m.block_states() == states).all()
    assert all((m.pages(b) == pages[b]).all() for b in m.blocks().tolist())
    assert c.shared_bytes() < m.memory_bytes()
