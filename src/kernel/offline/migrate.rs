//! The migration loop's side: what blocks migration of a page, the nodes and free pages that
//! may take it (`new_node_page()` 5.5, `alloc_migration_target()` 6.1), the min watermark,
//! and the allocator that hands out target blocks when an offline is committed.

use crate::kernel::profile::KernelProfile;
use crate::page::{
    field_of, kind, kind_of, MigrateType, ZoneType, HSTATE_SLOTS, HUGETLB_FREE, LRU_BATCH,
};
use crate::sections::{Compact, RunView};
use crate::topology::{write_free_range, HugetlbFreeCounts, Machine, TargetSearch};

/// What blocks migration of a page, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Movability {
    /// Free, hwpoisoned (MEMORY_OFFLINE), a tail, a free hugetlb page (dissolved).
    Nothing,
    /// Migratable: pages to move and whether it may land in any zone.
    Migrate { pages: u64, any_zone: bool },
    /// LRU with a long-term pin: isolation passes, migration fails every time.
    Pinned,
    /// Passed isolation (ZONE_MOVABLE) but neither migratable nor free: scan_movable_pages()
    /// does not see it (not LRU, not __PageMovable, not an active hugetlb page).
    Stuck,
    /// Migratable, but no target can be allocated: scan_movable_pages() finds it on every
    /// pass and migration fails every time.
    NoTarget,
    /// 6.1: PageOffline with a reference reached by scan_movable_pages.
    OfflineReferenced,
}

pub(super) fn movability(
    m: &Machine,
    b: u8,
    zone: ZoneType,
    v61: bool,
    cmm: bool,
    balloon: bool,
) -> Movability {
    let movable_src = zone == ZoneType::Movable;
    match kind_of(b) {
        // CMM's MEM_GOING_OFFLINE notifier gives its loaned pages in the range back (5.4).
        kind::OFFLINE if cmm => Movability::Nothing,
        // 5.5+ pseries: CMM pages are balloon pages (__PageMovable): scan_movable_pages()
        // finds them and balloon_page_migrate() moves them
        kind::OFFLINE if balloon => Movability::Migrate {
            pages: 1,
            any_zone: movable_src,
        },
        // an LRU page still in a per-CPU batch is PG_lru again after the loop's
        // lru_add_drain_all(), which runs before scan_movable_pages() in every version
        kind::LRU | kind::MOVABLE => Movability::Migrate {
            pages: 1,
            any_zone: movable_src,
        },
        kind::UNMOVABLE if field_of(b) == LRU_BATCH => Movability::Migrate {
            pages: 1,
            any_zone: movable_src,
        },
        kind::THP_HEAD => Movability::Migrate {
            pages: 1u64 << field_of(b),
            any_zone: true,
        },
        kind::PINNED => Movability::Pinned,
        kind::HUGETLB_HEAD => {
            if field_of(b) & HUGETLB_FREE != 0 {
                Movability::Nothing
            } else {
                let order = m
                    .hstates
                    .get((field_of(b) & 7) as usize)
                    .map_or(0, |h| h.order);
                Movability::Migrate {
                    pages: 1u64 << order,
                    any_zone: true,
                }
            }
        }
        kind::FREE | kind::BUDDY | kind::THP_TAIL | kind::HUGETLB_TAIL | kind::HWPOISON => {
            Movability::Nothing
        }
        // 6.1 scan_movable_pages(): PageOffline with a reference fails the offline
        // (a virtio-mem page lost its reference in MEM_GOING_OFFLINE: see `offline_movability`)
        kind::OFFLINE if v61 => Movability::OfflineReferenced,
        _ => Movability::Stuck,
    }
}

/// `movability()` of page `pfn`, after the MEM_GOING_OFFLINE notifiers: 6.1 virtio-mem drops
/// the reference of its fake-offline pages there, so scan_movable_pages() and
/// do_migrate_range() pass them (refcount 0) and test_pages_isolated() accepts them
/// (PageOffline under MEMORY_OFFLINE); `__offline_isolated_pages()` skips them.
/// Isolation runs before the notifier and passes PageOffline under MEMORY_OFFLINE anyway.
pub(super) fn offline_movability(
    m: &Machine,
    pfn: u64,
    b: u8,
    zone: ZoneType,
    v61: bool,
    cmm: bool,
    balloon: bool,
) -> Movability {
    if v61 && kind_of(b) == kind::OFFLINE && m.virtio_mem_managed(pfn) {
        return Movability::Nothing;
    }
    movability(m, b, zone, v61, cmm, balloon)
}

/// Free pages that may take migrated pages: (kernel-zone pool, movable-zone pool) on the
/// allowed nodes, outside `[start, end)`, outside isolated pageblocks.
/// Nodes migration may allocate on: `new_node_page()` (v5.5) / `alloc_migration_target()`
/// (6.1) take N_MEMORY minus the source node, unless that leaves none.
pub(super) fn allowed_nodes(m: &Machine, src_nid: u16) -> Vec<u16> {
    let with_memory: Vec<u16> = (0..m.nodes.len() as u16)
        .filter(|&n| m.node_online(n))
        .collect();
    if with_memory.iter().any(|&n| n != src_nid) {
        with_memory.into_iter().filter(|&n| n != src_nid).collect()
    } else {
        vec![src_nid]
    }
}

/// Free pages per zone class and free buddy blocks per order, for migration targets.
#[derive(Debug, Default, Clone)]
pub(super) struct FreePool {
    pub(super) kernel: u64,
    pub(super) movable: u64,
    /// Free buddy blocks by order (any zone): hugetlb targets need a whole aligned block.
    pub(super) blocks_by_order: [u64; 16],
}

/// Add the free pages of section `sec` to `pool` if it can hold migration targets (online
/// RAM of the allowed nodes, outside `[start, end)`; isolated pageblocks are passed over),
/// and say whether it can; the free blocks by order too when `orders` (only hugetlb moves
/// read them: without, dense bytes are counted in a loop the compiler vectorises).
pub(super) fn add_free_targets(
    pool: &mut FreePool,
    m: &Machine,
    sec: u64,
    start: u64,
    end: u64,
    allowed: &[u16],
    orders: bool,
) -> bool {
    let g = m.geometry;
    let pps = g.pages_per_section();
    let pbn = g.pageblock_nr_pages();
    let meta = m.store.section_meta(sec);
    let base = g.section_to_pfn(sec);
    if !meta.online()
        || meta.device()
        || !allowed.contains(&meta.nid)
        || (base < end && start < base + pps)
    {
        return false;
    }
    for pb in (base..base + pps).step_by(pbn as usize) {
        if m.store.migratetype(pb) == MigrateType::Isolate {
            continue;
        }
        let run = m.store.run(pb, pbn as usize);
        let mut free = 0u64;
        if let (false, crate::sections::RunView::Dense(bytes)) = (orders, &run) {
            let n: u32 = bytes
                .iter()
                .map(|&b| {
                    let k = kind_of(b);
                    u32::from(k == kind::FREE) + u32::from(k == kind::BUDDY)
                })
                .sum();
            free = u64::from(n);
        } else {
            for i in 0..run.len() {
                let b = run.get(i);
                match kind_of(b) {
                    kind::FREE => free += 1,
                    kind::BUDDY => {
                        free += 1;
                        pool.blocks_by_order[field_of(b) as usize] += 1;
                    }
                    _ => {}
                }
            }
        }
        if m.store.pageblock_zone(pb) == ZoneType::Movable {
            pool.movable += free;
        } else {
            pool.kernel += free;
        }
    }
    true
}

impl FreePool {
    /// Take one page each for `n` base pages, as `n` calls of `take(1, any_zone, None)` would,
    /// and return how many were placed (they stop at the first that finds the pool empty).
    pub(super) fn take_singles(&mut self, n: u64, any_zone: bool) -> u64 {
        let from_movable = if any_zone { n.min(self.movable) } else { 0 };
        let from_kernel = (n - from_movable).min(self.kernel);
        self.movable -= from_movable;
        self.kernel -= from_kernel;
        from_movable + from_kernel
    }

    /// Take `pages` for a page migrating from a kernel zone (only kernel zones may take it) or
    /// from anywhere else (movable zones first). `order` > 0 for hugetlb pages, which need a
    /// free block of at least that order.
    pub(super) fn take(&mut self, pages: u64, any_zone: bool, hugetlb_order: Option<u32>) -> bool {
        if let Some(order) = hugetlb_order {
            let Some(o) = (order as usize..16).find(|&o| self.blocks_by_order[o] > 0) else {
                return false;
            };
            self.blocks_by_order[o] -= 1;
            // the rest of the split block stays free: one block of each order in order..o
            for k in order as usize..o {
                self.blocks_by_order[k] += 1;
            }
        }
        if any_zone {
            let from_movable = pages.min(self.movable);
            if self.kernel < pages - from_movable {
                return false;
            }
            self.movable -= from_movable;
            self.kernel -= pages - from_movable;
            true
        } else if self.kernel >= pages {
            self.kernel -= pages;
            true
        } else {
            false
        }
    }
}

/// The min watermarks of the allowed nodes' zones, summed per class (kernel zones,
/// ZONE_MOVABLE): `__setup_per_zone_wmarks()` (5.5-rc5, 6.1-rc6) gives every zone that is
/// not highmem (ZONE_MOVABLE is not, on 64-bit) `min_free_kbytes` in proportion to its
/// managed pages, and an allocation from a zone must leave its own min free.
pub fn min_reserve(m: &Machine, profile: &KernelProfile, allowed: &[u16]) -> (u64, u64) {
    let total: u64 = m.managed_pages.iter().map(|x| x[0] + x[1]).sum();
    let (k, mv) = allowed.iter().fold((0u64, 0u64), |(a, b), &n| {
        let x = m.managed_pages.get(n as usize).copied().unwrap_or_default();
        (a + x[0], b + x[1])
    });
    let min = u128::from(min_free_pages(m, profile));
    let share = |p: u64| (min * u128::from(p) / u128::from(total.max(1))) as u64;
    (share(k), share(mv))
}

/// The min watermark (pages) under `profile`.
pub fn min_free_pages(m: &Machine, profile: &KernelProfile) -> u64 {
    if profile.offline_path_6_1() {
        m.min_free_pages_6_1
    } else {
        m.min_free_pages
    }
}

/// The pages that keep an offline from finishing, by how the kernel's loop meets them
/// (v5.5-rc5 / 5.6.4 `__offline_pages()`, 6.1-rc6 `offline_pages()`).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Blockers {
    /// The first page scan_movable_pages() returns on every pass (pinned, or no target):
    /// the inner loop never ends, only a signal does (EINTR).
    pub(super) visible: Option<(u64, Movability)>,
    /// 6.1: the first referenced PageOffline page: scan_movable_pages() returns -EBUSY on
    /// reaching it.
    pub(super) offline_ref: Option<u64>,
    /// The first page the scan does not see (stuck in ZONE_MOVABLE): the inner loop ends,
    /// dissolve runs, test_pages_isolated() fails, and the outer loop repeats until a signal.
    pub(super) invisible: Option<u64>,
}

/// Free hugetlb pool pages per hstate for migration targets: `alloc_huge_page_nodemask()`
/// (v5.5-rc5, 5.6.4, 6.1-rc6) dequeues a free pool page on an allowed node when the hstate's
/// free pages exceed its reserved ones, else allocates a fresh huge page from the buddy
/// allocator (`alloc_migrate_huge_page()`, no overcommit limit), which a gigantic hstate
/// cannot do.
#[derive(Debug, Default, Clone)]
pub(super) struct HugetlbPool {
    /// free minus reserved, machine-wide (`available_huge_pages()`)
    pub(super) available: Vec<u64>,
    /// free pool pages on the allowed nodes, outside the range (dequeue_huge_page_nodemask
    /// walks the allowed nodes only; it does not test isolation)
    pub(super) allowed_free: Vec<u64>,
    /// pool pages taken per hstate
    pub(super) taken: Vec<u64>,
}

/// Free hugetlb pool pages per node and hstate: one pass over online RAM, cached on the
/// machine for as long as the page store is unchanged (its generation; a commit keeps the
/// cache valid itself, see `commit_offline`).
pub(super) fn hugetlb_free_counts(m: &Machine) -> HugetlbFreeCounts {
    let generation = m.store.generation();
    let mut cache = m
        .hugetlb_free_cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((gen, counts)) = cache.as_ref() {
        if *gen == generation {
            return counts.clone();
        }
    }
    let counts = std::sync::Arc::new(count_hugetlb_free(m));
    *cache = Some((generation, counts.clone()));
    counts
}

/// The cached counts if they are valid for the store as it is now.
pub(super) fn cached_hugetlb_free_counts(m: &Machine) -> Option<Vec<Vec<u64>>> {
    let cache = m
        .hugetlb_free_cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match cache.as_ref() {
        Some((gen, counts)) if *gen == m.store.generation() => Some(counts.to_vec()),
        _ => None,
    }
}

/// Free hugetlb pool pages per node and hstate, counted over online RAM.
pub(super) fn count_hugetlb_free(m: &Machine) -> Vec<Vec<u64>> {
    let mut counts = vec![vec![0u64; HSTATE_SLOTS]; m.nodes.len().max(1)];
    let g = m.geometry;
    for sec in 0..m.store.nr_sections() {
        let meta = m.store.section_meta(sec);
        if !meta.online() || meta.device() {
            continue;
        }
        let run = m
            .store
            .run(g.section_to_pfn(sec), g.pages_per_section() as usize);
        let Some(node) = counts.get_mut(meta.nid as usize) else {
            continue;
        };
        let mut count = |b: u8| {
            if is_free_hugetlb_head(b) {
                node[(field_of(b) & 7) as usize] += 1;
            }
        };
        match run {
            // boot-time free blocks hold no hugetlb page; a uniform section is one byte
            RunView::Compact {
                how: Compact::Uniform(b),
                len,
                ..
            } => {
                if is_free_hugetlb_head(b) {
                    node[(field_of(b) & 7) as usize] += len as u64;
                }
            }
            RunView::Compact { .. } => {}
            RunView::Dense(bytes) => bytes.iter().copied().for_each(&mut count),
        }
    }
    counts
}

/// The hugetlb pool for migration targets: free minus reserved machine-wide, and the free
/// pages on `allowed` nodes outside `[start, end)` (the range's own are counted from its
/// pages, which only matter when its node is allowed: a one-node machine).
pub(super) fn hugetlb_pool(m: &Machine, start: u64, end: u64, allowed: &[u16]) -> HugetlbPool {
    let n = HSTATE_SLOTS;
    let counts = hugetlb_free_counts(m);
    let free: Vec<u64> = (0..n).map(|h| counts.iter().map(|c| c[h]).sum()).collect();
    let mut allowed_free: Vec<u64> = (0..n)
        .map(|h| {
            allowed
                .iter()
                .filter_map(|&a| counts.get(a as usize))
                .map(|c| c[h])
                .sum()
        })
        .collect();
    let nid = m.store.section_meta(m.geometry.pfn_to_section(start)).nid;
    if allowed.contains(&nid) {
        let run = m.store.run(start, (end - start) as usize);
        for i in 0..run.len() {
            let b = run.get(i);
            if is_free_hugetlb_head(b) {
                if let Some(c) = allowed_free.get_mut((field_of(b) & 7) as usize) {
                    *c = c.saturating_sub(1);
                }
            }
        }
    }
    let available = (0..n)
        .map(|h| free[h].saturating_sub(m.hugetlb_resv.get(h).copied().unwrap_or(0)))
        .collect();
    HugetlbPool {
        available,
        allowed_free,
        taken: vec![0; n],
    }
}

pub(super) fn is_free_hugetlb_head(b: u8) -> bool {
    kind_of(b) == kind::HUGETLB_HEAD && field_of(b) & HUGETLB_FREE != 0
}

/// Give each migratable page a target, in pfn order: hugetlb pages from `huge` first, then
/// from `pool`. Returns the moves, the blockers, and whether the buddy pool ran short.
pub(super) fn assign_targets(
    cands: &[Cand],
    pool: FreePool,
    huge: &mut HugetlbPool,
    max_order: u32,
    to_move: &mut Vec<Move>,
) -> (Blockers, bool) {
    // the caller's vector, emptied: a decision that reads the pool in several runs reuses
    // one allocation (fresh memory costs a page fault per 4 KiB)
    to_move.clear();
    let mut a = Assign {
        pool,
        huge,
        max_order,
        to_move,
        bl: Blockers::default(),
        short: false,
    };
    for c in cands {
        let (pfn, b) = (c.pfn, c.b);
        match c.mv {
            Movability::Nothing => {}
            Movability::Migrate { pages: 1, any_zone } if kind_of(b) != kind::HUGETLB_HEAD => {
                // a run of base pages: each takes one free page (movable zones first when it
                // may), so the run takes what the pool has, and the first it cannot place blocks
                let n = u64::from(c.count);
                let got = a.pool.take_singles(n, any_zone);
                if got > 0 {
                    a.to_move.push(Move {
                        pfn,
                        pages: 1,
                        count: got,
                        any_zone,
                        pool_hstate: None,
                    });
                }
                if got < n {
                    a.short = true;
                    a.bl.visible
                        .get_or_insert((pfn + got, Movability::NoTarget));
                }
            }
            Movability::Migrate { pages, any_zone } => {
                for i in 0..u64::from(c.count) {
                    a.compound(pfn + i * pages, b, pages, any_zone);
                }
            }
            Movability::OfflineReferenced => {
                a.bl.offline_ref.get_or_insert(pfn);
            }
            Movability::Stuck => {
                a.bl.invisible.get_or_insert(pfn);
            }
            other => {
                a.bl.visible.get_or_insert((pfn, other));
            }
        }
    }
    (a.bl, a.short)
}

/// The state of one `assign_targets` pass.
struct Assign<'a> {
    pool: FreePool,
    huge: &'a mut HugetlbPool,
    max_order: u32,
    to_move: &'a mut Vec<Move>,
    bl: Blockers,
    short: bool,
}

impl Assign<'_> {
    /// One compound page (a THP or a hugetlb page) gets its target: a hugetlb page from the
    /// free pool of its hstate first, then a free buddy block of its order.
    fn compound(&mut self, pfn: u64, b: u8, pages: u64, any_zone: bool) {
        let hugetlb = kind_of(b) == kind::HUGETLB_HEAD;
        if hugetlb {
            let (huge, h) = (&mut *self.huge, (field_of(b) & 7) as usize);
            if huge.available.get(h).copied().unwrap_or(0) > 0
                && huge.allowed_free.get(h).copied().unwrap_or(0) > 0
            {
                huge.available[h] -= 1;
                huge.allowed_free[h] -= 1;
                huge.taken[h] += 1;
                self.to_move.push(Move {
                    pfn,
                    pages,
                    count: 1,
                    any_zone,
                    pool_hstate: Some(h),
                });
                return;
            }
            if pages.trailing_zeros() >= self.max_order {
                // gigantic: no fresh page at migration time (alloc_migrate_huge_page)
                self.bl.visible.get_or_insert((pfn, Movability::NoTarget));
                return;
            }
        }
        let order = hugetlb.then(|| pages.trailing_zeros());
        if self.pool.take(pages, any_zone, order) {
            self.to_move.push(Move {
                pfn,
                pages,
                count: 1,
                any_zone,
                pool_hstate: None,
            });
        } else {
            self.short = true;
            self.bl.visible.get_or_insert((pfn, Movability::NoTarget));
        }
    }
}

/// Candidates for migration, in pfn order, as runs: `count` pages (or compounds) of the same
/// page byte and movability, the first at `pfn`, each `pages` after the one before (1 for
/// anything but `Migrate`). A run changes nothing in the per-page order the kernel's scan
/// takes; it lets a block of consecutive LRU pages be placed in one step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cand {
    pub(super) pfn: u64,
    pub(super) count: u32,
    pub(super) b: u8,
    pub(super) mv: Movability,
}

impl Cand {
    /// The distance between the run's pages: a compound's size for `Migrate`, else 1.
    pub(super) fn stride(&self) -> u64 {
        match self.mv {
            Movability::Migrate { pages, .. } => pages,
            _ => 1,
        }
    }
}

/// `count` pages (or compounds of `pages` each, back to back from `pfn`) to migrate, in pfn
/// order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Move {
    pub(super) pfn: u64,
    pub(super) pages: u64,
    pub(super) count: u64,
    /// the hstate whose free pool page is the target (hugetlb pages dequeued from the pool)
    pub(super) pool_hstate: Option<usize>,
    pub(super) any_zone: bool,
}

/// Hands out free buddy blocks as migration targets: per zone class (Movable, kernel zones)
/// and per request kind (order 0, higher order) a cursor that only moves forward, so one
/// commit is linear in the machine size. Zone order follows the zonelist of the allocation:
/// movable-capable requests try ZONE_MOVABLE first, kernel-zone requests only kernel zones.
pub(super) struct TargetAllocator {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) allowed: Vec<u16>,
    /// Cursors, empty pools and the higher-order cursor's largest order; "found empty
    /// twice" holds for the rest of this commit and later ones (pages are only taken, never
    /// freed, while commits run), and behind the higher-order cursor no free block of its
    /// largest order is left, but smaller ones may be.
    pub(super) search: TargetSearch,
}

impl TargetAllocator {
    pub(super) fn new(start: u64, end: u64, allowed: &[u16]) -> Self {
        TargetAllocator {
            start,
            end,
            allowed: allowed.to_vec(),
            search: TargetSearch::default(),
        }
    }

    /// Take `1 << order` free pages (aligned) and return their first pfn; the rest of the
    /// buddy block they came from is freed back as aligned buddies.
    pub(super) fn take(&mut self, m: &mut Machine, any_zone: bool, order: u32) -> Option<u64> {
        let pools: &[bool] = if any_zone { &[true, false] } else { &[false] };
        for &movable in pools {
            let (i, j) = (usize::from(movable), usize::from(order > 0));
            if self.search.exhausted[i][order as usize] {
                continue;
            }
            if j == 1 {
                // a smaller order than the cursor has served may lie behind it
                if order < self.search.max_order[i] {
                    self.search.cursors[i][1] = 0;
                }
                self.search.max_order[i] = order;
            }
            for attempt in 0..2 {
                if attempt == 1 {
                    // split remainders may lie behind the cursor: look once more from the start
                    self.search.cursors[i][j] = 0;
                }
                if let Some(p) = self.scan(m, movable, order) {
                    return Some(p);
                }
            }
            self.search.exhausted[i][order as usize] = true;
        }
        None
    }

    fn scan(&mut self, m: &mut Machine, movable: bool, order: u32) -> Option<u64> {
        let g = m.geometry;
        let pps = g.pages_per_section();
        let pbn = g.pageblock_nr_pages();
        let cursor = &mut self.search.cursors[usize::from(movable)][usize::from(order > 0)];
        let mut p = *cursor;
        while p < m.store.max_pfn {
            let meta = m.store.section_meta(g.pfn_to_section(p));
            let in_range = p >= self.start && p < self.end;
            if !meta.online() || meta.device() || !self.allowed.contains(&meta.nid) || in_range {
                p = (p / pps + 1) * pps;
                continue;
            }
            // whole pageblocks of the wrong zone, isolated, or without a big enough free
            // buddy head are passed over at once; the head test is made on entering a
            // pageblock (within one, the page-by-page walk below finds what it would)
            let pb_end = (p / pbn + 1) * pbn;
            if (m.store.pageblock_zone(p) == ZoneType::Movable) != movable
                || m.store.migratetype(p) == MigrateType::Isolate
                || (p % pbn == 0 && !has_free_head(m.store.run(p, pbn as usize), order))
            {
                p = pb_end;
                continue;
            }
            let b = m.store.page(p);
            if kind_of(b) != kind::BUDDY {
                p += 1;
                continue;
            }
            let o = u32::from(field_of(b));
            if o < order {
                p += 1u64 << o;
                continue;
            }
            write_free_range(
                &mut m.store,
                p + (1u64 << order),
                p + (1u64 << o),
                (g.max_order - 1) as u8,
            );
            *cursor = p + (1u64 << order);
            return Some(p);
        }
        *cursor = p;
        None
    }
}

/// Whether a run holds a free buddy head of at least `order` (branch-free over dense bytes).
pub(super) fn has_free_head(run: crate::sections::RunView<'_>, order: u32) -> bool {
    let want = |b: u8| kind_of(b) == kind::BUDDY && u32::from(field_of(b)) >= order;
    match run {
        crate::sections::RunView::Dense(bytes) => bytes.iter().fold(false, |acc, &b| acc | want(b)),
        v @ crate::sections::RunView::Compact { .. } => (0..v.len()).any(|i| want(v.get(i))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of base pages takes from the pool exactly what as many single takes would.
    #[test]
    fn take_singles_is_repeated_single_takes() {
        for movable in [0u64, 1, 3, 7] {
            for kernel in [0u64, 2, 5] {
                for any_zone in [false, true] {
                    for n in 0..12u64 {
                        let start = FreePool {
                            kernel,
                            movable,
                            ..FreePool::default()
                        };
                        let (mut one, mut run) = (start.clone(), start);
                        let placed =
                            (0..n).take_while(|_| one.take(1, any_zone, None)).count() as u64;
                        assert_eq!(run.take_singles(n, any_zone), placed);
                        assert_eq!((run.kernel, run.movable), (one.kernel, one.movable));
                    }
                }
            }
        }
    }
}
