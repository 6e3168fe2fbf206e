//! Changing the model: a committed offline (pages moved, sections offline, memmap as the
//! kernel leaves it, spans shrunk) and an online.

use crate::error::Result;
use crate::geometry::Arch;
use crate::kernel::profile::{KernelProfile, OfflinedMemmap};
use crate::page::{field_of, kind, kind_of, make, MigrateType};
use crate::sections::{Compact, RunView, SEC_ONLINE};
use crate::topology::{write_free_range, BlockState, Machine, TargetCursors};

use super::migrate::{cached_hugetlb_free_counts, is_free_hugetlb_head, TargetAllocator};
use super::zone::{grow_zone_span, online_zone, set_mem_zone, shrink_zone_spans};
use super::{Errno, OfflinePlan};
use crate::watermark::{account_block, block_managed};

/// Move migrated pages to free memory of the allowed nodes, then take the block offline:
/// sections offline, memmap uninitialised (re-poisoned on DEBUG_VM), pageblocks left
/// MIGRATE_ISOLATE, zone spans shrunk (`remove_pfn_range_from_zone()`).
pub(super) fn commit_offline(
    m: &mut Machine,
    block: u64,
    plan: &OfflinePlan,
    profile: KernelProfile,
) {
    let (isolated, allowed) = (&plan.isolated, plan.allowed.as_slice());
    let g = m.geometry;
    let (start, end) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
    // what the block adds to the managed pages while it is still online
    let leaving = block_managed(m, block);
    let (targets, mut pool) = move_pages(m, block, plan, None);
    for &pb in isolated {
        m.store.set_migratetype(pb, MigrateType::Isolate);
    }
    // What the offlined struct pages hold (every page was free and isolated; HWPoison pages
    // keep their flag from 5.5 on, not kept here).
    let after = match profile.offlined_memmap() {
        OfflinedMemmap::Reserved => kind::RESERVED,
        OfflinedMemmap::Poisoned => kind::UNINIT,
        OfflinedMemmap::Stale => kind::FREE,
    };
    let spb = g.sections_per_block();
    if let Some(p) = pool.as_mut() {
        // the range's own free pool pages were dissolved; its memmap goes offline
        for s in block * spb..(block + 1) * spb {
            let meta = m.store.section_meta(s);
            if !meta.online() || meta.device() {
                continue;
            }
            let base = g.section_to_pfn(s);
            let run = m.store.run(base, g.pages_per_section() as usize);
            for i in 0..run.len() {
                let b = run.get(i);
                if is_free_hugetlb_head(b) {
                    let h = (field_of(b) & 7) as usize;
                    if let Some(c) = p.get_mut(meta.nid as usize).and_then(|n| n.get_mut(h)) {
                        *c = c.saturating_sub(1);
                    }
                }
            }
        }
    }
    for s in block * spb..(block + 1) * spb {
        if m.store.meta[s as usize].present() {
            m.store.meta[s as usize].flags &= !SEC_ONLINE;
            m.store.set_section_compact(s, Compact::Uniform(after));
        }
    }
    // memory_block_offline() (6.1): mem->zone = NULL once the pages are offline
    set_mem_zone(m, block, None);
    m.blocks[block as usize] = BlockState::Offline;
    // s390 sclp_mem_notifier: MEM_OFFLINE unassigns the increments and marks them standby
    if g.arch == Arch::S390x && !m.standby_blocks.contains(&block) {
        m.standby_blocks.push(block);
    }
    shrink_zone_spans(m, start, end);
    // init_per_zone_wmark_min() runs again after an offline
    m.hotplugged = true;
    account_block(m, &leaving, false);
    // the commit's own writes after the moves (isolation bits, the offlined memmap) free no
    // target pages behind the cursors
    if let Some(p) = pool {
        *m.hugetlb_free_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((m.store.generation(), std::sync::Arc::new(p)));
    }
    m.target_cursors = Some(TargetCursors {
        generation: m.store.generation(),
        allowed: allowed.to_vec(),
        search: targets.search,
    });
}

/// Migrate the plan's pages to free memory of the allowed nodes, in pfn order (a hugetlb page
/// dequeued from the free pool becomes that pool page). Returns the target search where it
/// stopped and the free hugetlb pool counts as they stand after, when they were cached.
///
/// `left`: what each source becomes once the write fails afterwards (`commit_moves`):
/// `(pfn, pages, Left::Free)` for a page that reached its target, `Left::BasePage` for a
/// base page of a split THP that did not (it stays, no longer part of a THP). A page without
/// a target is not listed: it stays as it was.
fn move_pages(
    m: &mut Machine,
    block: u64,
    plan: &OfflinePlan,
    mut left: Option<&mut Vec<(u64, u64, Left)>>,
) -> (TargetAllocator, Option<Vec<Vec<u64>>>) {
    let (moves, allowed) = (&plan.moves, plan.allowed.as_slice());
    let g = m.geometry;
    let (start, end) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
    let mut targets = TargetAllocator::new(start, end, allowed);
    // the free hugetlb pool as counted before the commit, kept up to date below so the next
    // decision need not count the whole machine again
    let mut pool = cached_hugetlb_free_counts(m);
    // pick up where the last commit's search stopped if nothing but commits changed the
    // pages since: commits only take free pages, so what was used up stays used up
    if let Some(t) = &m.target_cursors {
        if t.generation == m.store.generation() && t.allowed.as_slice() == allowed {
            targets.search = t.search.clone();
        }
    }
    let mut pool_cursor = [0u64; crate::page::HSTATE_SLOTS];
    let pages_of = moves
        .iter()
        .flat_map(|mv| (0..mv.count).map(move |i| (mv, mv.pfn + i * mv.pages)));
    for (mv, pfn) in pages_of {
        let b = m.store.page(pfn);
        if let Some(h) = mv.pool_hstate {
            // dequeued from the free pool: that page is now the in-use huge page
            if let Some(dst) = free_pool_page(m, h, &mut pool_cursor[h], start, end, allowed) {
                if let Some(p) = pool.as_mut() {
                    let nid = m.store.section_meta(g.pfn_to_section(dst)).nid as usize;
                    if let Some(c) = p.get_mut(nid).and_then(|n| n.get_mut(h)) {
                        *c = c.saturating_sub(1);
                    }
                }
                m.store.set_pages(dst, 1, make(kind::HUGETLB_HEAD, h as u8));
                m.store
                    .set_pages(dst + 1, mv.pages - 1, make(kind::HUGETLB_TAIL, h as u8));
                if let Some(l) = left.as_deref_mut() {
                    l.push((pfn, mv.pages, Left::Free));
                }
            }
            continue;
        }
        let order = mv.pages.trailing_zeros();
        if let Some(dst) = targets.take(m, mv.any_zone, order) {
            m.store.set_pages(dst, 1, b);
            if mv.pages > 1 {
                let tail = if kind_of(b) == kind::THP_HEAD {
                    kind::THP_TAIL
                } else {
                    make(kind::HUGETLB_TAIL, field_of(b))
                };
                m.store.set_pages(dst + 1, mv.pages - 1, tail);
            }
            if let Some(l) = left.as_deref_mut() {
                l.push((pfn, mv.pages, Left::Free));
            }
        } else if mv.pages > 1 {
            // No free block of the THP's order: the THP is split and its base pages migrate
            // one by one (the prediction already counted the pages).
            for i in 0..mv.pages {
                let placed = targets.take(m, mv.any_zone, 0);
                if let Some(dst) = placed {
                    m.store.set_pages(dst, 1, kind::LRU);
                }
                if let Some(l) = left.as_deref_mut() {
                    let how = if placed.is_some() {
                        Left::Free
                    } else {
                        Left::BasePage
                    };
                    l.push((pfn + i, 1, how));
                }
            }
        }
    }
    (targets, pool)
}

/// What a migrated page's source becomes after a failed write (`move_pages`).
#[derive(Debug, Clone, Copy)]
enum Left {
    Free,
    BasePage,
}

/// A failed offline that got as far as the migration loop (v5.5-rc5 / 5.6.4
/// `__offline_pages()`, 6.1-rc6 `offline_pages()`): what `do_migrate_range()` moved stays
/// moved when the write fails (a signal during the retries, a page it cannot dissolve, a
/// referenced PageOffline page); only the isolation is undone (`undo_isolate_page_range()`).
/// The plan's pages move to their targets and their old pages are free (the kernel frees a
/// migrated page's source to the buddy allocator); the block stays online, its pageblocks
/// as they were. Not modeled: a free hugetlb page dissolved before a failing one (the pool
/// keeps it), and a migrated hugetlb page's old page returning to its pool (it is freed to
/// the buddy allocator here).
pub(super) fn commit_moves(m: &mut Machine, block: u64, plan: &OfflinePlan) {
    let mut left = Vec::new();
    let _ = move_pages(m, block, plan, Some(&mut left));
    let top = (m.geometry.max_order - 1) as u8;
    for (pfn, pages, how) in left {
        match how {
            // freed to the buddy allocator, as buddy blocks a later target search can take
            // (merged within the page's own range, not with free neighbours)
            Left::Free => write_free_range(&mut m.store, pfn, pfn + pages, top),
            Left::BasePage => m.store.set_pages(pfn, 1, kind::LRU),
        }
    }
    // pages were freed inside the allowed nodes' memory: the target search restarts
    m.target_cursors = None;
}

/// `echo <online_type> > memoryN/state` for an offline block: the memmap is initialised into
/// the chosen zone, every page freed to the buddy allocator, pageblocks MIGRATE_MOVABLE.
pub fn online_block(m: &mut Machine, block: u64, online_type: &str) -> Result<Option<Errno>> {
    let state = m.block_state(block)?;
    let (nid, zone) = online_zone(m, block, online_type)?;
    if state != BlockState::Offline {
        // device_online() returns 1 for an online device: -EINVAL.
        return Ok(Some(Errno::Einval));
    }
    // memory_block_online() (6.1): mem->zone = the zone chosen, before any span grows
    set_mem_zone(m, block, Some((nid, zone)));
    let g = m.geometry;
    let spb = g.sections_per_block();
    let pbn = g.pageblock_nr_pages();
    for s in block * spb..(block + 1) * spb {
        let meta = m.store.section_meta(s);
        if !meta.present() || meta.device() {
            continue;
        }
        m.store.meta[s as usize].flags |= SEC_ONLINE;
        let base = g.section_to_pfn(s);
        write_free_range(
            &mut m.store,
            base,
            base + g.pages_per_section(),
            (g.max_order - 1) as u8,
        );
        for pb in (base..base + g.pages_per_section()).step_by(pbn as usize) {
            m.store.set_pageblock_zone(pb, zone);
            m.store.set_migratetype(pb, MigrateType::Movable);
        }
    }
    m.blocks[block as usize] = BlockState::Online;
    // s390 sclp_mem_notifier (v5.5-rc5): MEM_GOING_ONLINE assigns the block's storage
    // increments and clears their standby mark, so an onlined standby block is not vetoed
    m.standby_blocks.retain(|&b| b != block);
    if let Some(n) = m.nodes.get_mut(nid as usize) {
        n.online = true;
    }
    grow_zone_span(
        m,
        nid,
        zone,
        g.block_to_pfn(block),
        g.block_to_pfn(block + 1),
    );
    // online_pages() runs init_per_zone_wmark_min() again
    m.hotplugged = true;
    let joining = block_managed(m, block);
    account_block(m, &joining, true);
    Ok(None)
}

/// The next free pool page of hstate `h` on the allowed nodes outside `[start, end)`, from
/// `cursor` on (`dequeue_huge_page_nodemask()`; which free page the kernel picks is its
/// free list's order, taken here as pfn order).
fn free_pool_page(
    m: &Machine,
    h: usize,
    cursor: &mut u64,
    start: u64,
    end: u64,
    allowed: &[u16],
) -> Option<u64> {
    let g = m.geometry;
    let pps = g.pages_per_section();
    let wanted = |b: u8| is_free_hugetlb_head(b) && (field_of(b) & 7) as usize == h;
    let mut p = *cursor;
    while p < m.store.max_pfn {
        let sec_end = (p / pps + 1) * pps;
        let meta = m.store.section_meta(g.pfn_to_section(p));
        if !meta.online() || meta.device() || !allowed.contains(&meta.nid) {
            p = sec_end;
            continue;
        }
        if (start..end).contains(&p) {
            p = end;
            continue;
        }
        // the rest of this section, up to the range being offlined
        let stop = if p < start {
            sec_end.min(start)
        } else {
            sec_end
        };
        let found = match m.store.run(p, (stop - p) as usize) {
            // a section held compact (one byte, or boot-time free blocks) holds no hugetlb
            // page unless its one byte is one: decided without a page-by-page walk
            RunView::Compact {
                how: Compact::Uniform(b),
                ..
            } => wanted(b).then_some(p),
            RunView::Compact { .. } => None,
            RunView::Dense(bytes) => bytes.iter().position(|&b| wanted(b)).map(|i| p + i as u64),
        };
        if let Some(q) = found {
            *cursor = q + 1;
            return Some(q);
        }
        p = stop;
    }
    *cursor = p;
    None
}

#[cfg(test)]
mod tests {
    use super::super::migrate::{count_hugetlb_free, hugetlb_free_counts};
    use super::super::{offline_block, OfflineOptions};
    use crate::kernel::testutil::{block, kernel, machine_with_hstates};
    use crate::topology::Hstate;
    use crate::workload::{populate, Workload};

    #[test]
    fn a_commit_keeps_the_cached_hugetlb_pool_equal_to_a_recount() {
        let hs = vec![Hstate {
            order: 9,
            migration_supported: true,
        }];
        let mut m = machine_with_hstates(8, &[], hs);
        let w = Workload {
            hugetlb: 0.4,
            hugetlb_free: 0.5,
            unmovable: 0.0,
            polluted_pageblocks: 0.0,
            movable: 0.0,
            thp: 0.0,
            ..Workload::default()
        };
        populate(&mut m, &w, 3).unwrap();
        let opts = OfflineOptions {
            dry_run: false,
            patience_rounds: 10,
        };
        let mut applied = 0;
        for i in [7, 6, 5, 4] {
            hugetlb_free_counts(&m); // the cache is valid before the commit
            let o = offline_block(&mut m, block(i), &kernel("6.1"), opts).unwrap();
            applied += usize::from(o.applied);
            let cached = hugetlb_free_counts(&m);
            assert_eq!(*cached, count_hugetlb_free(&m), "after offlining block {i}");
        }
        assert!(applied > 0, "no offline committed: the test shows nothing");
    }
}
