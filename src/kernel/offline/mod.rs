//! Offlining and onlining a memory block, and `valid_zones`.
//!
//! 5.4/5.5/5.6 (kernel-semantics.md section 6): `state_store()` → `device_offline()` →
//! `memory_subsys_offline()` (the `section_count` refusal) → `memory_block_change_state()`
//! (MEM_GOING_OFFLINE while it runs) → `__offline_pages()`: memory-holes check (from v5.5;
//! none in 5.4.59), `test_pages_in_a_zone()`, `start_isolate_page_range()` with
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
//!
//! `decide_offline` reads the machine and returns the outcome with, for a success, the plan
//! that `commit_offline` applies; a dry run only decides. By concern: `zone` (the refusals,
//! which zone the block is in, valid_zones, spans), `notifiers`, `migrate` (movability,
//! targets, watermark), `dissolve`, `commit` (offline commit and online).

mod commit;
mod dissolve;
mod migrate;
mod notifiers;
mod zone;

use crate::cost::ScanCost;
use crate::error::Result;
use crate::geometry::Arch;
use crate::kernel::pageinfo::Fault;
use crate::kernel::profile::KernelProfile;
use crate::kernel::unmovable::{
    cmm_balloon_movable, has_unmovable_pages, has_unmovable_pages_6_1, MEMORY_OFFLINE,
    REPORT_FAILURE,
};
use crate::page::{field_of, kind, kind_of, MigrateType};
use crate::topology::{BlockState, Machine};

use commit::{commit_moves, commit_offline};
use dissolve::undissolvable_hugetlb;
use migrate::{
    add_free_targets, allowed_nodes, assign_targets, hugetlb_pool, is_free_hugetlb_head,
    movability, offline_movability, Cand, FreePool, HugetlbPool, Movability, Move,
};
use notifiers::{cmm_isolate_count, cmm_notifier};
use zone::{section_count, system_ram_pages, test_pages_in_a_zone};

pub use commit::online_block;
pub use migrate::{min_free_pages, min_reserve};
pub use zone::{early_zone, mem_zone, online_zone, valid_zones};

/// The errno a write to `memoryN/state` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    Einval,
    Ebusy,
    Eperm,
    Eintr,
    Enomem,
}

impl Errno {
    pub fn name(self) -> &'static str {
        match self {
            Errno::Einval => "EINVAL",
            Errno::Ebusy => "EBUSY",
            Errno::Eperm => "EPERM",
            Errno::Eintr => "EINTR",
            Errno::Enomem => "ENOMEM",
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

impl OfflineWork {
    /// Every counter, by name, in declaration order.
    pub const FIELDS: [crate::cost::Field<OfflineWork>; 6] = [
        ("struct_pages_read", |w| w.struct_pages_read),
        ("pageblocks_isolated", |w| w.pageblocks_isolated),
        ("pages_migrated", |w| w.pages_migrated),
        ("migration_rounds", |w| w.migration_rounds),
        ("lru_add_drain_all", |w| w.lru_add_drain_all),
        ("drain_all_pages", |w| w.drain_all_pages),
    ];
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
    p.offline_path_6_1()
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

/// `echo offline > memoryN/state` under `profile`.
pub fn offline_block(
    m: &mut Machine,
    block: u64,
    profile: &KernelProfile,
    opts: OfflineOptions,
) -> Result<OfflineOutcome> {
    let (mut out, plan) = decide_offline(m, block, profile, opts.patience_rounds)?;
    match (opts.dry_run, plan) {
        (false, Some(plan)) if plan.takes_block_offline => {
            commit_offline(m, block, &plan, *profile);
            out.applied = true;
        }
        // failed in or after the migration loop: what it migrated stays migrated
        (false, Some(plan)) => commit_moves(m, block, &plan),
        _ => {}
    }
    Ok(out)
}

/// What an offline changes: the pages to move, the pageblocks isolated, the nodes the targets
/// come from. `decide_offline` makes it from a shared view of the machine; `commit_offline`
/// applies a successful one under the write lock, `commit_moves` the migrations of one that
/// failed in or after the migration loop.
pub struct OfflinePlan {
    moves: Vec<Move>,
    isolated: Vec<u64>,
    allowed: Vec<u16>,
    /// the offline succeeds (here, or as the offline in progress this write waited for);
    /// else only the moves are kept
    takes_block_offline: bool,
}

/// Dry-run offline outcomes of many blocks against the same machine, in order.
pub fn decide_many(
    m: &Machine,
    blocks: &[u64],
    profile: &KernelProfile,
    patience_rounds: u64,
) -> Result<Vec<OfflineOutcome>> {
    // dry runs only read, and each block's decision is its own: in parallel, in block order
    use rayon::prelude::*;
    blocks
        .par_iter()
        .map(|&b| decide_offline(m, b, profile, patience_rounds).map(|(o, _)| o))
        .collect()
}

/// `valid_zones` of many blocks (None where the read faults).
pub fn valid_zones_many(
    m: &Machine,
    blocks: &[u64],
    profile: &KernelProfile,
) -> Result<Vec<Option<String>>> {
    blocks
        .iter()
        .map(|&b| valid_zones(m, b, profile).map(std::result::Result::ok))
        .collect()
}

/// v6.1 `mem->zone` of every block.
pub fn mem_zones(m: &Machine) -> Vec<Option<(u16, crate::page::ZoneType)>> {
    (0..m.nr_blocks()).map(|b| mem_zone(m, b)).collect()
}

/// The outcome of `echo offline > memoryN/state` without changing the machine (a dry run
/// reads only), and for a success the plan that commits it.
pub fn decide_offline(
    m: &Machine,
    block: u64,
    profile: &KernelProfile,
    patience_rounds: u64,
) -> Result<(OfflineOutcome, Option<OfflinePlan>)> {
    match m.block_state(block)? {
        // device_offline() returns 1 for an offline device: state_store() turns it into -EINVAL.
        BlockState::Offline => Ok((
            fail(
                block,
                Errno::Einval,
                Some("already offline"),
                OfflineWork::default(),
            ),
            None,
        )),
        // A block is MEM_GOING_OFFLINE only while an offline holds device_hotplug_lock
        // (memory_subsys_offline() runs under it). state_store() (v5.5-rc5, 6.1-rc6) takes
        // lock_device_hotplug_sysfs(), which fails on the held lock and restarts the syscall
        // (restart_syscall()): this write waits for the offline in progress, modeled as that
        // offline from the block's pages. If it succeeds, this write's device_offline() finds
        // the device offline: EINVAL, with no work of its own (and the model, unless a dry
        // run, takes the completed offline). If it fails, the block is online again and this
        // write's own offline fails the same way.
        BlockState::GoingOffline => {
            let (mut o, plan) = decide_online_block(m, block, *profile, patience_rounds);
            if o.errno.is_none() {
                let mut e = fail(
                    block,
                    Errno::Einval,
                    Some("already offline"),
                    OfflineWork::default(),
                );
                e.detail = Some(
                    "waited for the offline in progress (lock_device_hotplug_sysfs restarts the \
                     write), which took the block offline"
                        .into(),
                );
                return Ok((e, plan));
            }
            let why = o.detail.take();
            o.detail = Some(match why {
                Some(d) => format!("after the offline in progress failed the same way: {d}"),
                None => "after the offline in progress failed the same way".into(),
            });
            Ok((o, None))
        }
        _ => Ok(decide_online_block(m, block, *profile, patience_rounds)),
    }
}

/// `__offline_pages()` / 6.1 `offline_pages()` of an online block.
/// The section the free-pool reading of a decision starts at: that of the lowest order-0
/// target cursor a class has moved (the last commit's, while only commits have changed the
/// pages since and for the same nodes), else 0. Only a speed hint: see its use.
fn free_search_start(m: &Machine, allowed: &[u16]) -> u64 {
    match &m.target_cursors {
        Some(t) if t.generation == m.store.generation() && t.allowed.as_slice() == allowed => {
            let lowest = t
                .search
                .cursors
                .iter()
                .map(|c| c[0])
                .filter(|&p| p > 0)
                .min();
            lowest.map_or(0, |p| m.geometry.pfn_to_section(p))
        }
        _ => 0,
    }
}

fn decide_online_block(
    m: &Machine,
    block: u64,
    profile: KernelProfile,
    patience_rounds: u64,
) -> (OfflineOutcome, Option<OfflinePlan>) {
    let profile = &profile;
    let mut work = OfflineWork::default();
    let v61 = is_v61(*profile);
    if !profile.memory_hotremove {
        return (
            fail(
                block,
                Errno::Einval,
                Some("no CONFIG_MEMORY_HOTREMOVE"),
                work,
            ),
            None,
        );
    }
    let g = m.geometry;
    let (start, end) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
    let zone = if v61 {
        // memory_block_offline(): mem->zone == NULL → -EINVAL, no reason logged.
        let Some(z) = mem_zone(m, block) else {
            return (fail(block, Errno::Einval, None, work), None);
        };
        if system_ram_pages(m, start, end) != end - start {
            return (fail(block, Errno::Einval, Some("memory holes"), work), None);
        }
        z
    } else {
        // memory_subsys_offline(): "Can't offline block with non-present sections".
        if section_count(m, block) != g.sections_per_block() {
            return (
                fail(block, Errno::Einval, Some("non-present sections"), work),
                None,
            );
        }
        // v5.5 __offline_pages(): walk_system_ram_range(count_system_ram_pages_cb) right
        // after mem_hotplug_begin(), before test_pages_in_a_zone(); 5.4 has no such check.
        if profile.has_memory_holes_check() && system_ram_pages(m, start, end) != end - start {
            return (fail(block, Errno::Einval, Some("memory holes"), work), None);
        }
        match test_pages_in_a_zone(m, start, end, *profile, &mut work) {
            Err(f) => {
                let mut o = fail(block, Errno::Einval, Some("multizone range"), work);
                o.pfn = Some(f.pfn);
                o.fault = Some(f);
                return (o, None);
            }
            Ok(None) => {
                return (
                    fail(block, Errno::Einval, Some("multizone range"), work),
                    None,
                )
            }
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
            return (o, None);
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
                return (o, None);
            }
            Ok(Some(u)) => {
                let mut o = fail(block, Errno::Ebusy, Some("failure to isolate range"), work);
                o.pfn = Some(u.pfn);
                o.detail = Some(format!("dump_page: {}", u.reason));
                return (o, None);
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
        return (o, None);
    }
    if v61 && profile.arch == Arch::Arm64 {
        let spb = g.sections_per_block();
        if (block * spb..(block + 1) * spb).any(|s| m.store.section_meta(s).early()) {
            let mut o = fail(block, Errno::Eperm, Some("notifier failure"), work);
            o.detail = Some("arm64 prevent_bootmem_remove_notifier: boot memory".into());
            return (o, None);
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
    let mut cands: Vec<Cand> = Vec::new();
    // the block's free hugetlb pages, in pfn order, with their hstate
    let mut free_huge_heads: Vec<(u64, usize)> = Vec::new();
    for pb in (start..end).step_by(pbn as usize) {
        let zone_of_pb = m.store.pageblock_zone(pb);
        let run = m.store.run(pb, pbn as usize);
        // the movability of the last byte looked up: within a pageblock (one zone) it
        // depends on the byte alone, and neighbouring pages mostly share their byte
        let mut last: Option<(u8, Movability)> = None;
        for i in 0..run.len() {
            let b = run.get(i);
            if matches!(kind_of(b), kind::FREE | kind::BUDDY) {
                continue;
            }
            let pfn = pb + i as u64;
            let mv = match last {
                Some((lb, lmv)) if lb == b => lmv,
                // a PageOffline page's fate depends on who owns it, not on its byte alone
                _ if kind_of(b) == kind::OFFLINE => {
                    offline_movability(m, pfn, b, zone_of_pb, v61, cmm, balloon)
                }
                _ => {
                    let mv = movability(m, b, zone_of_pb, v61, cmm, balloon);
                    last = Some((b, mv));
                    mv
                }
            };
            if mv == Movability::Nothing {
                // a free hugetlb page is dissolved after the migration (undissolvable_hugetlb)
                if is_free_hugetlb_head(b) {
                    free_huge_heads.push((pfn, (field_of(b) & 7) as usize));
                }
                continue;
            }
            match cands.last_mut() {
                Some(c)
                    if c.b == b
                        && c.mv == mv
                        && c.count < u32::MAX
                        && c.pfn + u64::from(c.count) * c.stride() == pfn =>
                {
                    c.count += 1;
                }
                _ => cands.push(Cand {
                    pfn,
                    count: 1,
                    b,
                    mv,
                }),
            }
        }
    }
    let allowed = allowed_nodes(m, zone.0);
    // the allowed zones' min watermarks stay free (per class: kernel zones, ZONE_MOVABLE)
    let (reserve, reserve_movable) = min_reserve(m, profile, &allowed);
    let mut pool = FreePool::default();
    let hugetlb_moves = cands.iter().any(|c| kind_of(c.b) == kind::HUGETLB_HEAD);
    let mut huge = if hugetlb_moves {
        hugetlb_pool(m, start, end, &allowed)
    } else {
        HugetlbPool::default()
    };
    // The pool is read in doubling runs of sections with free-page candidates (online RAM of
    // the allowed nodes, outside the block) until it covers the moves, or the whole machine
    // is read; as covering is all the answer needs, where the reading starts does not change
    // it. It starts where the last commit's target search stood (the free memory below it
    // went to earlier migrations), wrapping round to section 0: so a decision after many
    // offlines does not re-read the used-up low memory, nor count holes as read.
    let nsec = m.store.nr_sections();
    let first = free_search_start(m, &allowed).min(nsec.saturating_sub(1));
    // The next run is at least twice the last, and as long as the free pages read so far per
    // section say the moves and the reserves need (a guess that only sizes the runs).
    let need: u64 = cands
        .iter()
        .filter_map(|c| match c.mv {
            Movability::Migrate { pages, .. } => Some(pages * u64::from(c.count)),
            _ => None,
        })
        .sum::<u64>()
        + reserve
        + reserve_movable;
    let (mut seen, mut taken, mut chunk) = (0u64, 0u64, 1u64);
    let mut moves = Vec::with_capacity(cands.len());
    let (to_move, blockers) = loop {
        let upto = taken + chunk;
        while taken < upto && seen < nsec {
            let sec = (first + seen) % nsec;
            seen += 1;
            if add_free_targets(&mut pool, m, sec, start, end, &allowed, hugetlb_moves) {
                taken += 1;
            }
        }
        let have = pool.kernel + pool.movable;
        let per = have / taken.max(1);
        let guess = if have < need && per > 0 {
            (need - have).div_ceil(per) + 1
        } else {
            0
        };
        chunk = (chunk * 2).max(guess);
        let mut p = pool.clone();
        p.kernel = p.kernel.saturating_sub(reserve);
        p.movable = p.movable.saturating_sub(reserve_movable);
        let mut h = huge.clone();
        let (blockers, short) = assign_targets(&cands, p, &mut h, g.max_order, &mut moves);
        if !short || seen == nsec {
            huge = h;
            break (std::mem::take(&mut moves), blockers);
        }
    };
    let migrated: u64 = to_move.iter().map(|x| x.pages * x.count).sum();
    work.pages_migrated = migrated;
    // The loop as the kernel runs it (v5.5-rc5 / 5.6.4 __offline_pages, 6.1-rc6
    // offline_pages): scan_movable_pages() walks up from the block start and do_migrate_range()
    // migrates what it can; a page the scan finds on every pass (pinned, no target) keeps the
    // inner loop going until a signal, and so does (6.1) nothing: the first referenced
    // PageOffline page the scan reaches ends it with -EBUSY. Whichever comes first decides.
    let visible_first = match (blockers.visible, blockers.offline_ref) {
        (Some((p, _)), Some(q)) => q > p,
        (v, _) => v.is_some(),
    };
    // a failed write leaves what the loop migrated moved (`commit_moves`)
    let partial = |moves: Vec<Move>| {
        Some(OfflinePlan {
            moves,
            isolated: Vec::new(),
            allowed: allowed.clone(),
            takes_block_offline: false,
        })
    };
    if let (false, Some(pfn)) = (visible_first, blockers.offline_ref) {
        // 6.1 scan_movable_pages(): PageOffline with a reference → -EBUSY, after the pages
        // before it migrated.
        work.migration_rounds += 1;
        let before: Vec<Move> = to_move.into_iter().filter(|mv| mv.pfn < pfn).collect();
        work.pages_migrated = before.iter().map(|x| x.pages * x.count).sum();
        let mut o = fail(block, Errno::Ebusy, Some("unmovable page"), work);
        o.pfn = Some(pfn);
        o.detail = Some("PageOffline page still referenced by its driver".into());
        return (o, partial(before));
    }
    let eintr = |mut work: OfflineWork, pfn: u64, detail: String| {
        work.migration_rounds = patience_rounds;
        // every pass re-scans from the stuck page to the block end
        work.struct_pages_read += (end - pfn) * patience_rounds;
        if !v61 {
            work.lru_add_drain_all += patience_rounds;
        }
        let mut o = fail(block, Errno::Eintr, Some("signal backoff"), work);
        o.pfn = Some(pfn);
        o.detail = Some(detail);
        o
    };
    if let Some((pfn, why)) = blockers.visible {
        let detail = if why == Movability::Pinned {
            "long-term pinned page: migration fails on every pass".into()
        } else {
            "no free memory for the migration target on the allowed nodes and zones".into()
        };
        return (eintr(work, pfn, detail), partial(to_move));
    }
    // The inner loop ended (nothing the scan sees is left): dissolve_free_huge_pages() runs in
    // this round, even while a page the scan cannot see stays. Each free hugetlb page in the
    // range leaves the pool, which fails (-EBUSY) once the pool's free pages are all reserved.
    if let Some((pfn, errno, why)) =
        undissolvable_hugetlb(m, start, end, &free_huge_heads, &huge.taken, v61)
    {
        work.migration_rounds += 1;
        let mut o = fail(block, errno, Some("failure to dissolve huge pages"), work);
        o.pfn = Some(pfn);
        o.detail = Some(why.into());
        return (o, partial(to_move));
    }
    // test_pages_isolated() fails on a page the scan cannot see: the outer loop repeats
    // until a signal.
    if let Some(pfn) = blockers.invisible {
        let b = m.store.page(pfn);
        let detail = format!(
            "{} page passed isolation (ZONE_MOVABLE) but can neither migrate nor be freed",
            crate::page::kind::NAMES[kind_of(b) as usize]
        );
        return (eintr(work, pfn, detail), partial(to_move));
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
    let out = OfflineOutcome {
        block,
        errno: None,
        reason: None,
        pfn: None,
        detail: None,
        fault: None,
        work,
        applied: false,
    };
    let plan = OfflinePlan {
        moves: to_move,
        isolated,
        allowed,
        takes_block_offline: true,
    };
    (out, Some(plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testutil::{block, kernel, machine, BLOCK, PB, PFN0};
    use crate::page::kind;
    use crate::page::ZoneType;

    fn offline(m: &mut Machine, b: u64, k: &str, dry_run: bool) -> OfflineOutcome {
        let opts = OfflineOptions {
            dry_run,
            patience_rounds: 10,
        };
        offline_block(m, b, &kernel(k), opts).unwrap()
    }

    #[test]
    fn offline_and_online_keep_managed_pages_and_watermarks_as_a_full_recount_gives() {
        let mut m = machine(6, &[block(5)]);
        let full = |m: &Machine| {
            let mut c = m.try_clone().unwrap();
            crate::watermark::refresh_min_free(&mut c);
            (c.managed_pages, c.min_free_pages, c.min_free_pages_6_1)
        };
        let now = |m: &Machine| {
            (
                m.managed_pages.clone(),
                m.min_free_pages,
                m.min_free_pages_6_1,
            )
        };
        let before = now(&m);
        for (b, k) in [(1, "5.5"), (3, "6.1"), (2, "5.4")] {
            assert!(offline(&mut m, block(b), k, false).applied);
            assert_eq!(now(&m), full(&m), "after offlining block {b}");
        }
        assert_ne!(now(&m).0, before.0, "three blocks fewer are managed");
        for (b, how) in [(5, "online_movable"), (1, "online_kernel"), (3, "online")] {
            online_block(&mut m, block(b), how).unwrap();
            assert_eq!(now(&m), full(&m), "after onlining block {b} ({how})");
        }
    }

    #[test]
    fn a_free_block_goes_offline_and_a_dry_run_changes_nothing() {
        let mut m = machine(2, &[]);
        let o = offline(&mut m, block(1), "5.5", true);
        assert_eq!((o.errno, o.applied), (None, false));
        assert_eq!(m.block_state(block(1)).unwrap(), BlockState::Online);
        let o = offline(&mut m, block(1), "5.5", false);
        assert!(o.errno.is_none() && o.applied);
        assert_eq!(m.block_state(block(1)).unwrap(), BlockState::Offline);
        assert!(!m.store.section_meta(block(1)).online());
        let again = offline(&mut m, block(1), "5.5", true);
        assert_eq!(
            (again.errno, again.reason),
            (Some(Errno::Einval), Some("already offline"))
        );
    }

    #[test]
    fn isolation_order_decides_the_named_page_by_version() {
        let mut m = machine(1, &[]);
        m.store.set_pages(PFN0 + 3 * PB + 7, 1, kind::UNMOVABLE);
        m.store.set_pages(PFN0 + BLOCK - 5, 1, kind::UNMOVABLE);
        let o = offline(&mut m, block(0), "5.5", true);
        assert_eq!(
            (o.errno, o.pfn),
            (Some(Errno::Ebusy), Some(PFN0 + 3 * PB + 7))
        );
        assert_eq!(o.work.pageblocks_isolated, 3);
        // 6.1: first, last, then the middle pageblocks
        let o = offline(&mut m, block(0), "6.1", true);
        assert_eq!(
            (o.errno, o.pfn),
            (Some(Errno::Ebusy), Some(PFN0 + BLOCK - 5))
        );
    }

    #[test]
    fn a_pinned_page_loops_until_the_signal() {
        let mut m = machine(2, &[]);
        m.store.set_pages(PFN0 + 11, 1, kind::PINNED);
        let o = offline(&mut m, block(0), "5.5", true);
        assert_eq!(
            (o.errno, o.reason, o.pfn),
            (Some(Errno::Eintr), Some("signal backoff"), Some(PFN0 + 11))
        );
        assert_eq!(o.work.migration_rounds, 10);
    }

    #[test]
    fn virtio_mem_fake_offline_pages_do_not_stop_a_6_1_offline() {
        let mut m = machine(2, &[]);
        m.set_pages_checked(PFN0 + BLOCK / 2, BLOCK / 2, kind::OFFLINE)
            .unwrap();
        let o = offline(&mut m, block(0), "6.1", true);
        assert_eq!(
            (o.errno, o.pfn),
            (Some(Errno::Ebusy), Some(PFN0 + BLOCK / 2))
        );
        // iomem says virtio-mem added the block: its notifier drops the references
        m.set_driver_managed(vec![(PFN0, PFN0 + BLOCK, "virtio_mem".into())])
            .unwrap();
        assert!(m.virtio_mem_managed(PFN0) && !m.virtio_mem_managed(PFN0 + BLOCK));
        let o = offline(&mut m, block(0), "6.1", false);
        assert_eq!((o.errno, o.applied), (None, true));
        assert_eq!(m.block_state(block(0)).unwrap(), BlockState::Offline);
        // another driver's PageOffline pages keep their reference
        m.set_driver_managed(vec![(PFN0 + BLOCK, PFN0 + 2 * BLOCK, "kmem".into())])
            .unwrap();
        m.set_pages_checked(PFN0 + BLOCK + 7, 1, kind::OFFLINE)
            .unwrap();
        let o = offline(&mut m, block(1), "6.1", true);
        assert_eq!(o.errno, Some(Errno::Ebusy));
    }

    #[test]
    fn a_failed_offline_leaves_what_it_migrated_moved() {
        let mut m = machine(2, &[]);
        let count = |m: &Machine, lo: u64, hi: u64, k: u8| {
            (lo..hi)
                .filter(|&p| crate::page::kind_of(m.store.page(p)) == k)
                .count()
        };
        let is_free = |b: u8| matches!(crate::page::kind_of(b), kind::FREE | kind::BUDDY);
        let free = |m: &Machine| {
            (PFN0..PFN0 + 2 * BLOCK)
                .filter(|&p| is_free(m.store.page(p)))
                .count()
        };
        // through the checked writer, which splits the boot-time buddy blocks around them
        m.set_pages_checked(PFN0 + 100, 200, kind::LRU).unwrap();
        m.set_pages_checked(PFN0 + 150, 1, kind::PINNED).unwrap();
        let free_before = free(&m);
        let o = offline(&mut m, block(0), "6.1", false);
        assert_eq!((o.errno, o.applied), (Some(Errno::Eintr), false));
        assert_eq!(o.work.pages_migrated, 199);
        // the block stays online with only the pinned page in use; the 199 pages are in
        // the other block now, and no free page appeared or vanished
        assert_eq!(m.block_state(block(0)).unwrap(), BlockState::Online);
        assert_eq!(count(&m, PFN0, PFN0 + BLOCK, kind::LRU), 0);
        assert_eq!(count(&m, PFN0, PFN0 + BLOCK, kind::PINNED), 1);
        let other = count(&m, PFN0 + BLOCK, PFN0 + 2 * BLOCK, kind::LRU);
        assert_eq!(other, 199);
        assert_eq!(free(&m), free_before);
        // the freed pages are buddy blocks a later offline can take as targets
        let again = offline(&mut m, block(1), "6.1", false);
        assert!(again.applied && again.work.pages_migrated == 199);
        assert_eq!(count(&m, PFN0, PFN0 + BLOCK, kind::LRU), 199);
        assert_eq!(
            m.store.page(PFN0 + 150),
            kind::PINNED,
            "no target lands on the pin"
        );
    }

    #[test]
    fn a_going_offline_block_waits_for_the_offline_in_progress() {
        let mut m = machine(2, &[]);
        m.blocks[block(1) as usize] = BlockState::GoingOffline;
        let o = offline(&mut m, block(1), "5.5", true);
        assert_eq!(
            (o.errno, o.reason),
            (Some(Errno::Einval), Some("already offline"))
        );
        assert_eq!(o.work, OfflineWork::default());
        m.store.set_pages(PFN0 + BLOCK + 3, 1, kind::PINNED);
        assert_eq!(
            offline(&mut m, block(1), "5.5", true).errno,
            Some(Errno::Eintr)
        );
    }

    #[test]
    fn mem_zone_is_kept_not_recomputed_from_spans() {
        let mut m = machine(4, &[block(1), block(3)]);
        for b in [block(1), block(3)] {
            assert_eq!(online_block(&mut m, b, "online_movable").unwrap(), None);
        }
        // Movable's span now covers block 2 as well
        assert_eq!(mem_zone(&m, block(2)), Some((0, ZoneType::Normal)));
        assert_eq!(mem_zone(&m, block(1)), Some((0, ZoneType::Movable)));
        assert!(offline(&mut m, block(2), "6.1", false).errno.is_none());
        assert_eq!(mem_zone(&m, block(2)), None);
    }
}
