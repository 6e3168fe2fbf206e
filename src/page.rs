//! One byte per page: the page kind in the low 4 bits, a small field (buddy order, hugetlb
//! hstate index, THP order, hole marker) in the high 4 bits. design.md, "Compact page state".
//!
//! The kinds are numbered so that the pages `has_unmovable_pages()` (v5.5/v5.6) passes over one
//! at a time in a non-movable zone are 0..=6, and every page it passes over in ZONE_MOVABLE is
//! 0..=11: the scan's fast path tests a whole pageblock with one vectorisable max().

/// Page kinds (what the struct page says, as far as the modeled kernel functions read it).
pub mod kind {
    /// refcount 0, not PageBuddy: a tail of a free buddy block, a pcp-free page.
    pub const FREE: u8 = 0;
    /// PageLRU with a reference: a movable user page (anon or page cache).
    pub const LRU: u8 = 1;
    /// Non-LRU movable: `__PageMovable` (zsmalloc, balloon compaction pages).
    pub const MOVABLE: u8 = 2;
    /// An LRU page with a long-term pin: passes the scan, fails migration.
    pub const PINNED: u8 = 3;
    /// Head of a transparent huge page (PageLRU); field = compound order.
    pub const THP_HEAD: u8 = 4;
    /// Tail of a THP (refcount 0).
    pub const THP_TAIL: u8 = 5;
    /// PageHWPoison, not in the buddy, refcount > 0.
    pub const HWPOISON: u8 = 6;
    /// PageBuddy head of a free block; field = buddy order.
    pub const BUDDY: u8 = 7;
    /// An in-use kernel page that cannot move (slab, page table, ...).
    pub const UNMOVABLE: u8 = 8;
    /// PG_offline (balloon, virtio-mem), refcount > 0.
    pub const OFFLINE: u8 = 9;
    /// Head of a hugetlb page; field = hstate index (bits 0..2) | free-in-pool (bit 3).
    pub const HUGETLB_HEAD: u8 = 10;
    /// Tail of a hugetlb page; field as for the head.
    pub const HUGETLB_TAIL: u8 = 11;
    /// PG_reserved: memblock allocations, kernel image, ZONE_DEVICE pages.
    pub const RESERVED: u8 = 12;
    /// A zeroed struct page: flags 0, refcount 0, node 0, zone 0. Field 1 marks the memmap of
    /// an unavailable range (a hole inside a present section), which v5.5 zeroes
    /// (`zero_resv_unavail()`) and later kernels initialise as PG_reserved.
    pub const ZEROED: u8 = 13;
    /// A struct page that was never initialised: all-ones on DEBUG_VM kernels, garbage
    /// otherwise (the first pfns of a pmem namespace whose memmap lives on the device).
    pub const UNINIT: u8 = 14;
    /// No memmap at all (the section is not present): reading it faults.
    pub const NOMEMMAP: u8 = 15;

    pub const NAMES: [&str; 16] = [
        "FREE",
        "LRU",
        "MOVABLE",
        "PINNED",
        "THP_HEAD",
        "THP_TAIL",
        "HWPOISON",
        "BUDDY",
        "UNMOVABLE",
        "OFFLINE",
        "HUGETLB_HEAD",
        "HUGETLB_TAIL",
        "RESERVED",
        "ZEROED",
        "UNINIT",
        "NOMEMMAP",
    ];

    /// Largest kind `has_unmovable_pages()` passes over page by page outside ZONE_MOVABLE
    /// (with MEMORY_OFFLINE set, as every caller of the removable scan sets it).
    pub const LAST_PLAIN_SKIP: u8 = HWPOISON;
    /// Largest kind passed over in ZONE_MOVABLE (everything not PG_reserved and initialised).
    pub const LAST_MOVABLE_ZONE_SKIP: u8 = HUGETLB_TAIL;
}

/// Field value of an UNMOVABLE page that is an LRU page still in a per-CPU batch (mapped,
/// referenced, not PG_lru yet: the 5.4 pagevec, the 6.1 folio batches, mlock batches). Until
/// `lru_add_drain_all()` it fails `has_unmovable_pages()` (5.4/5.5: `!PageLRU` → found, and
/// isolation runs before the first drain); 6.1 `offline_pages()` drains first
/// (`lru_cache_disable()`), and every version's migration loop drains before it scans, so
/// there it is an LRU page. Seen on real 5.4.59 and 6.1 kernels (docs/groundtruth.md).
pub const LRU_BATCH: u8 = 1;

/// Field value of a ZEROED page that is the memmap of a hole (unavailable range).
pub const ZEROED_HOLE: u8 = 1;
/// Bit in the hugetlb field: the hugetlb page is free in the pool.
pub const HUGETLB_FREE: u8 = 8;
/// hstate indexes a hugetlb page byte can name (the field's low 3 bits). Pool counts keep a
/// slot for each, so a page naming an hstate the machine lacks (written by hand) is counted
/// the same way everywhere instead of being dropped by one path and not another.
pub const HSTATE_SLOTS: usize = 8;

#[inline]
pub const fn make(kind: u8, field: u8) -> u8 {
    (kind & 0x0f) | (field << 4)
}
#[inline]
pub const fn kind_of(b: u8) -> u8 {
    b & 0x0f
}
#[inline]
pub const fn field_of(b: u8) -> u8 {
    b >> 4
}

/// Zone types in the kernel's order (`enum zone_type`, CONFIG_ZONE_DMA and CONFIG_ZONE_DMA32
/// set as on x86_64). A zeroed struct page reads as zone index 0, ZONE_DMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ZoneType {
    Dma = 0,
    Dma32 = 1,
    Normal = 2,
    Movable = 3,
    Device = 4,
}

impl ZoneType {
    pub const ALL: [ZoneType; 5] = [
        ZoneType::Dma,
        ZoneType::Dma32,
        ZoneType::Normal,
        ZoneType::Movable,
        ZoneType::Device,
    ];
    pub fn from_u8(v: u8) -> Option<ZoneType> {
        Self::ALL.get(v as usize).copied()
    }
    /// The name /proc/zoneinfo and valid_zones print.
    pub fn name(self) -> &'static str {
        match self {
            ZoneType::Dma => "DMA",
            ZoneType::Dma32 => "DMA32",
            ZoneType::Normal => "Normal",
            ZoneType::Movable => "Movable",
            ZoneType::Device => "Device",
        }
    }
    pub fn parse(s: &str) -> Option<ZoneType> {
        Self::ALL
            .iter()
            .copied()
            .find(|z| z.name().eq_ignore_ascii_case(s))
    }
    /// A layout's zone name; ZONE_DEVICE is not one a layout declares (it comes from
    /// device ranges).
    pub fn parse_layout(s: &str) -> crate::Result<ZoneType> {
        Self::parse(s).ok_or_else(|| {
            crate::Error::Layout(format!(
                "unknown zone {s:?} (known: DMA, DMA32, Normal, Movable)"
            ))
        })
    }
}

/// Pageblock migratetypes (v5.5 `enum migratetype`, CONFIG_CMA and CONFIG_MEMORY_ISOLATION).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MigrateType {
    Unmovable = 0,
    Movable = 1,
    Reclaimable = 2,
    HighAtomic = 3,
    Cma = 4,
    Isolate = 5,
}

impl MigrateType {
    pub const ALL: [MigrateType; 6] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
        MigrateType::Cma,
        MigrateType::Isolate,
    ];
    pub fn from_u8(v: u8) -> Option<MigrateType> {
        Self::ALL.get(v as usize).copied()
    }
    pub fn name(self) -> &'static str {
        match self {
            MigrateType::Unmovable => "Unmovable",
            MigrateType::Movable => "Movable",
            MigrateType::Reclaimable => "Reclaimable",
            MigrateType::HighAtomic => "HighAtomic",
            MigrateType::Cma => "CMA",
            MigrateType::Isolate => "Isolate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn pack_roundtrip() {
        for k in 0..16u8 {
            for f in 0..16u8 {
                let b = make(k, f);
                assert_eq!(kind_of(b), k);
                assert_eq!(field_of(b), f);
            }
        }
    }
    #[test]
    fn fast_path_ordering() {
        // The fast path depends on this order; a renumbering must update it.
        const {
            assert!(kind::LAST_PLAIN_SKIP < kind::BUDDY);
            assert!(kind::LAST_MOVABLE_ZONE_SKIP < kind::RESERVED);
            assert!(kind::HUGETLB_TAIL <= kind::LAST_MOVABLE_ZONE_SKIP);
        }
    }
}
