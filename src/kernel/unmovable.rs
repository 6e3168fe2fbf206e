//! `has_unmovable_pages()` (mm/page_alloc.c) in its v5.5 form (with `count`, bool result,
//! reason "CMA page"/"unmovable page") and its v5.6 form (3f9903b9ca5e dropped `count`,
//! 4a55c0474a92 returns the offending page). The page tests, in the kernel's order:
//! CMA pageblock; then per page: PG_reserved; ZONE_MOVABLE shortcut; PageHuge (skip to the
//! end of the hugetlb page, or unmovable if its hstate cannot migrate); refcount 0 (skip a
//! whole buddy block when PageBuddy); HWPoison under MEMORY_OFFLINE; __PageMovable; PageLRU;
//! else `found++` and unmovable once `found > count`.

use crate::cost::ScanCost;
use crate::kernel::pageinfo::{effective_byte, hole_as, page_flags, Fault, HoleAs};
use crate::kernel::profile::KernelProfile;
use crate::page::{field_of, kind, kind_of, MigrateType, ZoneType, LRU_BATCH, ZEROED_HOLE};
use crate::sections::{Compact, RunView};
use crate::topology::Machine;

/// `MEMORY_OFFLINE` (v5.5; `SKIP_HWPOISON` before).
pub const MEMORY_OFFLINE: u32 = 0x1;
/// `REPORT_FAILURE`.
pub const REPORT_FAILURE: u32 = 0x2;

/// pseries CMM from v5.5 (read in v5.5-rc5 cmm.c: no isolate notifier, balloon_page_enqueue,
/// cmm_migratepage; the fidelity issue names the fe030c9b85e6 series [R]): its loaned pages
/// (modeled PG_offline) are balloon pages with `__PageMovable` (BALLOON_COMPACTION, selected
/// by default), so has_unmovable_pages() passes them and offline migrates them.
pub fn cmm_balloon_movable(m: &Machine, profile: &KernelProfile) -> bool {
    m.geometry.arch == crate::geometry::Arch::Ppc64 && profile.cmm_balloon_compaction()
}

/// Why a pageblock is unmovable: the pfn `dump_page()` would show and the reason string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmovable {
    pub pfn: u64,
    pub reason: &'static str,
    /// `WARN_ON_ONCE(zone_idx(zone) == ZONE_MOVABLE)` fired.
    pub movable_zone_warning: bool,
}

/// Result of one call: `Ok(None)` movable, `Ok(Some(_))` unmovable, `Err` a fault.
pub fn has_unmovable_pages(
    m: &Machine,
    zone: ZoneType,
    pfn: u64,
    count: u32,
    migratetype: MigrateType,
    flags: u32,
    profile: &KernelProfile,
    cost: &mut ScanCost,
) -> Result<Option<Unmovable>, Fault> {
    const F: &str = "has_unmovable_pages";
    let g = &m.geometry;
    let nr = g.pageblock_nr_pages() as usize;
    let unmovable = |iter: usize, reason: &'static str| Unmovable {
        pfn: pfn + iter as u64,
        reason,
        movable_zone_warning: zone == ZoneType::Movable
            && profile.warns_unmovable_in_zone_movable(),
    };
    // is_migrate_cma_page() reads the pageblock bitmap (mem_section usemap), no struct page.
    if m.store.migratetype(pfn) == MigrateType::Cma {
        if migratetype == MigrateType::Cma {
            return Ok(None);
        }
        return Ok(Some(unmovable(0, profile.cma_reason())));
    }
    let view = m.store.run(pfn, nr);
    let skip_hwpoison = flags & MEMORY_OFFLINE != 0;
    let balloon = cmm_balloon_movable(m, profile);

    // Fast path: a dense pageblock in which every page is passed over one by one (no skips,
    // no stop) reads every struct page and finds nothing. The limit is the largest kind that
    // is passed over page by page (see page::kind).
    let limit = if zone == ZoneType::Movable {
        kind::LAST_MOVABLE_ZONE_SKIP
    } else if skip_hwpoison {
        kind::LAST_PLAIN_SKIP
    } else {
        kind::THP_TAIL
    };
    match view {
        RunView::Dense(bytes) if max_kind(bytes) <= limit => {
            cost.struct_pages_read += nr as u64;
            return Ok(None);
        }
        // A uniform section (every page one byte, held compact): the same test in O(1),
        // with the reads the page-by-page loop makes
        RunView::Compact {
            how: Compact::Uniform(b),
            ..
        } if kind_of(b) <= limit => {
            cost.struct_pages_read += nr as u64;
            return Ok(None);
        }
        _ => {}
    }

    let mut found: u32 = 0;
    let mut iter = 0usize;
    // Dense pages outside ZONE_MOVABLE: the kinds the loop below passes without counting
    // (refcount 0, LRU, __PageMovable, THP; HWPoison under MEMORY_OFFLINE) and the buddy
    // skip, in a tight loop over the bytes. It stops at the first other kind, where the loop
    // below goes on with the same state (found is still 0), so reads and results are its own.
    if let (RunView::Dense(bytes), false) = (&view, zone == ZoneType::Movable) {
        let pass = if skip_hwpoison {
            kind::LAST_PLAIN_SKIP
        } else {
            kind::THP_TAIL
        };
        let end = nr.min(bytes.len());
        while iter < end {
            let b = bytes[iter];
            let k = kind_of(b);
            if k <= pass {
                iter += 1;
            } else if k == kind::BUDDY {
                iter += 1usize << field_of(b);
            } else {
                break;
            }
            cost.struct_pages_read += 1;
        }
    }
    while iter < nr {
        let p = pfn + iter as u64;
        // pfn_valid_within() is always true without CONFIG_HOLES_IN_ZONE (x86, arm64 4K..).
        cost.struct_pages_read += 1;
        let b = match view.get(iter) {
            b if kind_of(b) == kind::UNINIT => effective_byte(m, p, profile),
            b => b,
        };
        if matches!(kind_of(b), kind::UNINIT | kind::NOMEMMAP)
            && page_flags(m, p, profile, F, "PageReserved")?.is_none()
        {
            // Poisoned (all flags set) on a DEBUG_VM kernel without PGFLAGS: PG_reserved.
            return Ok(Some(unmovable(iter, "unmovable page")));
        }
        // a hole reads as its profile initialised it (pageinfo::hole_as): PG_reserved
        // (5.6 outside zone spans), zeroed (5.4/5.5 outside them), or an allocated page
        // with no flags (inside a zone span, 5.4..5.6): found++ below, unmovable
        let hole = (kind_of(b) == kind::ZEROED && field_of(b) == ZEROED_HOLE)
            .then(|| hole_as(m, p, profile));
        let k = match hole {
            Some(HoleAs::InUse) => kind::UNMOVABLE,
            _ if kind_of(b) == kind::OFFLINE && balloon => kind::MOVABLE,
            _ => kind_of(b),
        };
        let reserved = k == kind::RESERVED || hole == Some(HoleAs::Reserved);
        if reserved {
            return Ok(Some(unmovable(iter, "unmovable page")));
        }
        if zone == ZoneType::Movable {
            iter += 1;
            continue;
        }
        match k {
            kind::HUGETLB_HEAD | kind::HUGETLB_TAIL => {
                let hs = m.hstates.get((field_of(b) & 7) as usize).copied();
                let Some(hs) = hs else {
                    return Ok(Some(unmovable(iter, "unmovable page")));
                };
                if !hs.migration_supported {
                    return Ok(Some(unmovable(iter, "unmovable page")));
                }
                let nr_h = 1u64 << hs.order;
                let head = p & !(nr_h - 1);
                // iter += compound_nr(head) - (page - head) - 1; then the loop's iter++.
                iter += (nr_h - (p - head)) as usize;
                continue;
            }
            // page_ref_count(page) == 0: free tails, THP tails, zeroed struct pages.
            kind::BUDDY => {
                iter += (1usize << field_of(b)) - 1;
            }
            // refcount 0 (free tails, THP tails, zeroed struct pages); HWPoison under
            // MEMORY_OFFLINE; __PageMovable; PageLRU (found stays).
            kind::FREE
            | kind::THP_TAIL
            | kind::ZEROED
            | kind::MOVABLE
            | kind::LRU
            | kind::PINNED
            | kind::THP_HEAD => {}
            kind::HWPOISON if skip_hwpoison => {}
            _ => {
                // Not LRU: found++ (HWPOISON without MEMORY_OFFLINE, UNMOVABLE, OFFLINE).
                found += 1;
                if found > count {
                    return Ok(Some(unmovable(iter, "unmovable page")));
                }
            }
        }
        iter += 1;
    }
    Ok(None)
}

/// Largest page kind in a slice; written to vectorise.
#[inline]
pub fn max_kind(bytes: &[u8]) -> u8 {
    let mut acc = [0u8; 32];
    let mut chunks = bytes.chunks_exact(32);
    for c in &mut chunks {
        for i in 0..32 {
            acc[i] = acc[i].max(c[i] & 0x0f);
        }
    }
    let mut m = acc.iter().copied().max().unwrap_or(0);
    for &b in chunks.remainder() {
        m = m.max(b & 0x0f);
    }
    m
}

/// `has_unmovable_pages(start_pfn, end_pfn, migratetype, flags)` in its 6.1 form
/// (mm/page_isolation.c since 5.19): a range inside one pageblock; CMA pageblocks are unmovable
/// at the range's first page; PG_reserved in every zone; ZONE_MOVABLE passes everything else;
/// hugetlb must be migratable and other compound pages (THP) need an LRU or movable head, then
/// the compound is skipped; refcount 0 (with the buddy skip); HWPoison and PageOffline are
/// passed under MEMORY_OFFLINE; `__PageMovable` or PageLRU pass; anything else is unmovable.
/// THP pages are taken as PMD-sized (the pageblock order), as on x86_64.
pub fn has_unmovable_pages_6_1(
    m: &Machine,
    start: u64,
    end: u64,
    migratetype: MigrateType,
    flags: u32,
    profile: &KernelProfile,
    cost: &mut ScanCost,
) -> Result<Option<Unmovable>, Fault> {
    const F: &str = "has_unmovable_pages";
    let zone = m.store.pageblock_zone(start);
    let unmovable = |pfn: u64| Unmovable {
        pfn,
        reason: "unmovable page",
        movable_zone_warning: false,
    };
    if m.store.migratetype(start) == MigrateType::Cma {
        return Ok(if migratetype == MigrateType::Cma {
            None
        } else {
            Some(unmovable(start))
        });
    }
    let skip_offline = flags & MEMORY_OFFLINE != 0;
    let balloon = cmm_balloon_movable(m, profile);
    let pbn = m.geometry.pageblock_nr_pages();
    // A uniform section whose kind the loop passes one page at a time: O(1), same reads.
    // (effective_byte only changes UNINIT pages, which are not passed.)
    if let RunView::Compact {
        how: Compact::Uniform(b),
        ..
    } = m.store.run(start, (end - start) as usize)
    {
        let k = kind_of(b);
        let hole = k == kind::ZEROED && field_of(b) == ZEROED_HOLE;
        let passed = if zone == ZoneType::Movable {
            !matches!(k, kind::UNINIT | kind::NOMEMMAP | kind::RESERVED) && !hole
        } else {
            matches!(k, kind::FREE | kind::MOVABLE | kind::LRU | kind::PINNED)
                || (k == kind::ZEROED && !hole)
        };
        if passed {
            cost.struct_pages_read += end - start;
            return Ok(None);
        }
    }
    let mut pfn = start;
    while pfn < end {
        cost.struct_pages_read += 1;
        let b = effective_byte(m, pfn, profile);
        let k = kind_of(b);
        if matches!(k, kind::UNINIT | kind::NOMEMMAP)
            && page_flags(m, pfn, profile, F, "PageReserved")?.is_none()
        {
            return Ok(Some(unmovable(pfn)));
        }
        // 6.1 initialises holes PG_reserved (init_unavailable_range()).
        if k == kind::RESERVED || (k == kind::ZEROED && field_of(b) == ZEROED_HOLE) {
            return Ok(Some(unmovable(pfn)));
        }
        if zone == ZoneType::Movable {
            pfn += 1;
            continue;
        }
        match k {
            kind::HUGETLB_HEAD | kind::HUGETLB_TAIL => {
                let Some(hs) = m.hstates.get((field_of(b) & 7) as usize).copied() else {
                    return Ok(Some(unmovable(pfn)));
                };
                if !hs.migration_supported {
                    return Ok(Some(unmovable(pfn)));
                }
                let n = 1u64 << hs.order;
                pfn = (pfn & !(n - 1)) + n;
                continue;
            }
            // A THP: the head is PageLRU, so the compound is accepted and skipped.
            kind::THP_HEAD | kind::THP_TAIL => {
                pfn = (pfn & !(pbn - 1)) + pbn;
                continue;
            }
            kind::BUDDY => {
                pfn += 1u64 << field_of(b);
                continue;
            }
            kind::FREE | kind::ZEROED | kind::MOVABLE | kind::LRU | kind::PINNED => {}
            // lru_cache_disable() in offline_pages() drained the per-CPU batches first
            kind::UNMOVABLE if field_of(b) == LRU_BATCH => {}
            kind::HWPOISON | kind::OFFLINE if skip_offline => {}
            // pseries CMM balloon pages: __PageMovable
            kind::OFFLINE if balloon => {}
            _ => return Ok(Some(unmovable(pfn))),
        }
        pfn += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testutil::{kernel, machine, PB, PFN0};
    use crate::page::kind;

    fn scan55(m: &Machine, pfn: u64) -> Option<Unmovable> {
        let mut c = ScanCost::default();
        has_unmovable_pages(
            m,
            m.store.pageblock_zone(pfn),
            pfn,
            0,
            MigrateType::Movable,
            MEMORY_OFFLINE,
            &kernel("5.5"),
            &mut c,
        )
        .unwrap()
    }

    fn scan61(m: &Machine, pfn: u64) -> Option<Unmovable> {
        let mut c = ScanCost::default();
        let (mt, k) = (MigrateType::Movable, kernel("6.1"));
        has_unmovable_pages_6_1(m, pfn, pfn + PB, mt, MEMORY_OFFLINE, &k, &mut c).unwrap()
    }

    #[test]
    fn lru_pageblock_is_movable_and_an_unmovable_page_is_named() {
        let mut m = machine(1, &[]);
        m.store.set_pages(PFN0, PB, kind::LRU);
        assert_eq!(scan55(&m, PFN0), None);
        m.store.set_pages(PFN0 + 100, 1, kind::UNMOVABLE);
        let u = scan55(&m, PFN0).expect("unmovable");
        assert_eq!(u.pfn, PFN0 + 100);
        assert!(!u.movable_zone_warning);
    }

    #[test]
    fn reserved_page_is_unmovable_in_both_versions_and_hwpoison_passes_offline() {
        let mut m = machine(1, &[]);
        m.store.set_pages(PFN0, PB, kind::LRU);
        m.store.set_pages(PFN0 + 5, 1, kind::HWPOISON);
        assert_eq!(scan55(&m, PFN0), None);
        assert_eq!(scan61(&m, PFN0), None);
        m.store.set_pages(PFN0 + 9, 1, kind::RESERVED);
        assert_eq!(scan55(&m, PFN0).map(|u| u.pfn), Some(PFN0 + 9));
        assert_eq!(scan61(&m, PFN0).map(|u| u.pfn), Some(PFN0 + 9));
    }
}
