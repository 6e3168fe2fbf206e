//! /proc/kpageflags: one little-endian u64 per pfn (fs/proc/page.c, include/uapi/linux/
//! kernel-page-flags.h). Export writes what a 6.1 kernel would report for the model's pages;
//! import turns flags back into page kinds, with what the format cannot tell made explicit.
//!
//! Kind → flags (6.1 `stable_page_flags()`):
//! FREE inside a free buddy block and BUDDY → KPF_BUDDY (every page of the block, since
//! 832fc1de01ae in v4.6); FREE outside one (a pcp page) → 0; LRU and PINNED → LRU|MMAP|ANON|
//! SWAPBACKED (pins are invisible); MOVABLE (zsmalloc, balloon compaction) → 0 (`__PageMovable`
//! is not exported); UNMOVABLE → SLAB; THP head → COMPOUND_HEAD|THP|LRU|MMAP|ANON, tail →
//! COMPOUND_TAIL|THP|MMAP|ANON; HWPOISON → HWPOISON; OFFLINE → OFFLINE; hugetlb head/tail →
//! COMPOUND_HEAD/TAIL|HUGE; RESERVED and the memmap of holes → RESERVED; a zeroed struct
//! page → 0; pfns without an online memmap (absent, offline, ZONE_DEVICE) → NOPAGE.
//!
//! Flags → kind: BUDDY runs are cut into the largest aligned blocks (≤ MAX_ORDER-1), as the
//! buddy allocator keeps them; compound runs give THP/hugetlb heads and tails (order from the
//! run length; hugetlb hstate by order; pool-free unknown without kpagecount; a compound head
//! without HUGE, THP or LRU, as a slab of order > 0, is UNMOVABLE with refcount-0 tails); SLAB or PGTABLE →
//! UNMOVABLE; LRU → LRU; MMAP|ANON without LRU (a page in a per-CPU LRU batch) → UNMOVABLE
//! with field LRU_BATCH (unmovable to 5.x isolation, an LRU page once drained); flags 0
//! (a pcp free page, an order-0 kernel allocation and a non-LRU movable page all read 0),
//! counted as ambiguous → UNMOVABLE where the pageblock holds slab or page-table pages, FREE
//! (a per-CPU free page) elsewhere.

use crate::geometry::Geometry;
use crate::page::{field_of, kind, kind_of, make, LRU_BATCH, ZEROED_HOLE};
use crate::topology::{write_free_range, Machine};

/// Bit numbers of include/uapi/linux/kernel-page-flags.h that memscan reads or writes: the one
/// home of these numbers (Python's `memscan.kpageflags.KPF` is read from here).
pub const KPF_BITS: [(&str, u32); 15] = [
    ("LRU", 5),
    ("SLAB", 7),
    ("BUDDY", 10),
    ("MMAP", 11),
    ("ANON", 12),
    ("SWAPBACKED", 14),
    ("COMPOUND_HEAD", 15),
    ("COMPOUND_TAIL", 16),
    ("HUGE", 17),
    ("HWPOISON", 19),
    ("NOPAGE", 20),
    ("THP", 22),
    ("OFFLINE", 23),
    ("PGTABLE", 26),
    ("RESERVED", 32),
];

/// The mask of the bit called `name` in [`KPF_BITS`] (a compile-time lookup).
const fn kpf(name: &str) -> u64 {
    let mut i = 0;
    while i < KPF_BITS.len() {
        if const_str_eq(KPF_BITS[i].0, name) {
            return 1 << KPF_BITS[i].1;
        }
        i += 1;
    }
    panic!("no such KPF bit")
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

pub const KPF_SLAB: u64 = kpf("SLAB");
pub const KPF_LRU: u64 = kpf("LRU");
pub const KPF_BUDDY: u64 = kpf("BUDDY");
pub const KPF_MMAP: u64 = kpf("MMAP");
pub const KPF_ANON: u64 = kpf("ANON");
pub const KPF_SWAPBACKED: u64 = kpf("SWAPBACKED");
pub const KPF_COMPOUND_HEAD: u64 = kpf("COMPOUND_HEAD");
pub const KPF_COMPOUND_TAIL: u64 = kpf("COMPOUND_TAIL");
pub const KPF_HUGE: u64 = kpf("HUGE");
pub const KPF_HWPOISON: u64 = kpf("HWPOISON");
pub const KPF_NOPAGE: u64 = kpf("NOPAGE");
pub const KPF_THP: u64 = kpf("THP");
pub const KPF_OFFLINE: u64 = kpf("OFFLINE");
pub const KPF_PGTABLE: u64 = kpf("PGTABLE");
pub const KPF_RESERVED: u64 = kpf("RESERVED");

const ANON_PAGE: u64 = KPF_LRU | KPF_MMAP | KPF_ANON | KPF_SWAPBACKED;

/// Flags for `count` pfns from `start`.
pub fn export(m: &Machine, start: u64, count: u64) -> Vec<u64> {
    let g = m.geometry;
    let mut out = Vec::with_capacity(count as usize);
    // end of the free buddy block we are inside, if any
    let mut buddy_end = 0u64;
    // a block may begin before `start`: look back to the MAX_ORDER-aligned start
    let mut p = start & !(g.max_order_nr_pages() - 1);
    while p < start {
        let b = m.store.page(p);
        if kind_of(b) == kind::BUDDY {
            buddy_end = buddy_end.max(p + (1u64 << field_of(b)));
        }
        p += 1;
    }
    let end = start + count;
    let pps = g.pages_per_section();
    let mut pfn = start;
    while pfn < end {
        let sec_end = ((pfn / pps + 1) * pps).min(end);
        let meta = m.store.section_meta(g.pfn_to_section(pfn));
        if !meta.online() || meta.device() {
            // pfn_to_online_page() is NULL for the whole section
            out.extend(std::iter::repeat_n(KPF_NOPAGE, (sec_end - pfn) as usize));
            pfn = sec_end;
            continue;
        }
        let run = m.store.run(pfn, (sec_end - pfn) as usize);
        for i in 0..run.len() {
            out.push(page_flags(run.get(i), pfn + i as u64, &mut buddy_end));
        }
        pfn = sec_end;
    }
    out
}

/// The kpageflags word of one online page; `buddy_end` tracks the free buddy block the walk
/// is inside.
#[inline]
fn page_flags(b: u8, pfn: u64, buddy_end: &mut u64) -> u64 {
    match kind_of(b) {
        kind::BUDDY => {
            *buddy_end = (*buddy_end).max(pfn + (1u64 << field_of(b)));
            KPF_BUDDY
        }
        kind::FREE if pfn < *buddy_end => KPF_BUDDY,
        kind::LRU | kind::PINNED => ANON_PAGE,
        kind::THP_HEAD => KPF_COMPOUND_HEAD | KPF_THP | ANON_PAGE & !KPF_SWAPBACKED,
        kind::THP_TAIL => KPF_COMPOUND_TAIL | KPF_THP | KPF_MMAP | KPF_ANON,
        kind::UNMOVABLE if field_of(b) == LRU_BATCH => KPF_MMAP | KPF_ANON | KPF_SWAPBACKED,
        kind::UNMOVABLE => KPF_SLAB,
        kind::HWPOISON => KPF_HWPOISON,
        kind::OFFLINE => KPF_OFFLINE,
        kind::HUGETLB_HEAD => KPF_COMPOUND_HEAD | KPF_HUGE,
        kind::HUGETLB_TAIL => KPF_COMPOUND_TAIL | KPF_HUGE,
        kind::RESERVED => KPF_RESERVED,
        kind::ZEROED if field_of(b) == ZEROED_HOLE => KPF_RESERVED,
        kind::UNINIT | kind::NOMEMMAP => KPF_NOPAGE,
        _ => 0, // FREE outside a buddy block (pcp), MOVABLE, zeroed struct pages
    }
}

/// What an import could and could not tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    pub pages: u64,
    pub nopage: u64,
    /// Pages with no flags at all: pcp free, order-0 kernel or non-LRU movable.
    pub ambiguous: u64,
    /// Of those, taken as per-CPU free pages (no slab or page-table page in their pageblock);
    /// the rest are taken as kernel pages (UNMOVABLE).
    pub ambiguous_free: u64,
    /// Pages that looked like LRU pages without PG_lru (per-CPU LRU batches).
    pub lru_batch: u64,
    /// Free buddy blocks per order after cutting BUDDY runs.
    pub buddy_blocks: [u64; 16],
    /// hugetlb heads that kpagecount read as mapped (in use).
    pub hugetlb_mapped: u64,
    /// hugetlb heads mapped by no one: taken as free pool pages; an allocated hugetlbfs page
    /// that no process maps reads the same, so these are uncertain.
    pub hugetlb_unmapped: u64,
}

impl ImportStats {
    /// The scalar counters by name (`buddy_blocks` is a per-order array beside them).
    pub const FIELDS: [crate::cost::Field<ImportStats>; 7] = [
        ("pages", |s| s.pages),
        ("nopage", |s| s.nopage),
        ("ambiguous", |s| s.ambiguous),
        ("ambiguous_free", |s| s.ambiguous_free),
        ("lru_batch", |s| s.lru_batch),
        ("hugetlb_mapped", |s| s.hugetlb_mapped),
        ("hugetlb_unmapped", |s| s.hugetlb_unmapped),
    ];
}

fn hstate_for(m: &Machine, order: u32) -> u8 {
    m.hstates
        .iter()
        .position(|h| h.order == order)
        .map_or(0, |i| i as u8)
}

/// [`import`] after checking the input: the pfn range is the machine's, and `counts` (when
/// given) covers the same pfns as `flags`.
pub fn import_checked(
    m: &mut Machine,
    start: u64,
    flags: &[u64],
    counts: Option<&[u64]>,
) -> crate::Result<ImportStats> {
    if counts.is_some_and(|c| c.len() != flags.len()) {
        return Err(crate::Error::Argument(
            "kpagecount and kpageflags cover different pfn counts".into(),
        ));
    }
    m.check_pfn_range(start, flags.len() as u64)?;
    Ok(import(m, start, flags, counts))
}

/// Write page kinds for `flags` from `start`: only pfns of online sections are written (the
/// layout decides where memory is).
/// `counts` (/proc/kpagecount for the same pfns, the map count) tells free hugetlb pool pages
/// (mapped by no one) from mapped ones; without it every hugetlb page is taken as in use.
pub fn import(m: &mut Machine, start: u64, flags: &[u64], counts: Option<&[u64]>) -> ImportStats {
    let g: Geometry = m.geometry;
    let n = flags.len() as u64;
    let mut st = ImportStats {
        pages: n,
        ..ImportStats::default()
    };
    let online = |m: &Machine, pfn: u64| {
        let meta = m.store.section_meta(g.pfn_to_section(pfn));
        meta.online() && !meta.device()
    };
    let mut i = 0u64;
    let mut bytes: Vec<u8> = Vec::with_capacity(flags.len());
    let mut free_runs: Vec<(u64, u64)> = Vec::new();
    // indices (into `bytes`) of pages that read no flags at all
    let mut no_flags: Vec<usize> = Vec::new();
    while i < n {
        let pfn = start + i;
        let f = flags[i as usize];
        // a hole of the layout (not RAM in iomem) keeps its byte: what its struct page holds
        // is the profile's (pageinfo::hole_as), and it reads no flags on 5.4..5.6 either way
        let cur = m.store.page(pfn);
        if f & KPF_NOPAGE != 0 || !online(m, pfn) || cur == make(kind::ZEROED, ZEROED_HOLE) {
            st.nopage += u64::from(f & KPF_NOPAGE != 0);
            bytes.push(cur);
            i += 1;
            continue;
        }
        if f & KPF_BUDDY != 0 {
            let mut j = i;
            while j < n && flags[j as usize] & KPF_BUDDY != 0 && online(m, start + j) {
                j += 1;
            }
            free_runs.push((pfn, start + j));
            bytes.extend(std::iter::repeat_n(kind::FREE, (j - i) as usize));
            i = j;
            continue;
        }
        if f & KPF_COMPOUND_HEAD != 0 {
            // tails only as far as online sections go: a run that reaches an offline block
            // or ZONE_DEVICE memory stops there (their memmap is not the kernel's to report)
            let mut j = i + 1;
            while j < n && flags[j as usize] & KPF_COMPOUND_TAIL != 0 && online(m, start + j) {
                j += 1;
            }
            let len = j - i;
            let order = len.ilog2();
            if f & KPF_HUGE != 0 {
                let mut hs = hstate_for(m, order);
                // kpagecount of a hugetlb head is its compound map count (fs/proc/page.c
                // kpagecount_read, 6.1): 0 for a free pool page
                match counts.map(|c| c[i as usize]) {
                    Some(0) => {
                        hs |= crate::page::HUGETLB_FREE;
                        st.hugetlb_unmapped += 1;
                    }
                    Some(_) => st.hugetlb_mapped += 1,
                    None => {}
                }
                bytes.push(make(kind::HUGETLB_HEAD, hs));
                bytes.extend(std::iter::repeat_n(
                    make(kind::HUGETLB_TAIL, hs),
                    (len - 1) as usize,
                ));
            } else if f & (KPF_THP | KPF_LRU) != 0 {
                bytes.push(make(kind::THP_HEAD, order.min(15) as u8));
                bytes.extend(std::iter::repeat_n(kind::THP_TAIL, (len - 1) as usize));
            } else {
                // A compound page that is neither hugetlb nor THP (slab of order > 0, a
                // compound kernel allocation): its head is what the kernel scans for
                // (has_unmovable_pages, 5.4.59 and v5.5: tails have refcount 0 and are passed
                // over; 6.1: a compound whose head is neither LRU nor movable is unmovable).
                // A real 5.4.59 kernel reported such a slab head (order 2) as the first
                // unmovable page of an offline. Tails: refcount 0, kept as compound tails.
                if f & (KPF_SLAB | KPF_PGTABLE) == 0 {
                    st.ambiguous += 1;
                }
                bytes.push(kind::UNMOVABLE);
                bytes.extend(std::iter::repeat_n(kind::THP_TAIL, (len - 1) as usize));
            }
            i = j;
            continue;
        }
        let k = if f & KPF_RESERVED != 0 {
            kind::RESERVED
        } else if f & KPF_HWPOISON != 0 {
            kind::HWPOISON
        } else if f & KPF_OFFLINE != 0 {
            kind::OFFLINE
        } else if f & (KPF_SLAB | KPF_PGTABLE) != 0 {
            kind::UNMOVABLE
        } else if f & KPF_LRU != 0 {
            kind::LRU
        } else if f & (KPF_MMAP | KPF_ANON) != 0 {
            // mapped but not PG_lru: an LRU page in a per-CPU batch (see page::LRU_BATCH)
            st.lru_batch += 1;
            make(kind::UNMOVABLE, LRU_BATCH)
        } else if f & KPF_COMPOUND_TAIL != 0 {
            kind::THP_TAIL
        } else {
            st.ambiguous += 1;
            no_flags.push(bytes.len());
            kind::UNMOVABLE
        };
        bytes.push(k);
        i += 1;
    }
    // A page with no flags is a per-CPU free page (refcount 0: passed over by
    // has_unmovable_pages, drained to the buddy by 6.1's zone_pcp_disable) or an order-0
    // kernel page (unmovable); kpageflags cannot tell. The page allocator groups unmovable
    // kernel allocations by pageblock (MIGRATE_UNMOVABLE), so a no-flag page is taken as a
    // kernel page where its pageblock holds slab or page-table pages, and as a per-CPU free
    // page elsewhere. On the recorded real runs (5.4.59, 6.1) this reading gives the kernel's
    // offline errno in 63-64 of 64 attempts per run, against 41 of 64 on a 6.1 run when every
    // such page was taken as a kernel page; groundtruth.agree reports per attempt whether the
    // reading decided the outcome.
    if !no_flags.is_empty() {
        let pbo = g.pageblock_order;
        let first_pb = start >> pbo;
        let n_pb = (((start + n - 1) >> pbo) - first_pb + 1) as usize;
        let mut kernel_pb = vec![false; n_pb];
        for (i, &f) in flags.iter().enumerate() {
            if f & (KPF_SLAB | KPF_PGTABLE) != 0 && f & KPF_NOPAGE == 0 {
                kernel_pb[(((start + i as u64) >> pbo) - first_pb) as usize] = true;
            }
        }
        for &i in &no_flags {
            if !kernel_pb[(((start + i as u64) >> pbo) - first_pb) as usize] {
                bytes[i] = kind::FREE;
                st.ambiguous_free += 1;
            }
        }
    }
    m.store.write_pages(start, &bytes);
    let top = (g.max_order - 1) as u8;
    for (s, e) in free_runs {
        write_free_range(&mut m.store, s, e, top);
        let mut p = s;
        while p < e {
            let b = m.store.page(p);
            let o = u32::from(field_of(b));
            st.buddy_blocks[o as usize] += 1;
            p += 1u64 << o;
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_the_uapi_bit_numbers() {
        // include/uapi/linux/kernel-page-flags.h (6.1-rc6)
        assert_eq!(KPF_LRU, 1 << 5);
        assert_eq!(KPF_SLAB, 1 << 7);
        assert_eq!(KPF_BUDDY, 1 << 10);
        assert_eq!(KPF_NOPAGE, 1 << 20);
        assert_eq!(KPF_RESERVED, 1 << 32);
        let mut bits: Vec<u32> = KPF_BITS.iter().map(|b| b.1).collect();
        bits.dedup();
        assert_eq!(bits.len(), KPF_BITS.len());
    }
}
