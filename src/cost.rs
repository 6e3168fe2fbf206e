//! What the modeled kernel touches. These are counts of the kernel's work (struct pages it
//! would read, pageblocks it would visit), not memscan's own run time.

use std::ops::AddAssign;

/// Counters of one scan (one block, or summed over many).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCost {
    /// Struct pages read: one per struct page a kernel function looks at, per function call
    /// (`page_zone` of a section's first page; per pageblock visited one read for
    /// `page_to_nid`/`page_zone`, one per page `has_unmovable_pages` examines, one for
    /// `next_active_pageblock`).
    pub struct_pages_read: u64,
    /// Calls of `is_pageblock_removable_nolock()`.
    pub pageblocks_visited: u64,
    /// Calls of `is_mem_section_removable()`.
    pub sections_scanned: u64,
    /// Blocks whose `removable` read ran the scan.
    pub blocks_scanned: u64,
}

impl AddAssign for ScanCost {
    fn add_assign(&mut self, o: ScanCost) {
        self.struct_pages_read += o.struct_pages_read;
        self.pageblocks_visited += o.pageblocks_visited;
        self.sections_scanned += o.sections_scanned;
        self.blocks_scanned += o.blocks_scanned;
    }
}

/// `sizeof(struct page)` on 64-bit kernels.
pub const STRUCT_PAGE_BYTES: u64 = 64;

/// One counter of a struct, by name: the binding builds both single results and numpy
/// columns from these tables, and Python reads the names from them.
pub type Field<T> = (&'static str, fn(&T) -> u64);

impl ScanCost {
    /// The per-block counters of a scan (`blocks_scanned` is a sum's, not a block's).
    pub const FIELDS: [Field<ScanCost>; 3] = [
        ("struct_pages_read", |c| c.struct_pages_read),
        ("pageblocks_visited", |c| c.pageblocks_visited),
        ("sections_scanned", |c| c.sections_scanned),
    ];
    /// Bytes of memmap the reads touch (64 bytes per struct page read).
    pub fn memmap_bytes(&self) -> u64 {
        self.struct_pages_read * STRUCT_PAGE_BYTES
    }
}
