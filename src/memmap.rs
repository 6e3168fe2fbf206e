//! Raw struct pages (a vmemmap range read from /proc/kcore, a vmcore or a ground-truth run)
//! decoded into page kinds: what kpageflags cannot tell, the memmap says (refcount, buddy
//! order, compound destructor, mapping's movable bit).
//!
//! Layout: Linux 5.4.59 x86_64 (include/linux/mm_types.h, page-flags.h, page-flags-layout.h;
//! read in BoKyoungHan/linux-5.4.59-vanilla), 64-byte struct page. The fields read here have
//! the same offsets and bits in v6.1-rc7 (PG_* up to PG_hwpoison 23 with X86_PAT, page types
//! buddy 0x80 / offline 0x100, compound_dtor/order at 16/17 of the first tail, the same
//! destructor ids), so 6.1 x86_64 struct pages decode the same way:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `flags`: PG_* bits from 0; the node id in the top NODES_SHIFT bits, the zone index below it in ZONES_WIDTH bits (SPARSEMEM_VMEMMAP: no section bits; our 5.4.59 builds: NODES_SHIFT 6, zone in 55..57, node in 58..63; Debian 6.1: NODES_SHIFT 10, zone 51..53, node 54..63; 5 zones → ZONES_WIDTH 3). Not used for the kind, but checked: [`LayoutCheck`] |
//! | 8 | `lru.next`, or `compound_head` with bit 0 set on a tail |
//! | 16 | on the first tail page: `compound_dtor` (u8), `compound_order` (u8) |
//! | 24 | `mapping`: low bits PAGE_MAPPING_ANON 1, PAGE_MAPPING_MOVABLE 2 (`__PageMovable`: == 2) |
//! | 40 | `private`: the buddy order of a PageBuddy page |
//! | 48 | `_mapcount` / `page_type` (u32): a page type is set by clearing its bit under 0xf0000000 (buddy 0x80, offline 0x100, table 0x400) |
//! | 52 | `_refcount` (i32) |
//!
//! Kind from struct page, in this order: all zero (a hole's zeroed memmap, or vmemmap that
//! /proc/kcore does not map) → left as modeled; all-ones flags (PagePoisoned) → UNINIT; PG_reserved →
//! RESERVED; a tail (compound_head bit 0) → its head's tail kind; a head → by destructor
//! (HUGETLB_PAGE_DTOR 2 → HUGETLB_HEAD, free in the pool when its refcount is 0;
//! TRANSHUGE_PAGE_DTOR 3 or PG_lru → THP_HEAD; otherwise, a slab or other compound kernel
//! allocation, UNMOVABLE with refcount-0 tails); PageBuddy → BUDDY of `private`'s order, its
//! other pages FREE; PG_hwpoison → HWPOISON; PageOffline → OFFLINE; refcount 0 → FREE (a
//! per-CPU free page: what kpageflags cannot tell from a kernel page); PG_lru → LRU;
//! `__PageMovable` → MOVABLE; mapped (anon, or file with a map count) but not PG_lru → an LRU
//! page still in a per-CPU batch (UNMOVABLE with field LRU_BATCH); anything else (slab, page
//! tables, kernel pages) → UNMOVABLE.
//!
//! Long-term pins: an order-0 PG_lru page whose refcount exceeds its map count by at least
//! `GUP_PIN_COUNTING_BIAS` (1024) → PINNED. From v5.7 on (6.1-rc7 include/linux/mm.h,
//! `try_grab_folio()` in mm/gup.c) `pin_user_pages()` (io_uring fixed buffers, RDMA, vfio)
//! adds 1024 to an order-0 page's refcount per pin; `page_maybe_dma_pinned()` reads it the same
//! fuzzy way (1024 plain references look alike). Either way migration, which wants the
//! refcount it expects from the mappings, fails on every pass, as on a pinned page. A pin on a
//! large folio (`_pincount` of its first tail) and a 5.4 `FOLL_LONGTERM` reference (+1, no
//! bias) stay invisible: those pages decode as THP_HEAD / LRU.

use crate::page::{kind, make, HUGETLB_FREE, LRU_BATCH};
use crate::topology::Machine;

pub const STRUCT_PAGE_SIZE: usize = crate::cost::STRUCT_PAGE_BYTES as usize;

const PG_LRU: u64 = 1 << 4;
const PG_RESERVED: u64 = 1 << 12;
const PG_HEAD: u64 = 1 << 16;
const PG_HWPOISON: u64 = 1 << 23;
const PAGE_TYPE_BASE: u32 = 0xf000_0000;
const PG_BUDDY: u32 = 0x80;
const PG_OFFLINE: u32 = 0x100;
const HUGETLB_PAGE_DTOR: u8 = 2;
/// include/linux/mm.h (v5.7+; 6.1-rc7): what one `pin_user_pages()` pin adds to the refcount.
const GUP_PIN_COUNTING_BIAS: i64 = 1 << 10;
const TRANSHUGE_PAGE_DTOR: u8 = 3;

/// Counts of what the decode found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemmapStats {
    pub pages: u64,
    /// pfns left as they were: not in an online section.
    pub skipped: u64,
    /// refcount-0 pages outside the buddy (per-CPU free lists): FREE.
    pub pcp_free: u64,
    /// refcount > 0, not PG_lru, mapped anonymous or file pages: LRU pages in a per-CPU
    /// pagevec, UNMOVABLE until drained.
    pub lru_pagevec: u64,
    /// PG_lru order-0 pages with a pin bias in their refcount: PINNED.
    pub pinned: u64,
    /// Tails whose head lies before the range: taken as compound tails.
    pub orphan_tails: u64,
    /// Poisoned struct pages inside online sections (should not happen).
    pub poisoned: u64,
    /// All-zero struct pages (holes, or vmemmap /proc/kcore does not map): left as modeled.
    pub zeroed: u64,
    /// struct pages whose node/zone bits were checked against the machine ([`LayoutCheck`])
    pub layout_checked: u64,
    /// the (NODES_SHIFT, ZONES_WIDTH) pairs those pages fit (all of the tried ones when none
    /// was checked)
    pub layout_fits: Vec<(u32, u32)>,
}

impl MemmapStats {
    /// Every counter by name, in declaration order.
    pub const FIELDS: [crate::cost::Field<MemmapStats>; 9] = [
        ("pages", |s| s.pages),
        ("skipped", |s| s.skipped),
        ("pcp_free", |s| s.pcp_free),
        ("lru_pagevec", |s| s.lru_pagevec),
        ("pinned", |s| s.pinned),
        ("orphan_tails", |s| s.orphan_tails),
        ("poisoned", |s| s.poisoned),
        ("zeroed", |s| s.zeroed),
        ("layout_checked", |s| s.layout_checked),
    ];
}

struct Page<'a>(&'a [u8]);

impl Page<'_> {
    fn word(&self, i: usize) -> u64 {
        u64::from_le_bytes(self.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
    }
    fn flags(&self) -> u64 {
        self.word(0)
    }
    fn page_type(&self) -> u32 {
        u32::from_le_bytes(self.0[48..52].try_into().expect("4 bytes"))
    }
    fn refcount(&self) -> i32 {
        i32::from_le_bytes(self.0[52..56].try_into().expect("4 bytes"))
    }
    /// The map count (`_mapcount` + 1; 0 when unmapped).
    fn mapcount(&self) -> i64 {
        i64::from(self.page_type() as i32) + 1
    }
    /// References beyond the mappings carry a pin bias (`GUP_PIN_COUNTING_BIAS`).
    fn pin_biased(&self) -> bool {
        i64::from(self.refcount()) - self.mapcount().max(0) >= GUP_PIN_COUNTING_BIAS
    }
    fn has_type(&self, t: u32) -> bool {
        self.page_type() & (PAGE_TYPE_BASE | t) == PAGE_TYPE_BASE
    }
}

/// The modeled kind of one compound head (`first_tail` is the struct page after it).
fn head_kind(m: &Machine, head: &Page<'_>, first_tail: Option<&Page<'_>>) -> (u8, u8) {
    let (dtor, order) = first_tail.map_or((0, 0), |t| (t.0[16], t.0[17]));
    if dtor == HUGETLB_PAGE_DTOR {
        let hs = m
            .hstates
            .iter()
            .position(|h| h.order == u32::from(order))
            .unwrap_or(0) as u8;
        let free = if head.refcount() == 0 {
            HUGETLB_FREE
        } else {
            0
        };
        return (
            make(kind::HUGETLB_HEAD, hs | free),
            make(kind::HUGETLB_TAIL, hs | free),
        );
    }
    if dtor == TRANSHUGE_PAGE_DTOR || head.flags() & PG_LRU != 0 {
        return (make(kind::THP_HEAD, order.min(15)), kind::THP_TAIL);
    }
    (kind::UNMOVABLE, kind::THP_TAIL)
}

/// The page-flags widths a config can give x86_64 SPARSEMEM_VMEMMAP (no section bits in
/// `flags`; include/linux/page-flags-layout.h, 5.4.59 and v6.1-rc7): the node id in the top
/// `NODES_SHIFT` bits (0 without NUMA; 6 in our 5.4.59 builds, 10 in Debian's 6.1), the zone
/// index right below it in `ZONES_WIDTH` bits (3 for 5 zones with ZONE_DEVICE, 2 for 4).
const NODES_SHIFTS: std::ops::RangeInclusive<u32> = 0..=10;
const ZONES_WIDTHS: [u32; 2] = [3, 2];

fn node_zone(f: u64, nodes_shift: u32, zones_width: u32) -> (u64, u64) {
    let node = if nodes_shift == 0 {
        0
    } else {
        f >> (64 - nodes_shift)
    };
    let zone = (f >> (64 - nodes_shift - zones_width)) & ((1 << zones_width) - 1);
    (node, zone)
}

/// What the struct pages' own node and zone bits say about the layout they were decoded
/// with: the (NODES_SHIFT, ZONES_WIDTH) pairs under which every initialised, unreserved
/// struct page of an online section names the node and zone the model has for its pfn
/// (ZONE_DMA 0 .. DEVICE 4, the 5.4/6.1 x86_64 order). Reserved pages are left out: a 5.x
/// hole's memmap is PG_reserved with node 0 / zone 0 wherever it lies (memmap_init_zone did
/// not reach it).
///
/// A single page's bits can fit a wrong width by chance (a lone zone bit reads as ZONE_DMA32
/// one or two places lower), so where the config is known (`nodes_shift`: the record's
/// CONFIG_NODES_SHIFT) only its widths are tried; without it the check says which fit.
struct LayoutCheck {
    cands: Vec<(u32, u32)>,
    misses: Vec<u64>,
    /// per candidate: (pfn, flags, model nid, model zone) of the first page that disagrees
    first: Vec<Option<(u64, u64, u16, u8)>>,
    /// struct pages whose node/zone bits were compared
    checked: u64,
}

impl LayoutCheck {
    fn new(nodes_shift: Option<u32>) -> Self {
        let cands: Vec<(u32, u32)> = NODES_SHIFTS
            .filter(|n| nodes_shift.is_none_or(|k| k == *n))
            .flat_map(|n| ZONES_WIDTHS.map(|z| (n, z)))
            .collect();
        LayoutCheck {
            misses: vec![0; cands.len()],
            first: vec![None; cands.len()],
            cands,
            checked: 0,
        }
    }

    fn observe(&mut self, pfn: u64, f: u64, nid: u16, zone: u8) {
        self.checked += 1;
        for (c, &(ns, zw)) in self.cands.iter().enumerate() {
            if node_zone(f, ns, zw) != (u64::from(nid), u64::from(zone)) {
                self.misses[c] += 1;
                self.first[c].get_or_insert((pfn, f, nid, zone));
            }
        }
    }

    /// The widths every page fits, or, where none does, the error naming the closest
    /// widths' first disagreeing page.
    fn finish(
        self,
        start: u64,
        n: u64,
        nodes_shift: Option<u32>,
    ) -> crate::Result<Vec<(u32, u32)>> {
        let fits: Vec<(u32, u32)> = (0..self.cands.len())
            .filter(|&c| self.misses[c] == 0)
            .map(|c| self.cands[c])
            .collect();
        if !fits.is_empty() || self.checked == 0 {
            return Ok(fits);
        }
        let c = (0..self.cands.len())
            .min_by_key(|&c| self.misses[c])
            .unwrap_or(0);
        let (pfn, f, nid, zone) = self.first[c].unwrap_or_default();
        let widths = nodes_shift.map_or_else(
            || "any NODES_SHIFT 0..10".to_string(),
            |k| format!("NODES_SHIFT {k}"),
        );
        Err(crate::Error::Argument(format!(
            "struct pages of pfns {start:#x}..{:#x}: {} of {} initialised pages name a node or \
             zone the machine does not have for them under {widths} / ZONES_WIDTH 2..3 (first: \
             pfn {pfn:#x}, flags {f:#018x}, where the machine has node {nid}, zone {}): not a \
             5.4/6.1 x86_64 struct page of this machine; refusing to decode it",
            start + n,
            self.misses[c],
            self.checked,
            crate::page::ZoneType::from_u8(zone).map_or("?", |z| z.name()),
        )))
    }
}

/// [`import`] after checking the input: whole struct pages, inside the machine, and a
/// `nodes_shift` an x86_64 config can have.
pub fn import_checked(
    m: &mut Machine,
    start: u64,
    raw: &[u8],
    vmemmap: u64,
    nodes_shift: Option<u32>,
) -> crate::Result<MemmapStats> {
    if nodes_shift.is_some_and(|k| !NODES_SHIFTS.contains(&k)) {
        return Err(crate::Error::Argument(format!(
            "nodes_shift {}: x86_64 configs give CONFIG_NODES_SHIFT 0..10",
            nodes_shift.unwrap_or(0)
        )));
    }
    if raw.len() % STRUCT_PAGE_SIZE != 0 {
        return Err(crate::Error::Argument(format!(
            "{} bytes of struct pages is not a whole number of {STRUCT_PAGE_SIZE}-byte struct pages",
            raw.len()
        )));
    }
    m.check_pfn_range(start, (raw.len() / STRUCT_PAGE_SIZE) as u64)?;
    import(m, start, raw, vmemmap, nodes_shift)
}

/// Decode `raw` (struct pages of `raw.len() / 64` pfns from `start`) into the machine's page
/// kinds; pfns of sections that are not online are left alone. `vmemmap`: the base the
/// struct pages' own pointers (compound_head) use: 0xffffea0000000000 on x86_64 with 4-level
/// paging and no KASLR, elsewhere the kernel's `vmemmap_base`.
///
/// The pages' node/zone bits are checked in the same walk ([`LayoutCheck`]); struct pages of
/// another layout or another machine are refused before any page is written, never decoded.
pub fn import(
    m: &mut Machine,
    start: u64,
    raw: &[u8],
    vmemmap: u64,
    nodes_shift: Option<u32>,
) -> crate::Result<MemmapStats> {
    let g = m.geometry;
    let n = raw.len() / STRUCT_PAGE_SIZE;
    let page = |i: usize| Page(&raw[i * STRUCT_PAGE_SIZE..(i + 1) * STRUCT_PAGE_SIZE]);
    let mut st = MemmapStats {
        pages: n as u64,
        ..MemmapStats::default()
    };
    let mut bytes: Vec<u8> = Vec::with_capacity(n);
    // (head index, tail kind) of the compound page being walked
    let mut compound: Option<(usize, u8)> = None;
    let mut buddy_left = 0u64;
    let mut layout = LayoutCheck::new(nodes_shift);
    for i in 0..n {
        let pfn = start + i as u64;
        let meta = m.store.section_meta(g.pfn_to_section(pfn));
        if !meta.online() || meta.device() {
            st.skipped += 1;
            bytes.push(m.store.page(pfn));
            continue;
        }
        let p = page(i);
        let f = p.flags();
        if p.0.iter().all(|&b| b == 0) {
            // a zeroed struct page (the memmap of a hole) or one /proc/kcore did not map:
            // nothing a live page looks like, so the model keeps its own
            st.zeroed += 1;
            bytes.push(m.store.page(pfn));
            continue;
        }
        if f != u64::MAX && f & PG_RESERVED == 0 {
            layout.observe(pfn, f, meta.nid, m.store.pageblock_zone(pfn) as u8);
        }
        if buddy_left > 0 {
            buddy_left -= 1;
            bytes.push(kind::FREE);
            continue;
        }
        if f == u64::MAX {
            st.poisoned += 1;
            bytes.push(kind::UNINIT);
            continue;
        }
        let ch = p.word(1);
        if ch & 1 == 1 {
            let head_vaddr = ch - 1;
            let head_pfn = head_vaddr.wrapping_sub(vmemmap) / STRUCT_PAGE_SIZE as u64;
            let k = match compound {
                Some((h, tk)) if start + h as u64 == head_pfn => tk,
                _ => {
                    st.orphan_tails += 1;
                    kind::THP_TAIL
                }
            };
            bytes.push(k);
            continue;
        }
        compound = None;
        if f & PG_RESERVED != 0 {
            bytes.push(kind::RESERVED);
            continue;
        }
        if f & PG_HEAD != 0 {
            let next = (i + 1 < n).then(|| page(i + 1));
            let (hk, tk) = head_kind(m, &p, next.as_ref());
            compound = Some((i, tk));
            bytes.push(hk);
            continue;
        }
        if p.has_type(PG_BUDDY) {
            let order = p.word(5).min(u64::from(g.max_order - 1));
            buddy_left = (1u64 << order) - 1;
            bytes.push(make(kind::BUDDY, order as u8));
            continue;
        }
        let k = if f & PG_HWPOISON != 0 {
            kind::HWPOISON
        } else if p.has_type(PG_OFFLINE) {
            kind::OFFLINE
        } else if p.refcount() == 0 {
            st.pcp_free += 1;
            kind::FREE
        } else if f & PG_LRU != 0 {
            if p.pin_biased() {
                st.pinned += 1;
                kind::PINNED
            } else {
                kind::LRU
            }
        } else if p.word(3) & 3 == 2 {
            kind::MOVABLE
        } else {
            // mapped (an anon mapping, or a file mapping with a map count) but not PG_lru
            // yet: an LRU page waiting in a per-CPU pagevec
            let mapping = p.word(3);
            let mapped = p.page_type() != u32::MAX;
            if mapping & 1 == 1 || (mapping != 0 && mapped) {
                st.lru_pagevec += 1;
                make(kind::UNMOVABLE, LRU_BATCH)
            } else {
                kind::UNMOVABLE
            }
        };
        bytes.push(k);
    }
    st.layout_checked = layout.checked;
    st.layout_fits = layout.finish(start, n as u64, nodes_shift)?;
    m.store.write_pages(start, &bytes);
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(flags: u64, w1: u64, mapping: u64, private: u64, ptype: u32, refc: i32) -> Vec<u8> {
        let mut v = vec![0u8; 64];
        v[0..8].copy_from_slice(&flags.to_le_bytes());
        v[8..16].copy_from_slice(&w1.to_le_bytes());
        v[24..32].copy_from_slice(&mapping.to_le_bytes());
        v[40..48].copy_from_slice(&private.to_le_bytes());
        v[48..52].copy_from_slice(&ptype.to_le_bytes());
        v[52..56].copy_from_slice(&refc.to_le_bytes());
        v
    }

    #[test]
    fn page_fields_decode() {
        let free_pcp = sp(0, 0xffff_ea00_0000_1008, 0, 0, u32::MAX, 0);
        let p = Page(&free_pcp);
        assert_eq!(p.refcount(), 0);
        assert!(!p.has_type(PG_BUDDY));
        let buddy = sp(0, 0, 0, 3, !PG_BUDDY, 0);
        assert!(Page(&buddy).has_type(PG_BUDDY));
        assert!(!Page(&buddy).has_type(PG_OFFLINE));
        // the poisoned pattern is no page type
        let poison = vec![0xffu8; 64];
        assert!(!Page(&poison).has_type(PG_BUDDY));
    }
}
