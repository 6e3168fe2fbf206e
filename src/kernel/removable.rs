//! The `removable` attribute of a memory block.
//!
//! Pre-patch (v5.5, v5.6-rc; drivers/base/memory.c `removable_show()` and
//! mm/memory_hotplug.c `is_mem_section_removable()`, `next_active_pageblock()`,
//! `is_pageblock_removable_nolock()`, pfn-based form of 891cb2a72d82): AND over the block's
//! present sections, no short-circuit, no locks. Post-patch (53cdc1cb29e8, v5.6 final and
//! later): `IS_ENABLED(CONFIG_MEMORY_HOTREMOVE)`, no memmap access.

use crate::cost::ScanCost;
use crate::error::{Error, Result};
use crate::kernel::pageinfo::{page_to_nid, page_zone, wrong, Fault, FaultKind};
use crate::kernel::profile::KernelProfile;
use crate::kernel::unmovable::{has_unmovable_pages, max_kind, Unmovable, MEMORY_OFFLINE};
use crate::page::{field_of, kind, kind_of, MigrateType, ZoneType};
use crate::sections::{Compact, RunView};
use crate::topology::{BlockState, Machine};

/// The outcome of reading `memoryN/removable` once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockScan {
    pub block: u64,
    /// "0"/"1" as printed; `None` when the read never returned (BUG or oops) or its answer is
    /// undefined.
    pub value: Option<u8>,
    /// The fault that ended the read (BUG, oops) or made it undefined.
    pub fault: Option<Fault>,
    /// The first silently wrong struct-page read that did not stop the scan.
    pub note: Option<Fault>,
    /// Whether the memmap was scanned at all.
    pub scanned: bool,
    /// The first unmovable page found (for "why 0").
    pub first_unmovable: Option<Unmovable>,
    pub cost: ScanCost,
}

/// Scan state threaded through the helpers.
struct Scan<'a> {
    m: &'a Machine,
    profile: &'a KernelProfile,
    cost: ScanCost,
    note: Option<Fault>,
    first_unmovable: Option<Unmovable>,
}

impl Scan<'_> {
    fn note_zeroed(
        &mut self,
        function: &'static str,
        access: &'static str,
        pfn: u64,
        nid: u16,
        zone: ZoneType,
    ) {
        // A zeroed struct page says node 0, zone index 0; note it when the pfn is elsewhere.
        let real_nid = self
            .m
            .store
            .section_meta(self.m.geometry.pfn_to_section(pfn))
            .nid;
        let real_zone = self.m.store.pageblock_zone(pfn);
        if self.note.is_none() && (real_nid, real_zone) != (nid, zone) {
            self.note = Some(wrong(self.m, self.profile, function, access, pfn));
        }
    }

    /// `is_mem_section_removable(start_pfn, nr_pages)`.
    fn section(&mut self, start_pfn: u64, nr_pages: u64) -> std::result::Result<bool, Fault> {
        const F: &str = "is_mem_section_removable";
        self.cost.sections_scanned += 1;
        self.cost.struct_pages_read += 1;
        // end_pfn = min(start_pfn + nr_pages, zone_end_pfn(page_zone(pfn_to_page(start_pfn))))
        let (nid, zone, zeroed) = page_zone(self.m, start_pfn, self.profile, F)?;
        if zeroed {
            self.note_zeroed(F, "page_zone", start_pfn, nid, zone);
        }
        let end_pfn = (start_pfn + nr_pages).min(self.m.zone_span(nid, zone).end_pfn);
        if let Some(n) = self.section_passes(start_pfn, end_pfn, nid, zone) {
            let pbn = self.m.geometry.pageblock_nr_pages();
            self.cost.pageblocks_visited += n;
            self.cost.struct_pages_read += n * (pbn + 2);
            return Ok(true);
        }
        let mut pfn = start_pfn;
        while pfn < end_pfn {
            if !self.pageblock(pfn)? {
                return Ok(false);
            }
            // cond_resched()
            pfn = self.next_active_pageblock(pfn)?;
        }
        Ok(true)
    }

    /// The loop below in O(1) per section where its outcome is plain: every page of the
    /// pageblocks it visits in `[start, end)` is of a kind `has_unmovable_pages` passes page
    /// by page under MEMORY_OFFLINE in any zone (up to HWPoison: no buddy, so
    /// `next_active_pageblock` steps one pageblock at a time and no page is skipped), their
    /// node is online, they are all in `zone`, which spans `start` (and so every pfn up to
    /// `end`, the zone's end at most), and none is CMA. Then each of the `n` pageblocks
    /// visited passes, read as the loop reads it: one struct page for page_to_nid and
    /// page_zone, every page in has_unmovable_pages, one in next_active_pageblock. Returns
    /// `n`, or None to run the loop.
    fn section_passes(&self, start: u64, end: u64, nid: u16, zone: ZoneType) -> Option<u64> {
        let m = self.m;
        let g = &m.geometry;
        let pbn = g.pageblock_nr_pages();
        if start >= end
            || start & (pbn - 1) != 0
            || !m.node_online(nid)
            || !m.zone_span(nid, zone).spans(start)
        {
            return None;
        }
        let n = (end - start).div_ceil(pbn);
        let len = n * pbn;
        if g.pfn_to_section(start) != g.pfn_to_section(start + len - 1)
            || m.store.section_meta(g.pfn_to_section(start)).nid != nid
        {
            return None;
        }
        let plain = match m.store.run(start, len as usize) {
            RunView::Dense(bytes) => max_kind(bytes) <= kind::LAST_PLAIN_SKIP,
            RunView::Compact {
                how: Compact::Uniform(b),
                ..
            } => kind_of(b) <= kind::LAST_PLAIN_SKIP,
            RunView::Compact { .. } => false,
        };
        let same = (0..n).all(|i| {
            let p = start + i * pbn;
            m.store.pageblock_zone(p) == zone && m.store.migratetype(p) != MigrateType::Cma
        });
        (plain && same).then_some(n)
    }

    /// `next_active_pageblock(pfn)`.
    fn next_active_pageblock(&mut self, pfn: u64) -> std::result::Result<u64, Fault> {
        let g = &self.m.geometry;
        let pbn = g.pageblock_nr_pages();
        if pfn & (pbn - 1) != 0 {
            return Err(Fault {
                function: "next_active_pageblock",
                access: "BUG_ON(pfn & (pageblock_nr_pages - 1))",
                pfn,
                kind: FaultKind::Bug,
                message: format!("kernel BUG: pfn {pfn:#x} is not pageblock-aligned"),
            });
        }
        self.cost.struct_pages_read += 1;
        // pageblock_free(): PageBuddy(page) && page_order(page) >= pageblock_order. PageBuddy is
        // a page type with no poison check; an uninitialised page is never PageBuddy here
        // (the caller already read this struct page's node).
        let b = self.m.store.page(pfn);
        if kind_of(b) == kind::BUDDY {
            let order = u32::from(field_of(b));
            // page_order() read again, locklessly; then order < MAX_ORDER && order >= pageblock_order.
            if order >= g.pageblock_order && order < g.max_order {
                return Ok(pfn + (1u64 << order));
            }
        }
        Ok(pfn + pbn)
    }

    /// `is_pageblock_removable_nolock(pfn)`.
    fn pageblock(&mut self, pfn: u64) -> std::result::Result<bool, Fault> {
        const F: &str = "is_pageblock_removable_nolock";
        self.cost.pageblocks_visited += 1;
        self.cost.struct_pages_read += 1;
        let Some((nid, zeroed)) = page_to_nid(self.m, pfn, self.profile, F)? else {
            // A poisoned node id (DEBUG_VM without PGFLAGS): no such node is online.
            return Ok(false);
        };
        if !self.m.node_online(nid) {
            return Ok(false);
        }
        let (_, zone, _) = page_zone(self.m, pfn, self.profile, F)?;
        if zeroed {
            self.note_zeroed(F, "page_to_nid", pfn, nid, zone);
        }
        if !self.m.zone_span(nid, zone).spans(pfn) {
            return Ok(false);
        }
        let r = has_unmovable_pages(
            self.m,
            zone,
            pfn,
            0,
            MigrateType::Movable,
            MEMORY_OFFLINE,
            self.profile,
            &mut self.cost,
        )?;
        match r {
            None => Ok(true),
            Some(u) => {
                if self.first_unmovable.is_none() {
                    self.first_unmovable = Some(u);
                }
                Ok(false)
            }
        }
    }
}

/// `removable_show()` for block `block` under `profile`.
pub fn removable_show(m: &Machine, block: u64, profile: &KernelProfile) -> Result<BlockScan> {
    let state = m.block_state(block)?;
    let mut out = BlockScan {
        block,
        value: Some(1),
        fault: None,
        note: None,
        scanned: false,
        first_unmovable: None,
        cost: ScanCost::default(),
    };
    if !profile.removable_scans() {
        // sprintf("%d\n", IS_ENABLED(CONFIG_MEMORY_HOTREMOVE))
        out.value = Some(u8::from(profile.memory_hotremove));
        return Ok(out);
    }
    if state != BlockState::Online {
        // Offline and going-offline blocks print 1 without a scan.
        return Ok(out);
    }
    let g = &m.geometry;
    let mut scan = Scan {
        m,
        profile,
        cost: ScanCost {
            blocks_scanned: 1,
            ..ScanCost::default()
        },
        note: None,
        first_unmovable: None,
    };
    out.scanned = true;
    let mut ret = true;
    let spb = g.sections_per_block();
    let first = block * spb;
    for nr in first..first + spb {
        if !m.store.present_section_nr(nr) {
            continue;
        }
        if !profile.memory_hotremove {
            // The !CONFIG_MEMORY_HOTREMOVE stub returns false without reading anything.
            ret = false;
            continue;
        }
        match scan.section(g.section_to_pfn(nr), g.pages_per_section()) {
            Ok(r) => ret &= r,
            Err(f) => {
                // Faults that end the read are BUG, oops or undefined; silently wrong reads
                // are notes and never reach here.
                out.value = None;
                out.fault = Some(f);
                break;
            }
        }
    }
    if out.fault.is_none() {
        out.value = Some(u8::from(ret));
    }
    out.note = scan.note;
    out.first_unmovable = scan.first_unmovable;
    out.cost = scan.cost;
    Ok(out)
}

/// `is_mem_section_removable(start_pfn, nr_pages)` called directly (as powerpc's
/// `lmb_is_removable()` did), for any pfn: an unaligned start reaches the BUG_ON in
/// `next_active_pageblock()`.
pub fn is_mem_section_removable(
    m: &Machine,
    start_pfn: u64,
    nr_pages: u64,
    profile: &KernelProfile,
) -> (std::result::Result<bool, Fault>, ScanCost) {
    let mut scan = Scan {
        m,
        profile,
        cost: ScanCost::default(),
        note: None,
        first_unmovable: None,
    };
    let r = scan.section(start_pfn, nr_pages);
    (r, scan.cost)
}

/// A direct call of `is_mem_section_removable()` (as powerpc's `lmb_is_removable()` made in
/// 5.6.4): without CONFIG_MEMORY_HOTREMOVE it is the header's stub that returns false without
/// a scan (include/linux/memory_hotplug.h, read in 5.6.4); 6.1-rc6 has no such function
/// (lmb_is_removable() leaves the decision to device_offline()), so a 6.1 profile is refused.
/// Removed after 5.6 (v5.7 by the fidelity issue [R]).
pub fn is_mem_section_removable_call(
    m: &Machine,
    start_pfn: u64,
    nr_pages: u64,
    profile: &KernelProfile,
) -> Result<(std::result::Result<bool, Fault>, ScanCost)> {
    if !profile.has_is_mem_section_removable() {
        return Err(Error::Argument(format!(
            "is_mem_section_removable() does not exist in {} (removed after 5.6)",
            profile.version.name()
        )));
    }
    if !profile.memory_hotremove {
        return Ok((Ok(false), ScanCost::default()));
    }
    Ok(is_mem_section_removable(m, start_pfn, nr_pages, profile))
}

/// `removable` of each listed block, in order; `parallel` spreads blocks over rayon threads.
pub fn scan_blocks(
    m: &Machine,
    blocks: &[u64],
    profile: &KernelProfile,
    parallel: bool,
) -> Result<Vec<BlockScan>> {
    use rayon::prelude::*;
    // every id is checked first, so a bad one is reported the same way in either mode
    for &b in blocks {
        m.block_state(b)?;
    }
    let one = |&b: &u64| removable_show(m, b, profile);
    if parallel {
        blocks.par_iter().map(one).collect()
    } else {
        blocks.iter().map(one).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testutil::{block, kernel, machine, PB, PFN0};
    use crate::page::{kind, make};

    #[test]
    fn free_block_scans_and_reads_1_prepatch_and_1_without_scan_postpatch() {
        let m = machine(2, &[]);
        let r = removable_show(&m, block(0), &kernel("5.5")).unwrap();
        assert_eq!(r.value, Some(1));
        assert!(r.scanned && r.cost.sections_scanned == 1);
        // free buddies of MAX_ORDER are skipped two pageblocks at a time by
        // next_active_pageblock(): every other pageblock is visited
        assert_eq!(r.cost.pageblocks_visited, 32_768 / PB / 2);
        let p = removable_show(&m, block(0), &kernel("5.6")).unwrap();
        assert_eq!(
            (p.value, p.scanned, p.cost.struct_pages_read),
            (Some(1), false, 0)
        );
    }

    #[test]
    fn one_unmovable_page_in_normal_reads_0_and_names_it() {
        let mut m = machine(1, &[]);
        m.store.set_pages(PFN0, 32_768, kind::LRU);
        m.store.set_pages(PFN0 + 3 * PB + 7, 1, kind::UNMOVABLE);
        let r = removable_show(&m, block(0), &kernel("5.5")).unwrap();
        assert_eq!(r.value, Some(0));
        assert_eq!(r.first_unmovable.map(|u| u.pfn), Some(PFN0 + 3 * PB + 7));
    }

    #[test]
    fn sections_of_pages_passed_one_by_one_read_every_page_and_two_per_pageblock() {
        // kinds has_unmovable_pages passes page by page, dense and uniform: the section's
        // page_zone read, then per pageblock its page_to_nid/page_zone read, its 512 pages
        // and next_active_pageblock's read (is_mem_section_removable, v5.5)
        let nr = 32_768u64;
        let want = 1 + (nr / PB) * (PB + 2);
        let mut dense = machine(1, &[]);
        dense.store.set_pages(PFN0, nr, kind::LRU);
        dense
            .store
            .set_pages(PFN0 + 5 * PB, 1, make(kind::THP_HEAD, 9));
        dense
            .store
            .set_pages(PFN0 + 5 * PB + 1, PB - 1, kind::THP_TAIL);
        dense.store.set_pages(PFN0 + 9 * PB + 3, 2, kind::HWPOISON);
        dense.store.set_pages(PFN0 + 11 * PB, 4, kind::PINNED);
        let mut uniform = machine(1, &[]);
        uniform.store.set_pages(PFN0, nr, kind::MOVABLE);
        for m in [&dense, &uniform] {
            let r = removable_show(m, block(0), &kernel("5.5")).unwrap();
            assert_eq!(r.value, Some(1));
            assert_eq!(r.cost.struct_pages_read, want);
            assert_eq!(r.cost.pageblocks_visited, nr / PB);
            assert_eq!(r.cost.sections_scanned, 1);
        }
        // a CMA pageblock among them is unmovable (is_migrate_cma_page, no struct page read)
        // and ends the scan there
        let mut cma = dense.try_clone().unwrap();
        cma.store.set_migratetype(PFN0 + 7 * PB, MigrateType::Cma);
        let r = removable_show(&cma, block(0), &kernel("5.5")).unwrap();
        assert_eq!(r.value, Some(0));
        assert_eq!(r.cost.pageblocks_visited, 8);
        assert_eq!(r.cost.struct_pages_read, 1 + 7 * (PB + 2) + 1);
        // a pageblock linked to another zone is visited in that zone
        let mut other = dense.try_clone().unwrap();
        other
            .store
            .set_pageblock_zone(PFN0 + 2 * PB, ZoneType::Movable);
        let r = removable_show(&other, block(0), &kernel("5.5")).unwrap();
        assert_eq!(
            r.value,
            Some(0),
            "ZONE_MOVABLE does not span that pageblock"
        );
        assert_eq!(r.cost.pageblocks_visited, 3);
    }

    #[test]
    fn offline_block_reads_1_without_scan_and_direct_call_is_gone_in_6_1() {
        let m = machine(2, &[block(1)]);
        let r = removable_show(&m, block(1), &kernel("5.5+debug")).unwrap();
        assert_eq!((r.value, r.scanned), (Some(1), false));
        assert!(is_mem_section_removable_call(&m, PFN0, 32_768, &kernel("6.1")).is_err());
    }
}
