//! `dissolve_free_huge_pages()`: free hugetlb pages of the range leave the pool.

use crate::page::{field_of, kind, kind_of, HUGETLB_FREE};
use crate::topology::Machine;

/// The first free hugetlb page of `[start, end)` that cannot be dissolved: free pool pages
/// (machine-wide, less the `taken` ones migration dequeued per hstate) minus reserved ones
/// run out before it (`dissolve_free_huge_page()`: -EBUSY when `available_huge_pages()` is 0;
/// 5.5-rc5, 6.1-rc6).
pub(super) fn undissolvable_hugetlb(
    m: &Machine,
    start: u64,
    end: u64,
    taken: &[u64],
) -> Option<u64> {
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
    for (f, t) in free.iter_mut().zip(taken) {
        *f = f.saturating_sub(*t);
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
