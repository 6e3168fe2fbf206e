//! Offlining and onlining a memory block, and `valid_zones`.
//!
//! v5.5/v5.6 (kernel-semantics.md section 6): `state_store()` → `device_offline()` →
//! `memory_subsys_offline()` (the `section_count` refusal) → `memory_block_change_state()`
//! (MEM_GOING_OFFLINE while it runs) → `__offline_pages()`: memory-holes check (v5.6,
//! c5e79ef561b0 [U] version), `test_pages_in_a_zone()`, `start_isolate_page_range()` with
//! `has_unmovable_pages(MEMORY_OFFLINE|REPORT_FAILURE)` in ascending pageblock order and a
//! `drain_all_pages()` per isolated pageblock, MEM_GOING_OFFLINE notifiers, the migration loop
//! (`scan_movable_pages()`, `do_migrate_range()` with its result ignored, `lru_add_drain_all()`
//! each pass), `dissolve_free_huge_pages()`, `test_pages_isolated()`, commit.
//!
//! v6.1 (kernel-6.1-offline.md): the cached `mem->zone` (NULL → EINVAL without a reason), the
//! memory-holes check, `zone_pcp_disable()` + `lru_cache_disable()` once, isolation of the
//! first, the last, then the middle pageblocks, the 6.1 `has_unmovable_pages()`, the arm64
//! boot-memory veto, the -EBUSY bail-out for referenced PageOffline pages.
//!
//! A page that can never migrate makes the kernel loop until a signal: the model stops after
//! `patience_rounds` passes and answers EINTR "signal backoff", with the work done until then.

use crate::cost::ScanCost;
use crate::error::{Error, Result};
use crate::geometry::Arch;
use crate::kernel::pageinfo::{page_zone, Fault};
use crate::kernel::profile::{KernelProfile, KernelVersion};
use crate::kernel::unmovable::{
    cmm_balloon_movable, has_unmovable_pages, has_unmovable_pages_6_1, MEMORY_OFFLINE,
    REPORT_FAILURE,
};
use crate::page::{field_of, kind, kind_of, make, MigrateType, ZoneType, HUGETLB_FREE, LRU_BATCH};
use crate::sections::{Compact, SEC_ONLINE};
use crate::topology::{
    write_free_range, BlockState, Machine, TargetCursors, TargetSearch, ZoneSpan,
};

/// The errno a write to `memoryN/state` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    Einval,
    Ebusy,
    Eperm,
    Eintr,
}

impl Errno {
    pub fn name(self) -> &'static str {
        match self {
            Errno::Einval => "EINVAL",
            Errno::Ebusy => "EBUSY",
            Errno::Eperm => "EPERM",
            Errno::Eintr => "EINTR",
        }
    }
}

/// Work the kernel does during one offline attempt, in the scan's units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfflineWork {
    pub struct_pages_read: u64,
    pub pageblocks_isolated: u64,
    pub pages_migrated: u64,
    pub migration_rounds: u64,
    pub lru_add_drain_all: u64,
    pub drain_all_pages: u64,
}

/// The answer to `echo offline > memoryN/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineOutcome {
    pub block: u64,
    /// `None` is success.
    pub errno: Option<Errno>,
    /// The reason `__offline_pages()` logs ("memory holes", "failure to isolate range", ...),
    /// or the refusal before it ("non-present sections", "already offline", ...).
    pub reason: Option<&'static str>,
    /// The page that decided it (the dumped unmovable page, the page the loop is stuck on).
    pub pfn: Option<u64>,
    /// Why a page blocks, in plain words.
    pub detail: Option<String>,
    /// A struct-page fault met on the way (the kernel BUGs or oopses there).
    pub fault: Option<Fault>,
    pub work: OfflineWork,
    /// Whether the model was changed (not a dry run, and the offline succeeded).
    pub applied: bool,
}

/// How to run an offline.
#[derive(Debug, Clone, Copy)]
pub struct OfflineOptions {
    pub dry_run: bool,
    /// Migration passes before the writer's patience runs out and a signal ends the write.
    pub patience_rounds: u64,
}

impl Default for OfflineOptions {
    fn default() -> Self {
        OfflineOptions {
            dry_run: true,
            patience_rounds: 1000,
        }
    }
}

fn is_v61(p: KernelProfile) -> bool {
    p.version == KernelVersion::V6_1
}

fn fail(
    block: u64,
    errno: Errno,
    reason: Option<&'static str>,
    work: OfflineWork,
) -> OfflineOutcome {
    OfflineOutcome {
        block,
        errno: Some(errno),
        reason,
        pfn: None,
        detail: None,
        fault: None,
        work,
        applied: false,
    }
}

/// Sections of the block that are present and not ZONE_DEVICE (`mem->section_count`).
fn section_count(m: &Machine, block: u64) -> u64 {
    let spb = m.geometry.sections_per_block();
    (block * spb..(block + 1) * spb)
        .filter(|&s| {
            let meta = m.store.section_meta(s);
            meta.present() && !meta.device()
        })
        .count() as u64
}

/// Pages of busy System RAM in the range: `walk_system_ram_range()` +
/// `count_system_ram_pages_cb` over the iomem "System RAM" resources (no struct page is read).
fn system_ram_pages(m: &Machine, start: u64, end: u64) -> u64 {
    m.system_ram
        .iter()
        .map(|&(s, e)| e.min(end).saturating_sub(s.max(start)))
        .sum()
}

/// v5.5 `test_pages_in_a_zone()`: one page per MAX_ORDER_NR_PAGES of each present section
/// must lie in one zone that spans it. Returns the (nid, zone).
fn test_pages_in_a_zone(
    m: &Machine,
    start: u64,
    end: u64,
    profile: KernelProfile,
    work: &mut OfflineWork,
) -> std::result::Result<Option<(u16, ZoneType)>, Fault> {
    let g = m.geometry;
    let mut found: Option<(u16, ZoneType)> = None;
    let mut pfn = start;
    while pfn < end {
        let meta = m.store.section_meta(g.pfn_to_section(pfn));
        if !meta.present() {
            pfn += g.pages_per_section();
            continue;
        }
        // 5.4.59 / v5.5 test_pages_in_a_zone(): "if (zone && !zone_spans_pfn(zone, pfn))
        // return 0" comes before the page_zone() read, so a pfn outside the first page's zone
        // ends the test without touching its struct page (a real 5.4.59 +debug kernel BUGs
        // here, RIP test_pages_in_a_zone, only where that zone spans the poisoned pfn).
        if let Some(z) = found {
            if !m.zone_span(z.0, z.1).spans(pfn) {
                return Ok(None);
            }
        }
        work.struct_pages_read += 1;
        let (nid, zone, _) = page_zone(m, pfn, &profile, "test_pages_in_a_zone")?;
        if let Some(z) = found {
            if z != (nid, zone) {
                return Ok(None);
            }
        } else {
            found = Some((nid, zone));
        }
        pfn += g.max_order_nr_pages();
    }
    Ok(found)
}

/// v6.1 `early_node_zone_for_memory_block()` (drivers/base/memory.c, 6.1-rc6): the boot
/// value of `mem->zone`, set when the node registers its early blocks
/// (`memory_block_add_nid()`, MEMINIT_EARLY): the one populated zone of the block's node whose
/// span intersects the block; `None` for two or more zones, or where a second node registers
/// the same block.
pub fn early_zone(m: &Machine, block: u64) -> Option<(u16, ZoneType)> {
    let g = m.geometry;
    let spb = g.sections_per_block();
    let mut nids: Vec<u16> = (block * spb..(block + 1) * spb)
        .map(|s| m.store.section_meta(s))
        .filter(|x| x.present() && !x.device())
        .map(|x| x.nid)
        .collect();
    nids.dedup();
    if nids.len() != 1 {
        return None;
    }
    let nid = nids[0];
    let (s, e) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
    let mut zones = ZoneType::ALL
        .iter()
        .copied()
        .filter(|&z| z != ZoneType::Device)
        .filter(|&z| {
            let span = m.zone_span(nid, z);
            span.start_pfn < e && s < span.end_pfn
        });
    match (zones.next(), zones.next()) {
        (Some(z), None) => Some((nid, z)),
        _ => None,
    }
}

/// v6.1 `mem->zone`: its boot value (`early_zone`) for a block online at boot (blocks added
/// offline, hot-added or coldplugged DIMMs, start NULL), then what `memory_block_online()`
/// set (the zone the online chose) or `memory_block_offline()` cleared (NULL). It is never
/// recomputed from the zone spans, which overlap once a block inside one zone's span is
/// onlined to another (6.1-rc6 drivers/base/memory.c).
pub fn mem_zone(m: &Machine, block: u64) -> Option<(u16, ZoneType)> {
    match &m.mem_zone {
        Some(v) => v.get(block as usize).copied().flatten(),
        None if m.blocks.get(block as usize) == Some(&BlockState::Online)
            || m.blocks.get(block as usize) == Some(&BlockState::GoingOffline) =>
        {
            early_zone(m, block)
        }
        None => None,
    }
}

/// Record a new `mem->zone` for `block`, keeping every other block's boot value (computed
/// now, before the state change alters any zone span).
fn set_mem_zone(m: &mut Machine, block: u64, zone: Option<(u16, ZoneType)>) {
    if m.mem_zone.is_none() {
        let all = (0..m.nr_blocks()).map(|b| mem_zone(m, b)).collect();
        m.mem_zone = Some(all);
    }
    if let Some(slot) = m.mem_zone.as_mut().and_then(|v| v.get_mut(block as usize)) {
        *slot = zone;
    }
}

/// 5.4 pseries: `memory_isolate_notify(MEM_ISOLATE_COUNT)` reaches the CMM balloon, which
/// reports the pages it has loaned in the pageblock (modeled as its PG_offline pages); they are
/// passed to `has_unmovable_pages()` as `count`. v5.5-rc5 has no such notifier: CMM uses
/// balloon compaction (see `unmovable::cmm_balloon_movable`).
fn cmm_isolate_count(m: &Machine, profile: KernelProfile, pb: u64) -> u32 {
    if !cmm_notifier(m, profile) {
        return 0;
    }
    let run = m.store.run(pb, m.geometry.pageblock_nr_pages() as usize);
    (0..run.len())
        .filter(|&i| kind_of(run.get(i)) == kind::OFFLINE)
        .count() as u32
}

/// Whether the pseries CMM balloon's memory notifiers are registered: 5.4.18 cmm.c
/// registers the isolate notifier (and gives its pages back in MEM_GOING_OFFLINE); v5.5-rc5
/// does not (read in both).
fn cmm_notifier(m: &Machine, profile: KernelProfile) -> bool {
    m.geometry.arch == Arch::Ppc64 && profile.version == KernelVersion::V5_4
}

/// What blocks migration of a page, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Movability {
    /// Free, hwpoisoned (MEMORY_OFFLINE), a tail, a free hugetlb page (dissolved).
    Nothing,
    /// Migratable: pages to move and whether it may land in any zone.
    Migrate { pages: u64, any_zone: bool },
    /// LRU with a long-term pin: isolation passes, migration fails every time.
    Pinned,
    /// Passed isolation (ZONE_MOVABLE) but neither migratable nor free.
    Stuck,
    /// 6.1: PageOffline with a reference reached by scan_movable_pages.
    OfflineReferenced,
}

fn movability(
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
        kind::OFFLINE if v61 => Movability::OfflineReferenced,
        _ => Movability::Stuck,
    }
}

/// Free pages that may take migrated pages: (kernel-zone pool, movable-zone pool) on the
/// allowed nodes, outside `[start, end)`, outside isolated pageblocks.
/// Nodes migration may allocate on: `new_node_page()` (v5.5) / `alloc_migration_target()`
/// (6.1) take N_MEMORY minus the source node, unless that leaves none.
fn allowed_nodes(m: &Machine, src_nid: u16) -> Vec<u16> {
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
struct FreePool {
    kernel: u64,
    movable: u64,
    /// Free buddy blocks by order (any zone): hugetlb targets need a whole aligned block.
    blocks_by_order: [u64; 16],
}

/// Add the free pages of sections `secs` (allowed nodes, online, outside `[start, end)`, not
/// isolated) to `pool`.
fn add_free_targets(
    pool: &mut FreePool,
    m: &Machine,
    secs: std::ops::Range<u64>,
    start: u64,
    end: u64,
    allowed: &[u16],
) {
    let g = m.geometry;
    let pps = g.pages_per_section();
    let pbn = g.pageblock_nr_pages();
    for sec in secs {
        let meta = m.store.section_meta(sec);
        if !meta.online() || meta.device() || !allowed.contains(&meta.nid) {
            continue;
        }
        let base = g.section_to_pfn(sec);
        if base < end && start < base + pps {
            continue;
        }
        for pb in (base..base + pps).step_by(pbn as usize) {
            if m.store.migratetype(pb) == MigrateType::Isolate {
                continue;
            }
            let run = m.store.run(pb, pbn as usize);
            let mut free = 0u64;
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
            if m.store.pageblock_zone(pb) == ZoneType::Movable {
                pool.movable += free;
            } else {
                pool.kernel += free;
            }
        }
    }
}

impl FreePool {
    /// Take `pages` for a page migrating from a kernel zone (only kernel zones may take it) or
    /// from anywhere else (movable zones first). `order` > 0 for hugetlb pages, which need a
    /// free block of at least that order.
    fn take(&mut self, pages: u64, any_zone: bool, hugetlb_order: Option<u32>) -> bool {
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

/// `min_free_kbytes` as `init_per_zone_wmark_min()` sets it (v5.5: int_sqrt(lowmem_kbytes *
/// 16), clamped to 128..65536), in pages: the min watermark migration targets must leave.
pub fn compute_min_free_pages(m: &Machine) -> u64 {
    let g = m.geometry;
    let mut lowmem_pages = 0u64;
    for sec in 0..m.store.nr_sections() {
        let meta = m.store.section_meta(sec);
        if meta.online() && !meta.device() {
            let base = g.section_to_pfn(sec);
            for pb in (base..base + g.pages_per_section()).step_by(g.pageblock_nr_pages() as usize)
            {
                if m.store.pageblock_zone(pb) != ZoneType::Movable {
                    lowmem_pages += g.pageblock_nr_pages();
                }
            }
        }
    }
    let kbytes = lowmem_pages * (g.page_size() / 1024);
    let min_kb = ((kbytes * 16) as f64).sqrt() as u64;
    min_kb.clamp(128, 65536) * 1024 / g.page_size()
}

/// `echo offline > memoryN/state` under `profile`.
pub fn offline_block(
    m: &mut Machine,
    block: u64,
    profile: &KernelProfile,
    opts: OfflineOptions,
) -> Result<OfflineOutcome> {
    let state = m.block_state(block)?;
    let mut work = OfflineWork::default();
    let v61 = is_v61(*profile);
    // device_offline() returns 1 for an offline device: state_store() turns it into -EINVAL.
    match state {
        BlockState::Offline => {
            return Ok(fail(block, Errno::Einval, Some("already offline"), work))
        }
        // memory_block_change_state(): the state is not MEM_ONLINE.
        BlockState::GoingOffline => {
            return Ok(fail(
                block,
                Errno::Einval,
                Some("state is not online"),
                work,
            ))
        }
        _ => {}
    }
    if !profile.memory_hotremove {
        return Ok(fail(
            block,
            Errno::Einval,
            Some("no CONFIG_MEMORY_HOTREMOVE"),
            work,
        ));
    }
    let g = m.geometry;
    let (start, end) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
    let zone = if v61 {
        // memory_block_offline(): mem->zone == NULL → -EINVAL, no reason logged.
        let Some(z) = mem_zone(m, block) else {
            return Ok(fail(block, Errno::Einval, None, work));
        };
        if system_ram_pages(m, start, end) != end - start {
            return Ok(fail(block, Errno::Einval, Some("memory holes"), work));
        }
        z
    } else {
        // memory_subsys_offline(): "Can't offline block with non-present sections".
        if section_count(m, block) != g.sections_per_block() {
            return Ok(fail(
                block,
                Errno::Einval,
                Some("non-present sections"),
                work,
            ));
        }
        // v5.5 __offline_pages(): walk_system_ram_range(count_system_ram_pages_cb) right
        // after mem_hotplug_begin(), before test_pages_in_a_zone(); 5.4 has no such check.
        if profile.has_memory_holes_check() && system_ram_pages(m, start, end) != end - start {
            return Ok(fail(block, Errno::Einval, Some("memory holes"), work));
        }
        match test_pages_in_a_zone(m, start, end, *profile, &mut work) {
            Err(f) => {
                let mut o = fail(block, Errno::Einval, Some("multizone range"), work);
                o.pfn = Some(f.pfn);
                o.fault = Some(f);
                return Ok(o);
            }
            Ok(None) => return Ok(fail(block, Errno::Einval, Some("multizone range"), work)),
            Ok(Some(z)) => z,
        }
    };
    if v61 {
        // zone_pcp_disable() and lru_cache_disable(): one drain of each, before isolation.
        work.drain_all_pages += 1;
        work.lru_add_drain_all += 1;
    }

    // start_isolate_page_range(): pageblock order and the per-pageblock test.
    let pbn = g.pageblock_nr_pages();
    let mut order: Vec<u64> = (start..end).step_by(pbn as usize).collect();
    if v61 && order.len() > 1 {
        let last = order.pop().expect("len > 1");
        order.insert(1, last);
    }
    let flags = MEMORY_OFFLINE | REPORT_FAILURE;
    let mut isolated = Vec::new();
    for &pb in &order {
        let meta = m.store.section_meta(g.pfn_to_section(pb));
        if !meta.online() {
            continue; // __first_valid_page(): no online page in this pageblock
        }
        if m.store.migratetype(pb) == MigrateType::Isolate {
            let mut o = fail(block, Errno::Ebusy, Some("failure to isolate range"), work);
            o.detail = Some("pageblock already isolated by someone else".into());
            return Ok(o);
        }
        let mut cost = ScanCost::default();
        let r = if v61 {
            has_unmovable_pages_6_1(
                m,
                pb,
                pb + pbn,
                MigrateType::Movable,
                flags,
                profile,
                &mut cost,
            )
        } else {
            has_unmovable_pages(
                m,
                m.store.pageblock_zone(pb),
                pb,
                cmm_isolate_count(m, *profile, pb),
                MigrateType::Movable,
                flags,
                profile,
                &mut cost,
            )
        };
        work.struct_pages_read += cost.struct_pages_read;
        match r {
            Err(f) => {
                let mut o = fail(block, Errno::Ebusy, Some("failure to isolate range"), work);
                o.pfn = Some(f.pfn);
                o.fault = Some(f);
                return Ok(o);
            }
            Ok(Some(u)) => {
                let mut o = fail(block, Errno::Ebusy, Some("failure to isolate range"), work);
                o.pfn = Some(u.pfn);
                o.detail = Some(format!("dump_page: {}", u.reason));
                return Ok(o);
            }
            Ok(None) => {
                isolated.push(pb);
                work.pageblocks_isolated += 1;
                if !v61 {
                    work.drain_all_pages += 1;
                }
            }
        }
    }

    // MEM_GOING_OFFLINE notifiers (arch policies).
    // s390 sclp_mem_notifier(): no offline of a block that contains standby memory.
    if profile.arch == Arch::S390x && m.standby_blocks.contains(&block) {
        let mut o = fail(block, Errno::Eperm, Some("notifier failure"), work);
        o.detail = Some("s390 sclp_mem_notifier: the block contains standby memory".into());
        return Ok(o);
    }
    if v61 && profile.arch == Arch::Arm64 {
        let spb = g.sections_per_block();
        if (block * spb..(block + 1) * spb).any(|s| m.store.section_meta(s).early()) {
            let mut o = fail(block, Errno::Eperm, Some("notifier failure"), work);
            o.detail = Some("arm64 prevent_bootmem_remove_notifier: boot memory".into());
            return Ok(o);
        }
    }

    // Migration loop. The pages to move, in pfn order; then the free pool of the allowed
    // nodes, read section by section only as far as the moves need (a pool that covers every
    // move gives the same answer as the whole machine's).
    let cmm = cmm_notifier(m, *profile);
    let balloon = cmm_balloon_movable(m, profile);
    // pageblock by pageblock over the block's bytes (one zone lookup per pageblock); free
    // pages and buddy heads, the bulk of an offlinable block, need nothing
    let pbn = g.pageblock_nr_pages();
    let mut cands: Vec<(u64, u8, Movability)> = Vec::new();
    for pb in (start..end).step_by(pbn as usize) {
        let zone_of_pb = m.store.pageblock_zone(pb);
        let run = m.store.run(pb, pbn as usize);
        for i in 0..run.len() {
            let b = run.get(i);
            if matches!(kind_of(b), kind::FREE | kind::BUDDY) {
                continue;
            }
            let mv = movability(m, b, zone_of_pb, v61, cmm, balloon);
            if mv != Movability::Nothing {
                cands.push((pb + i as u64, b, mv));
            }
        }
    }
    let allowed = allowed_nodes(m, zone.0);
    // the min watermark stays free (kernel zones; an approximation of per-zone watermarks)
    let reserve = m.min_free_pages;
    let mut pool = FreePool::default();
    let (mut next_sec, mut chunk) = (0u64, 1u64);
    let (to_move, blocker) = loop {
        let upto = (next_sec + chunk).min(m.store.nr_sections());
        add_free_targets(&mut pool, m, next_sec..upto, start, end, &allowed);
        next_sec = upto;
        chunk *= 2;
        let mut p = pool.clone();
        p.kernel = p.kernel.saturating_sub(reserve);
        let (moves, blocker, short) = assign_targets(&cands, p);
        if !short || next_sec == m.store.nr_sections() {
            break (moves, blocker);
        }
    };
    let migrated: u64 = to_move.iter().map(|x| x.pages).sum();
    work.pages_migrated = migrated;
    if let Some((pfn, why)) = blocker {
        if why == Movability::OfflineReferenced {
            // 6.1 scan_movable_pages(): PageOffline with a reference → -EBUSY, after the pages
            // before it migrated.
            work.migration_rounds += 1;
            let mut o = fail(block, Errno::Ebusy, Some("unmovable page"), work);
            o.pfn = Some(pfn);
            o.detail = Some("PageOffline page still referenced by its driver".into());
            return Ok(o);
        }
        work.migration_rounds = opts.patience_rounds;
        // every pass re-scans from the stuck page to the block end
        work.struct_pages_read += (end - pfn) * opts.patience_rounds;
        if !v61 {
            work.lru_add_drain_all += opts.patience_rounds;
        }
        let mut o = fail(block, Errno::Eintr, Some("signal backoff"), work);
        o.pfn = Some(pfn);
        let b = m.store.page(pfn);
        o.detail = Some(match why {
            Movability::Pinned => "long-term pinned page: migration fails on every pass".into(),
            Movability::Stuck
                if matches!(
                    kind_of(b),
                    kind::LRU | kind::MOVABLE | kind::THP_HEAD | kind::HUGETLB_HEAD
                ) =>
            {
                "no free memory for the migration target on the allowed nodes and zones".into()
            }
            _ => format!(
                "{} page passed isolation (ZONE_MOVABLE) but can neither migrate nor be freed",
                crate::page::kind::NAMES[kind_of(b) as usize]
            ),
        });
        return Ok(o);
    }
    // dissolve_free_huge_pages(): each free hugetlb page in the range leaves the pool, which
    // fails (-EBUSY) once the pool's free pages are all reserved.
    if let Some(pfn) = undissolvable_hugetlb(m, start, end) {
        work.migration_rounds += 1;
        let mut o = fail(
            block,
            Errno::Ebusy,
            Some("failure to dissolve huge pages"),
            work,
        );
        o.pfn = Some(pfn);
        o.detail = Some("the free hugetlb pages left in the pool are all reserved".into());
        return Ok(o);
    }
    // One pass migrates everything; test_pages_isolated() then succeeds.
    work.migration_rounds = 1;
    work.struct_pages_read += end - start;
    if !v61 {
        // __offline_pages' inner loop (5.4.18, 5.5-rc5, 5.6.4) drains before every
        // scan_movable_pages(): once when there is nothing to move, and once more for the
        // rescan that finds nothing after the moves
        work.lru_add_drain_all += if migrated > 0 { 2 } else { 1 };
    }
    let mut out = OfflineOutcome {
        block,
        errno: None,
        reason: None,
        pfn: None,
        detail: None,
        fault: None,
        work,
        applied: false,
    };
    if !opts.dry_run {
        commit_offline(m, block, &to_move, &isolated, &allowed, *profile);
        out.applied = true;
    }
    Ok(out)
}

/// Give each migratable page a target from `pool`, in pfn order. Returns the moves, the first
/// page that blocks the offline (and why), and whether the pool ran short.
fn assign_targets(
    cands: &[(u64, u8, Movability)],
    mut pool: FreePool,
) -> (Vec<Move>, Option<(u64, Movability)>, bool) {
    let mut to_move = Vec::new();
    let mut blocker = None;
    let mut short = false;
    for &(pfn, b, mv) in cands {
        match mv {
            Movability::Nothing => {}
            Movability::Migrate { pages, any_zone } => {
                let huge = (kind_of(b) == kind::HUGETLB_HEAD).then(|| pages.trailing_zeros());
                if pool.take(pages, any_zone, huge) {
                    to_move.push(Move {
                        pfn,
                        pages,
                        any_zone,
                    });
                } else {
                    short = true;
                    blocker.get_or_insert((pfn, Movability::Stuck));
                }
            }
            other => {
                blocker.get_or_insert((pfn, other));
            }
        }
    }
    (to_move, blocker, short)
}

/// The first free hugetlb page of `[start, end)` that cannot be dissolved: free pool pages
/// (machine-wide) minus reserved ones run out before it.
fn undissolvable_hugetlb(m: &Machine, start: u64, end: u64) -> Option<u64> {
    let is_free_head = |b: u8| kind_of(b) == kind::HUGETLB_HEAD && field_of(b) & HUGETLB_FREE != 0;
    let heads: Vec<(u64, usize)> = (start..end)
        .filter(|&p| is_free_head(m.store.page(p)))
        .map(|p| (p, (field_of(m.store.page(p)) & 7) as usize))
        .collect();
    if heads.is_empty() {
        return None;
    }
    let g = m.geometry;
    let mut free = vec![0u64; m.hstates.len().max(1)];
    for sec in 0..m.store.nr_sections() {
        let meta = m.store.section_meta(sec);
        if !meta.online() || meta.device() {
            continue;
        }
        let run = m
            .store
            .run(g.section_to_pfn(sec), g.pages_per_section() as usize);
        for i in 0..run.len() {
            let b = run.get(i);
            if is_free_head(b) {
                if let Some(f) = free.get_mut((field_of(b) & 7) as usize) {
                    *f += 1;
                }
            }
        }
    }
    for (pfn, h) in heads {
        let resv = m.hugetlb_resv.get(h).copied().unwrap_or(0);
        let avail = free.get(h).copied().unwrap_or(0);
        if avail <= resv {
            return Some(pfn);
        }
        free[h] -= 1;
    }
    None
}

/// A page (or compound) to migrate.
#[derive(Debug, Clone, Copy)]
struct Move {
    pfn: u64,
    pages: u64,
    any_zone: bool,
}

/// Move migrated pages to free memory of the allowed nodes, then take the block offline:
/// sections offline, memmap uninitialised (re-poisoned on DEBUG_VM), pageblocks left
/// MIGRATE_ISOLATE, zone spans shrunk (`remove_pfn_range_from_zone()`).
fn commit_offline(
    m: &mut Machine,
    block: u64,
    moves: &[Move],
    isolated: &[u64],
    allowed: &[u16],
    profile: KernelProfile,
) {
    let g = m.geometry;
    let (start, end) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
    let mut targets = TargetAllocator::new(start, end, allowed);
    // pick up where the last commit's search stopped if nothing but commits changed the
    // pages since: commits only take free pages, so what was used up stays used up
    if let Some(t) = &m.target_cursors {
        if t.generation == m.store.generation() && t.allowed.as_slice() == allowed {
            targets.search = t.search.clone();
        }
    }
    for mv in moves {
        let b = m.store.page(mv.pfn);
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
        } else {
            // No free block of the THP's order: the THP is split and its base pages migrate
            // one by one (the prediction already counted the pages).
            for _ in 0..mv.pages {
                if let Some(dst) = targets.take(m, mv.any_zone, 0) {
                    m.store.set_pages(dst, 1, kind::LRU);
                }
            }
        }
    }
    for &pb in isolated {
        m.store.set_migratetype(pb, MigrateType::Isolate);
    }
    // What the offlined struct pages hold (every page was free and isolated):
    // 5.4.18 __offline_isolated_pages sets PG_reserved on each; 5.5 ("mm/page_alloc.c: don't
    // set pages PageReserved() when offlining") leaves them stale: refcount 0, PageBuddy cleared,
    // their node and zone; from v5.6-rc1 remove_pfn_range_from_zone() also poisons them
    // (page_init_poison, d33695b16a9f; a no-op without DEBUG_VM). Read in 5.4.18, 5.5-rc5,
    // 5.6.4 and 6.1-rc6. (HWPoison pages keep their flag from 5.5 on; not kept here.)
    let after = if profile.version == KernelVersion::V5_4 {
        kind::RESERVED
    } else if profile.version >= KernelVersion::V5_6Rc && profile.debug_vm {
        kind::UNINIT
    } else {
        kind::FREE
    };
    let spb = g.sections_per_block();
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
    m.min_free_pages = compute_min_free_pages(m);
    // the commit's own writes after the moves (isolation bits, the offlined memmap) free no
    // target pages behind the cursors
    m.target_cursors = Some(TargetCursors {
        generation: m.store.generation(),
        allowed: allowed.to_vec(),
        search: targets.search,
    });
}

/// Hands out free buddy blocks as migration targets: per zone class (Movable, kernel zones)
/// and per request kind (order 0, higher order) a cursor that only moves forward, so one
/// commit is linear in the machine size. Zone order follows the zonelist of the allocation:
/// movable-capable requests try ZONE_MOVABLE first, kernel-zone requests only kernel zones.
struct TargetAllocator {
    start: u64,
    end: u64,
    allowed: Vec<u16>,
    /// Cursors, empty pools and the higher-order cursor's largest order; "found empty
    /// twice" holds for the rest of this commit and later ones (pages are only taken, never
    /// freed, while commits run), and behind the higher-order cursor no free block of its
    /// largest order is left, but smaller ones may be.
    search: TargetSearch,
}

impl TargetAllocator {
    fn new(start: u64, end: u64, allowed: &[u16]) -> Self {
        TargetAllocator {
            start,
            end,
            allowed: allowed.to_vec(),
            search: TargetSearch::default(),
        }
    }

    /// Take `1 << order` free pages (aligned) and return their first pfn; the rest of the
    /// buddy block they came from is freed back as aligned buddies.
    fn take(&mut self, m: &mut Machine, any_zone: bool, order: u32) -> Option<u64> {
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
            // buddy head are passed over at once
            let pb_end = (p / pbn + 1) * pbn;
            if (m.store.pageblock_zone(p) == ZoneType::Movable) != movable
                || m.store.migratetype(p) == MigrateType::Isolate
                || !has_free_head(m.store.run(p, (pb_end - p) as usize), order)
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
fn has_free_head(run: crate::sections::RunView<'_>, order: u32) -> bool {
    let want = |b: u8| kind_of(b) == kind::BUDDY && u32::from(field_of(b)) >= order;
    match run {
        crate::sections::RunView::Dense(bytes) => bytes.iter().fold(false, |acc, &b| acc | want(b)),
        v @ crate::sections::RunView::Compact { .. } => (0..v.len()).any(|i| want(v.get(i))),
    }
}

/// `shrink_zone_span()` after `[start, end)` went offline: a zone whose span starts (ends)
/// inside the range moves its start (end) to the next (previous) online pageblock it owns.
fn shrink_zone_spans(m: &mut Machine, start: u64, end: u64) {
    let g = m.geometry;
    let pbn = g.pageblock_nr_pages();
    let owns = |m: &Machine, nid: usize, z: ZoneType, pb: u64| {
        let meta = m.store.section_meta(g.pfn_to_section(pb));
        meta.online()
            && !meta.device()
            && meta.nid as usize == nid
            && m.store.pageblock_zone(pb) == z
    };
    for nid in 0..m.nodes.len() {
        for z in [
            ZoneType::Dma,
            ZoneType::Dma32,
            ZoneType::Normal,
            ZoneType::Movable,
        ] {
            let Some(mut span) = m.nodes[nid].zones[z as usize] else {
                continue;
            };
            if span.start_pfn >= start && span.start_pfn < end {
                let first = (end..span.end_pfn)
                    .step_by(pbn as usize)
                    .find(|&pb| owns(m, nid, z, pb));
                match first {
                    Some(pb) => span.start_pfn = pb,
                    None => span.end_pfn = span.start_pfn,
                }
            }
            if span.end_pfn > start && span.end_pfn <= end && span.start_pfn < span.end_pfn {
                let first_pb = span.start_pfn / pbn;
                let last = (first_pb..start / pbn)
                    .rev()
                    .map(|i| i * pbn)
                    .find(|&pb| owns(m, nid, z, pb));
                match last {
                    Some(pb) => span.end_pfn = pb + pbn,
                    None => span.end_pfn = span.start_pfn,
                }
            }
            m.nodes[nid].zones[z as usize] = (span.start_pfn < span.end_pfn).then_some(span);
        }
    }
}

/// `move_pfn_range_to_zone()` resizing: the zone grows to cover `[start, end)`.
fn grow_zone_span(m: &mut Machine, nid: u16, zone: ZoneType, start: u64, end: u64) {
    let slot = &mut m.nodes[nid as usize].zones[zone as usize];
    *slot = Some(match *slot {
        Some(s) => ZoneSpan {
            start_pfn: s.start_pfn.min(start),
            end_pfn: s.end_pfn.max(end),
        },
        None => ZoneSpan {
            start_pfn: start,
            end_pfn: end,
        },
    });
}

/// The zone a plain "online" / "online_kernel" / "online_movable" picks for an offline block
/// (`zone_for_pfn_range()`, contig-zones policy, without movable_node).
pub fn online_zone(m: &Machine, block: u64, online_type: &str) -> Result<(u16, ZoneType)> {
    let g = m.geometry;
    let (s, e) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
    let spb = g.sections_per_block();
    let nid = (block * spb..(block + 1) * spb)
        .map(|x| m.store.section_meta(x))
        .find(|x| x.present() && !x.device())
        .map_or(0, |x| x.nid);
    let intersects = |z: ZoneType| {
        let span = m.zone_span(nid, z);
        span.start_pfn < span.end_pfn && span.start_pfn < e && s < span.end_pfn
    };
    // default_kernel_zone_for_pfn(): first zone below Movable that intersects, else Normal.
    let kernel = [ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal]
        .into_iter()
        .find(|&z| intersects(z))
        .unwrap_or(ZoneType::Normal);
    let zone = match online_type {
        "online_kernel" => kernel,
        "online_movable" => ZoneType::Movable,
        "online" => {
            let (k, mv) = (intersects(kernel), intersects(ZoneType::Movable));
            if mv && !k {
                ZoneType::Movable
            } else {
                kernel
            }
        }
        other => {
            return Err(Error::Argument(format!(
                "unknown online type {other:?} (online, online_kernel, online_movable)"
            )))
        }
    };
    Ok((nid, zone))
}

/// `valid_zones` of a block, as printed (without the newline).
/// `memoryN/valid_zones` as read: its text, or the fault that killed the reader (5.4/5.5
/// `valid_zones_show()` of an online block runs `test_pages_in_a_zone()`, which reads
/// `page_zone()` of a struct page per MAX_ORDER_NR_PAGES; 6.1 reads `mem->zone`).
pub fn valid_zones(
    m: &Machine,
    block: u64,
    profile: &KernelProfile,
) -> Result<std::result::Result<String, Fault>> {
    let state = m.block_state(block)?;
    if !profile.memory_hotremove {
        return Err(Error::Argument(
            "valid_zones exists only with CONFIG_MEMORY_HOTREMOVE".into(),
        ));
    }
    let g = m.geometry;
    // valid_zones_show() (v5.5-rc5, 6.1): only MEM_ONLINE reports the block's zone; every
    // other state, going-offline included, lists the zones an online would choose
    if state == BlockState::Online {
        let z = if is_v61(*profile) {
            mem_zone(m, block)
        } else {
            let mut w = OfflineWork::default();
            let (s, e) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
            match test_pages_in_a_zone(m, s, e, *profile, &mut w) {
                Ok(z) => z,
                Err(f) if f.kind.stops() => return Ok(Err(f)),
                // an undefined read (garbage) answers something; model it as no zone
                Err(_) => None,
            }
        };
        return Ok(Ok(
            z.map_or("none".to_string(), |(_, z)| z.name().to_string())
        ));
    }
    let (_, def) = online_zone(m, block, "online")?;
    let mut out = def.name().to_string();
    for t in ["online_kernel", "online_movable"] {
        let (_, z) = online_zone(m, block, t)?;
        if z != def && !out.split(' ').any(|n| n == z.name()) {
            out.push(' ');
            out.push_str(z.name());
        }
    }
    Ok(Ok(out))
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
    Ok(None)
}
