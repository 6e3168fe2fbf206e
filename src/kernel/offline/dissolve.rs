//! `dissolve_free_huge_pages()`: free hugetlb pages of the range leave the pool.

use crate::page::{kind, kind_of, MigrateType, ZoneType};

use super::migrate::hugetlb_free_counts;
use super::Errno;
use crate::topology::Machine;

/// The first free hugetlb page of `[start, end)` that cannot be dissolved (`heads`: the
/// range's free hugetlb pages in pfn order, with their hstate): free pool pages
/// (machine-wide, less the `taken` ones migration dequeued per hstate) minus reserved ones
/// run out before it (`dissolve_free_huge_page()`: -EBUSY when `available_huge_pages()` is 0;
/// 5.5-rc5, 6.1-rc6).
///
/// 6.1-rc6 with HugeTLB Vmemmap Optimization on (`Machine::hugetlb_vmemmap_optimized`):
/// `dissolve_free_huge_page()` first restores the page's vmemmap (`hugetlb_vmemmap_restore`:
/// all but one of the pages holding its struct pages, order-0 GFP_KERNEL | __GFP_NORETRY |
/// __GFP_THISNODE, so from kernel zones of the huge page's node) and fails with -ENOMEM
/// when they cannot be had; modeled as the free pages of those zones outside the range (it
/// is isolated) above the min watermark, the model's one global watermark.
pub(super) fn undissolvable_hugetlb(
    m: &Machine,
    start: u64,
    end: u64,
    heads: &[(u64, usize)],
    taken: &[u64],
    v61: bool,
) -> Option<(u64, Errno, &'static str)> {
    if heads.is_empty() {
        return None;
    }
    let g = m.geometry;
    let counts = hugetlb_free_counts(m);
    let mut free: Vec<u64> = (0..crate::page::HSTATE_SLOTS)
        .map(|h| counts.iter().map(|c| c.get(h).copied().unwrap_or(0)).sum())
        .collect();
    for (f, t) in free.iter_mut().zip(taken) {
        *f = f.saturating_sub(*t);
    }
    let hvo = v61 && m.hugetlb_vmemmap_optimized;
    let mut restore_free: Option<Vec<u64>> = None;
    for &(pfn, h) in heads {
        let resv = m.hugetlb_resv.get(h).copied().unwrap_or(0);
        let avail = free.get(h).copied().unwrap_or(0);
        if avail <= resv {
            return Some((
                pfn,
                Errno::Ebusy,
                "the free hugetlb pages left in the pool are all reserved",
            ));
        }
        if hvo {
            let order = m.hstates.get(h).map_or(0, |x| x.order);
            // struct pages of the huge page, in pages, less the one HVO keeps
            let need = ((1u64 << order) * 64 / g.page_size()).saturating_sub(1);
            let nid = m.store.section_meta(g.pfn_to_section(pfn)).nid as usize;
            let pool = restore_free.get_or_insert_with(|| kernel_free_by_node(m, start, end));
            let have = pool.get(nid).copied().unwrap_or(0);
            if have < need {
                return Some((
                    pfn,
                    Errno::Enomem,
                    "HVO: no free pages on the node to restore the huge page's vmemmap",
                ));
            }
            pool[nid] = have - need;
        }
        free[h] -= 1;
    }
    None
}

/// Free pages of kernel zones per node outside `[start, end)`, less their min watermarks.
fn kernel_free_by_node(m: &Machine, start: u64, end: u64) -> Vec<u64> {
    let g = m.geometry;
    let mut out = vec![0u64; m.nodes.len().max(1)];
    let pbn = g.pageblock_nr_pages();
    for sec in 0..m.store.nr_sections() {
        let meta = m.store.section_meta(sec);
        let base = g.section_to_pfn(sec);
        if !meta.online() || meta.device() || (base < end && start < base + g.pages_per_section()) {
            continue;
        }
        for pb in (base..base + g.pages_per_section()).step_by(pbn as usize) {
            if m.store.pageblock_zone(pb) == ZoneType::Movable
                || m.store.migratetype(pb) == MigrateType::Isolate
            {
                continue;
            }
            let run = m.store.run(pb, pbn as usize);
            let free = (0..run.len())
                .filter(|&i| matches!(kind_of(run.get(i)), kind::FREE | kind::BUDDY))
                .count() as u64;
            if let Some(n) = out.get_mut(meta.nid as usize) {
                *n += free;
            }
        }
    }
    // each node's kernel zones keep their share of the min watermark (HVO: 6.1 only)
    let total: u64 = m
        .managed_pages
        .iter()
        .map(|x| x[0] + x[1])
        .sum::<u64>()
        .max(1);
    for (nid, n) in out.iter_mut().enumerate() {
        let k = m.managed_pages.get(nid).map_or(0, |x| x[0]);
        let share = u128::from(m.min_free_pages_6_1) * u128::from(k) / u128::from(total);
        *n = n.saturating_sub(share as u64);
    }
    out
}
