//! The section store: per-section metadata, page bytes kept uniform (one byte for the whole
//! section), as a free-buddy pattern, or dense (one byte per page), and per-pageblock
//! migratetype and zone.
//!
//! Dense bytes live in chunks of one memory block each, so a block's pages are one contiguous
//! slice that numpy can view without a copy.
//!
//! Copies share chunks (copy-on-write): `try_clone` hands the copy the same chunks, and the
//! first write to a shared chunk, on either side, gives the writer its own. A chunk with a
//! live numpy view (a pin, `pin_table`) is never shared: a copy takes its own copy of it at
//! once, and pinning a shared chunk unshares it first. So a pinned chunk has one owner, is
//! written in place, and is never freed or moved while its store lives: views see the
//! model's bytes and stay valid.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::page::{kind, make, MigrateType, ZoneType};

/// Section flags (`SECTION_MARKED_PRESENT`, `SECTION_IS_ONLINE`, `SECTION_IS_EARLY`, and
/// memory that was hot-added for ZONE_DEVICE by `devm_memremap_pages`).
pub const SEC_PRESENT: u8 = 1;
pub const SEC_ONLINE: u8 = 2;
pub const SEC_EARLY: u8 = 4;
pub const SEC_DEVICE: u8 = 8;
/// The section flags by name (the vocabulary Python reads).
pub const SECTION_FLAGS: [(&str, u8); 4] = [
    ("PRESENT", SEC_PRESENT),
    ("ONLINE", SEC_ONLINE),
    ("EARLY", SEC_EARLY),
    ("DEVICE", SEC_DEVICE),
];

/// The dense blocks' page bytes while they are out of the store: each block's bytes can be
/// written, none can be added, dropped or moved (the numpy views rely on that).
pub struct DenseChunks(Vec<Option<Chunk>>);

impl DenseChunks {
    /// `(block, its page bytes)` of every dense block, in block order, in parallel.
    pub fn par_blocks_mut(
        &mut self,
    ) -> impl rayon::iter::ParallelIterator<Item = (u64, &mut [u8])> {
        use rayon::prelude::*;
        self.0
            .par_iter_mut()
            .enumerate()
            .filter_map(|(b, c)| c.as_mut().map(|c| (b as u64, unshare(c))))
    }
}

/// A dense block's page bytes, shared by copies until one of them writes it (a box inside
/// the Arc, so a chunk allocated as bytes is shared without copying them into an Arc).
pub type Chunk = Arc<Box<[u8]>>;

/// Per memory block, how many live views (numpy arrays) pin its chunk.
pub type PinTable = Arc<[AtomicU32]>;

/// The chunk's bytes for writing: in place where this store is its only owner, else (a copy
/// shares it) a private copy first. A pinned chunk is never shared, so it is never replaced
/// here. The copy aborts only where a whole block's bytes cannot be allocated, as `densify`.
fn unshare(c: &mut Chunk) -> &mut [u8] {
    if Arc::get_mut(c).is_none() {
        *c = Arc::new(Box::from(&c[..]));
    }
    Arc::get_mut(c).expect("a chunk just copied has one owner")
}

/// Per-section metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SectionMeta {
    pub flags: u8,
    pub nid: u16,
}

impl SectionMeta {
    pub fn present(self) -> bool {
        self.flags & SEC_PRESENT != 0
    }
    pub fn online(self) -> bool {
        self.flags & SEC_ONLINE != 0
    }
    pub fn early(self) -> bool {
        self.flags & SEC_EARLY != 0
    }
    pub fn device(self) -> bool {
        self.flags & SEC_DEVICE != 0
    }
}

/// How a section's page bytes are held when its block has no dense chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compact {
    /// Every page has this byte.
    Uniform(u8),
    /// Free memory as the buddy allocator holds it after boot: a `BUDDY(order)` head every
    /// `1 << order` pages, `FREE` tails.
    FreeBlocks(u8),
}

impl Compact {
    #[inline]
    fn get(self, offset_in_section: u64) -> u8 {
        match self {
            Compact::Uniform(b) => b,
            Compact::FreeBlocks(order) => {
                if offset_in_section & ((1u64 << order) - 1) == 0 {
                    make(kind::BUDDY, order)
                } else {
                    kind::FREE
                }
            }
        }
    }
}

/// `vec![value; n]` that returns None instead of aborting when the allocation fails.
fn try_vec<T: Clone>(value: T, n: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, value);
    Some(v)
}

/// `n` zero bytes, or None where they cannot be allocated. Zeroed by the allocator
/// (`calloc`), so memory fresh from the kernel is not written here: pages are first touched
/// by whoever writes them (populate writes each page byte once).
fn try_zeroed(n: usize) -> Option<Box<[u8]>> {
    if n == 0 {
        return Some(Box::default());
    }
    let layout = std::alloc::Layout::array::<u8>(n).ok()?;
    // SAFETY: the layout has a non-zero size. A non-null result is valid for `n` bytes, all
    // zero (each a valid u8), allocated by the global allocator with the layout of `[u8; n]`,
    // which is the layout `Box<[u8]>` of length `n` frees with.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout);
        if p.is_null() {
            return None;
        }
        Some(Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)))
    }
}

/// A pin table of `n` zeros, or None where it cannot be allocated.
fn new_pins(n: usize) -> Option<PinTable> {
    let mut v: Vec<AtomicU32> = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.extend((0..n).map(|_| AtomicU32::new(0)));
    Some(PinTable::from(v))
}

/// Total RAM plus swap of the machine memscan runs on (sysinfo(2)).
fn memory_and_swap() -> u64 {
    let info = rustix::system::sysinfo();
    let unit = u64::from(info.mem_unit.max(1));
    (info.totalram as u64)
        .saturating_add(info.totalswap as u64)
        .saturating_mul(unit)
}

/// A read-only view of one pageblock (or any run inside one section).
#[derive(Debug, Clone, Copy)]
pub enum RunView<'a> {
    Dense(&'a [u8]),
    Compact { how: Compact, base: u64, len: usize },
}

impl RunView<'_> {
    #[inline]
    pub fn get(&self, i: usize) -> u8 {
        match self {
            RunView::Dense(s) => s[i],
            RunView::Compact { how, base, .. } => how.get(base + i as u64),
        }
    }
    pub fn len(&self) -> usize {
        match self {
            RunView::Dense(s) => s.len(),
            RunView::Compact { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Page bytes and pageblock bits for every pfn below `max_pfn`. Copied with `try_clone`.
#[derive(Debug)]
pub struct PageStore {
    pub geometry: Geometry,
    pub max_pfn: u64,
    pub meta: Vec<SectionMeta>,
    compact: Vec<Compact>,
    chunks: Vec<Option<Chunk>>,
    /// Live views per block (see the module notes); a copy starts with none.
    pins: PinTable,
    /// Per pageblock: migratetype in the low nibble, zone type in the high nibble.
    pageblocks: Vec<u8>,
    /// Bumped by every call that may change page bytes or pageblock bits: state derived
    /// from the store (the offline model's target cursors) is valid while it is unchanged.
    generation: u64,
}

impl PageStore {
    /// Bytes of the per-section, per-block and per-pageblock tables of a store covering
    /// `[0, max_pfn)` (rounded up to a whole block): what `new` allocates.
    pub fn table_bytes(geometry: &Geometry, max_pfn: u64) -> u128 {
        let ppb = u128::from(geometry.pages_per_block());
        let max_pfn = u128::from(max_pfn).div_ceil(ppb).max(1) * ppb;
        let per_section =
            (std::mem::size_of::<SectionMeta>() + std::mem::size_of::<Compact>()) as u128;
        max_pfn / u128::from(geometry.pages_per_section()) * per_section
            + max_pfn / ppb
                * (std::mem::size_of::<Option<Chunk>>() + std::mem::size_of::<AtomicU32>()) as u128
            + max_pfn / u128::from(geometry.pageblock_nr_pages())
    }

    /// An empty store (every section absent, no memmap) covering `[0, max_pfn)`; `max_pfn`
    /// is rounded up to a whole memory block. The tables are allocated fallibly: a failure
    /// is `Error::Memory` naming the size, never an abort.
    pub fn new(geometry: Geometry, max_pfn: u64) -> Result<PageStore> {
        let ppb = geometry.pages_per_block();
        let max_pfn = max_pfn.div_ceil(ppb).max(1) * ppb;
        let nr_sections = (max_pfn / geometry.pages_per_section()) as usize;
        let nr_blocks = (max_pfn / ppb) as usize;
        let nr_pageblocks = (max_pfn / geometry.pageblock_nr_pages()) as usize;
        let what = || {
            format!(
                "{} bytes of section and pageblock tables for pfns up to {max_pfn:#x}",
                Self::table_bytes(&geometry, max_pfn)
            )
        };
        let meta =
            try_vec(SectionMeta::default(), nr_sections).ok_or_else(|| Error::Memory(what()))?;
        let compact = try_vec(Compact::Uniform(kind::NOMEMMAP), nr_sections)
            .ok_or_else(|| Error::Memory(what()))?;
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(nr_blocks)
            .map_err(|_| Error::Memory(what()))?;
        chunks.extend((0..nr_blocks).map(|_| None));
        let pins = new_pins(nr_blocks).ok_or_else(|| Error::Memory(what()))?;
        let pageblocks = try_vec(
            (MigrateType::Movable as u8) | ((ZoneType::Normal as u8) << 4),
            nr_pageblocks,
        )
        .ok_or_else(|| Error::Memory(what()))?;
        Ok(PageStore {
            geometry,
            max_pfn,
            meta,
            compact,
            chunks,
            pins,
            pageblocks,
            generation: 0,
        })
    }

    /// A copy that shares this store's chunks (copy-on-write; a pinned chunk is copied at
    /// once). Its allocations are fallible: `Error::Memory` (naming the size) where it does
    /// not fit, never an abort. Bytes are copied later, a block at a time, by the first write
    /// to a shared chunk on either side.
    pub fn try_clone(&self) -> Result<PageStore> {
        let oom = || {
            Error::Memory(format!(
                "copying the model needs up to {} bytes",
                self.memory_bytes()
            ))
        };
        let copy = |v: &[u8]| -> Result<Vec<u8>> {
            let mut c = Vec::new();
            c.try_reserve_exact(v.len()).map_err(|_| oom())?;
            c.extend_from_slice(v);
            Ok(c)
        };
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(self.chunks.len())
            .map_err(|_| oom())?;
        for (b, c) in self.chunks.iter().enumerate() {
            chunks.push(match c {
                Some(c) if self.pins[b].load(Ordering::Acquire) > 0 => {
                    Some(Arc::new(copy(c)?.into_boxed_slice()))
                }
                Some(c) => Some(Arc::clone(c)),
                None => None,
            });
        }
        let mut meta = Vec::new();
        meta.try_reserve_exact(self.meta.len()).map_err(|_| oom())?;
        meta.extend_from_slice(&self.meta);
        let mut compact = Vec::new();
        compact
            .try_reserve_exact(self.compact.len())
            .map_err(|_| oom())?;
        compact.extend_from_slice(&self.compact);
        Ok(PageStore {
            geometry: self.geometry,
            max_pfn: self.max_pfn,
            meta,
            compact,
            chunks,
            pins: new_pins(self.chunks.len()).ok_or_else(oom)?,
            pageblocks: copy(&self.pageblocks)?,
            generation: self.generation,
        })
    }

    /// The live-view counts of this store's blocks: a binding that hands out a view of a
    /// block's bytes calls [`PageStore::pin`] and holds this table to unpin when the view dies.
    pub fn pin_table(&self) -> PinTable {
        Arc::clone(&self.pins)
    }

    /// Pin a block's chunk for a live view (made dense, and unshared if a copy shares it):
    /// its bytes, whose address stays valid while the store lives and the pin is held
    /// (release it with `pin_table()[block].fetch_sub(1)`).
    pub fn pin(&mut self, block: u64) -> &[u8] {
        self.densify(block);
        let b = block as usize;
        let c = self.chunks[b].as_mut().expect("densified");
        unshare(c);
        self.pins[b].fetch_add(1, Ordering::AcqRel);
        self.chunks[b].as_deref().expect("densified")
    }

    /// Bytes of dense chunks this store shares with copies (counted in each store's
    /// `memory_bytes`, held once).
    pub fn shared_bytes(&self) -> u64 {
        self.chunks
            .iter()
            .flatten()
            .filter(|c| Arc::strong_count(c) > 1)
            .map(|c| c.len() as u64)
            .sum()
    }

    /// See the field: changes whenever the pages or pageblock bits may have changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn nr_sections(&self) -> u64 {
        self.meta.len() as u64
    }
    pub fn nr_blocks(&self) -> u64 {
        self.chunks.len() as u64
    }

    #[inline]
    pub fn section_meta(&self, nr: u64) -> SectionMeta {
        self.meta.get(nr as usize).copied().unwrap_or_default()
    }

    /// `present_section_nr()`: the mem_section exists and is marked present.
    #[inline]
    pub fn present_section_nr(&self, nr: u64) -> bool {
        self.section_meta(nr).present()
    }

    /// The page byte of `pfn` (NOMEMMAP beyond the machine).
    #[inline]
    pub fn page(&self, pfn: u64) -> u8 {
        if pfn >= self.max_pfn {
            return kind::NOMEMMAP;
        }
        let g = &self.geometry;
        let block = (pfn / g.pages_per_block()) as usize;
        if let Some(chunk) = &self.chunks[block] {
            return chunk[(pfn % g.pages_per_block()) as usize];
        }
        let sec = g.pfn_to_section(pfn);
        self.compact[sec as usize].get(pfn & (g.pages_per_section() - 1))
    }

    /// A view of `len` pages from `pfn`; the run must stay inside one section.
    #[inline]
    pub fn run(&self, pfn: u64, len: usize) -> RunView<'_> {
        let g = &self.geometry;
        debug_assert!(g.pfn_to_section(pfn) == g.pfn_to_section(pfn + len as u64 - 1));
        let block = (pfn / g.pages_per_block()) as usize;
        if let Some(chunk) = &self.chunks[block] {
            let off = (pfn % g.pages_per_block()) as usize;
            return RunView::Dense(&chunk[off..off + len]);
        }
        let sec = g.pfn_to_section(pfn);
        RunView::Compact {
            how: self.compact[sec as usize],
            base: pfn & (g.pages_per_section() - 1),
            len,
        }
    }

    /// Whether the block's pages are held dense.
    pub fn is_dense(&self, block: u64) -> bool {
        self.chunks
            .get(block as usize)
            .is_some_and(std::option::Option::is_some)
    }

    /// Make a block's pages dense (one contiguous chunk), keeping their values.
    pub fn densify(&mut self, block: u64) {
        let b = block as usize;
        if self.chunks[b].is_some() {
            return;
        }
        let g = self.geometry;
        let pps = g.pages_per_section() as usize;
        let mut chunk = vec![0u8; g.pages_per_block() as usize].into_boxed_slice();
        let first_sec = (block * g.sections_per_block()) as usize;
        for (i, part) in chunk.chunks_mut(pps).enumerate() {
            fill_compact(part, self.compact[first_sec + i]);
        }
        self.chunks[b] = Some(Arc::new(chunk));
    }

    /// Make many blocks dense at once, in parallel (`blocks` sorted). The bytes needed are
    /// known beforehand: more than the machine's RAM and swap is refused before allocating,
    /// and each chunk is allocated fallibly (a memory limit gives `Error::Memory`, never an
    /// abort; blocks made dense before the failure stay dense).
    pub fn densify_many(&mut self, blocks: &[u64]) -> Result<()> {
        self.densify_many_leaving(blocks, &|_| false)
    }

    /// `densify_many`, leaving the sections `leave` names zero instead of filling them from
    /// their compact form: for a caller that writes every byte of them next (populate), so
    /// each byte is written once. Their contents are the caller's to restore
    /// (`fill_compact` of the form they had).
    pub fn densify_many_leaving(
        &mut self,
        blocks: &[u64],
        leave: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<()> {
        use rayon::prelude::*;
        let g = self.geometry;
        let pps = g.pages_per_section() as usize;
        let spb = g.sections_per_block() as usize;
        let new = blocks.iter().filter(|&&b| !self.is_dense(b)).count() as u64;
        let need = u128::from(new) * u128::from(g.pages_per_block());
        let avail = memory_and_swap();
        if need > u128::from(avail) {
            return Err(Error::Memory(format!(
                "{new} memory blocks of dense page bytes need {need} bytes, more than this \
                 machine's RAM and swap ({avail} bytes); use fewer dense blocks (a sparse \
                 workload) or a larger machine"
            )));
        }
        let compact = &self.compact;
        self.chunks
            .par_iter_mut()
            .enumerate()
            .filter(|(b, c)| c.is_none() && blocks.binary_search(&(*b as u64)).is_ok())
            .try_for_each(|(b, c)| {
                let mut chunk = try_zeroed(g.pages_per_block() as usize).ok_or_else(|| {
                    Error::Memory(format!(
                        "allocating {} bytes of page bytes for memory block {b} failed ({need} bytes for {new} blocks in all)",
                        g.pages_per_block()
                    ))
                })?;
                for (i, part) in chunk.chunks_mut(pps).enumerate() {
                    let s = b * spb + i;
                    // zero bytes need no writing: the allocation is zeroed
                    if !leave(s as u64) && compact[s] != Compact::Uniform(0) {
                        fill_compact(part, compact[s]);
                    }
                }
                *c = Some(Arc::new(chunk));
                Ok(())
            })
    }

    /// The block's page bytes as one slice (made dense first).
    pub fn block_pages(&mut self, block: u64) -> &[u8] {
        self.densify(block);
        self.chunks[block as usize].as_deref().unwrap()
    }

    /// Mutable access to the block's dense bytes (made dense first).
    pub fn block_pages_mut(&mut self, block: u64) -> &mut [u8] {
        self.generation += 1;
        self.densify(block);
        unshare(self.chunks[block as usize].as_mut().unwrap())
    }

    /// Set `count` pages from `pfn` to `value`; whole sections of a block without a chunk stay
    /// compact.
    pub fn set_pages(&mut self, pfn: u64, count: u64, value: u8) {
        self.generation += 1;
        let g = self.geometry;
        let pps = g.pages_per_section();
        let end = (pfn + count).min(self.max_pfn);
        let mut p = pfn;
        while p < end {
            let sec = g.pfn_to_section(p);
            let sec_end = ((sec + 1) * pps).min(end);
            let block = g.pfn_to_block(p);
            if p % pps == 0 && sec_end - p == pps && !self.is_dense(block) {
                self.compact[sec as usize] = Compact::Uniform(value);
            } else {
                let base = g.block_to_pfn(block);
                let bytes = self.block_pages_mut(block);
                bytes[(p - base) as usize..(sec_end - base) as usize].fill(value);
            }
            p = sec_end;
        }
    }

    /// Write page bytes from `pfn` (one copy per section touched).
    pub fn write_pages(&mut self, pfn: u64, values: &[u8]) {
        self.generation += 1;
        let g = self.geometry;
        let mut done = 0usize;
        while done < values.len() {
            let p = pfn + done as u64;
            let block = g.pfn_to_block(p);
            let base = g.block_to_pfn(block);
            let n = (values.len() - done).min((base + g.pages_per_block() - p) as usize);
            let bytes = self.block_pages_mut(block);
            let off = (p - base) as usize;
            bytes[off..off + n].copy_from_slice(&values[done..done + n]);
            done += n;
        }
    }

    /// Copy page bytes from `pfn` into `out` (one run per section).
    pub fn read_pages(&self, pfn: u64, out: &mut [u8]) {
        let pps = self.geometry.pages_per_section();
        let mut done = 0usize;
        while done < out.len() {
            let p = pfn + done as u64;
            let n = (out.len() - done).min((pps - p % pps) as usize);
            match self.run(p, n) {
                RunView::Dense(s) => out[done..done + n].copy_from_slice(s),
                v @ RunView::Compact { .. } => {
                    for (i, o) in out[done..done + n].iter_mut().enumerate() {
                        *o = v.get(i);
                    }
                }
            }
            done += n;
        }
    }

    /// Set a whole section's compact form (dense blocks get the bytes written instead).
    pub fn set_section_compact(&mut self, sec: u64, how: Compact) {
        self.generation += 1;
        let g = self.geometry;
        let block = sec / g.sections_per_block();
        if self.is_dense(block) {
            let pps = g.pages_per_section() as usize;
            let off = ((sec % g.sections_per_block()) as usize) * pps;
            let bytes = self.block_pages_mut(block);
            fill_compact(&mut bytes[off..off + pps], how);
        } else {
            self.compact[sec as usize] = how;
        }
    }

    /// The compact form of a section, `None` when its block is dense.
    pub fn section_compact(&self, sec: u64) -> Option<Compact> {
        let block = sec / self.geometry.sections_per_block();
        if self.is_dense(block) {
            None
        } else {
            Some(self.compact[sec as usize])
        }
    }

    /// Take the dense chunks out, to write them in parallel while the rest of the machine is
    /// read (population); give them back with [`PageStore::restore_chunks`]. Until then the
    /// store has no page bytes for its dense blocks.
    pub fn take_chunks(&mut self) -> DenseChunks {
        self.generation += 1;
        DenseChunks(std::mem::take(&mut self.chunks))
    }

    /// Put back what [`PageStore::take_chunks`] took.
    pub fn restore_chunks(&mut self, chunks: DenseChunks) {
        self.chunks = chunks.0;
    }

    #[inline]
    pub fn pageblock_bits(&self, pfn: u64) -> u8 {
        self.pageblocks[(pfn >> self.geometry.pageblock_order) as usize]
    }
    /// `get_pageblock_migratetype()`.
    #[inline]
    pub fn migratetype(&self, pfn: u64) -> MigrateType {
        MigrateType::from_u8(self.pageblock_bits(pfn) & 0x0f).unwrap_or(MigrateType::Movable)
    }
    /// The zone the memmap init linked this pageblock's pages to.
    #[inline]
    pub fn pageblock_zone(&self, pfn: u64) -> ZoneType {
        ZoneType::from_u8(self.pageblock_bits(pfn) >> 4).unwrap_or(ZoneType::Normal)
    }
    pub fn set_migratetype(&mut self, pfn: u64, mt: MigrateType) {
        self.generation += 1;
        let i = (pfn >> self.geometry.pageblock_order) as usize;
        self.pageblocks[i] = (self.pageblocks[i] & 0xf0) | mt as u8;
    }
    pub fn set_pageblock_zone(&mut self, pfn: u64, zone: ZoneType) {
        self.generation += 1;
        let i = (pfn >> self.geometry.pageblock_order) as usize;
        self.pageblocks[i] = (self.pageblocks[i] & 0x0f) | ((zone as u8) << 4);
    }
    pub fn pageblock_bytes(&self) -> &[u8] {
        &self.pageblocks
    }

    /// Bytes this store holds (metadata, compact forms, chunks, pageblock bits).
    pub fn memory_bytes(&self) -> u64 {
        let chunks: u64 = self
            .chunks
            .iter()
            .map(|c| c.as_ref().map_or(0, |c| c.len() as u64))
            .sum();
        (self.meta.len() * std::mem::size_of::<SectionMeta>()
            + self.compact.len() * std::mem::size_of::<Compact>()
            + self.chunks.len()
                * (std::mem::size_of::<Option<Chunk>>() + std::mem::size_of::<AtomicU32>())
            + self.pageblocks.len()) as u64
            + chunks
    }

    pub fn dense_blocks(&self) -> u64 {
        self.chunks.iter().filter(|c| c.is_some()).count() as u64
    }
}

/// Write a compact form's bytes into a whole section's worth of dense bytes.
pub fn fill_compact(part: &mut [u8], how: Compact) {
    match how {
        Compact::Uniform(b) => part.fill(b),
        Compact::FreeBlocks(order) => {
            part.fill(kind::FREE);
            let step = 1usize << order;
            for i in (0..part.len()).step_by(step) {
                part[i] = make(kind::BUDDY, order);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Arch, GeometryOverrides};

    fn store() -> PageStore {
        let g = Geometry::for_arch(
            Arch::X86_64,
            GeometryOverrides {
                block_size: Some(256 << 20),
                ..Default::default()
            },
            0,
        )
        .unwrap();
        PageStore::new(g, 4 * 32768).unwrap()
    }

    #[test]
    fn copies_share_chunks_until_either_side_writes() {
        let mut a = store();
        a.set_pages(0, 2 * 32768, kind::LRU);
        a.set_pages(10, 1, kind::UNMOVABLE); // block 0 dense
        let mut b = a.try_clone().unwrap();
        let block = 2 * 32768;
        assert_eq!(a.shared_bytes(), block);
        assert_eq!(b.shared_bytes(), block);
        b.set_pages(11, 1, kind::PINNED); // the copy writes: it takes its own chunk
        assert_eq!((a.page(11), b.page(11)), (kind::LRU, kind::PINNED));
        assert_eq!((a.shared_bytes(), b.shared_bytes()), (0, 0));
        let c = a.try_clone().unwrap();
        a.set_pages(12, 1, kind::HWPOISON); // the original writes after a second copy
        assert_eq!(
            (a.page(12), b.page(12), c.page(12)),
            (kind::HWPOISON, kind::LRU, kind::LRU)
        );
        assert_eq!(c.page(10), kind::UNMOVABLE);
    }

    #[test]
    fn a_pinned_chunk_is_never_shared_and_stays_put() {
        let mut a = store();
        a.set_pages(10, 1, kind::UNMOVABLE);
        let at = a.pin(0).as_ptr();
        let b = a.try_clone().unwrap();
        assert_eq!(
            a.shared_bytes(),
            0,
            "a pinned chunk is copied for the copy at once"
        );
        a.set_pages(11, 1, kind::PINNED); // written in place: the view sees it
        assert_eq!(a.block_pages(0).as_ptr(), at);
        assert_eq!((a.page(11), b.page(11)), (kind::PINNED, b.page(11)));
        assert_ne!(b.page(11), kind::PINNED);
        // pinning a chunk that a copy shares unshares it first
        a.pin_table()[0].fetch_sub(1, Ordering::AcqRel);
        let mut c = a.try_clone().unwrap();
        assert_eq!(c.shared_bytes(), 2 * 32768);
        let cv = c.pin(0).as_ptr();
        assert_ne!(cv, at);
        assert_eq!((a.shared_bytes(), c.shared_bytes()), (0, 0));
        a.set_pages(12, 1, kind::HWPOISON);
        assert_eq!(c.page(12), b.page(12));
    }

    #[test]
    fn uniform_then_dense_keeps_values() {
        let mut s = store();
        s.set_pages(0, 32768, kind::LRU);
        assert!(!s.is_dense(0));
        assert_eq!(s.page(5), kind::LRU);
        s.set_pages(10, 1, kind::UNMOVABLE);
        assert!(s.is_dense(0));
        assert_eq!(s.page(9), kind::LRU);
        assert_eq!(s.page(10), kind::UNMOVABLE);
        assert_eq!(s.page(32768), kind::NOMEMMAP);
    }

    #[test]
    fn write_and_read_across_sections_and_blocks() {
        let mut s = store();
        s.set_section_compact(2, Compact::FreeBlocks(10));
        // Compact reads: section 2's free pattern (a head, two tails), then section 3 (absent).
        let mut tail = vec![0u8; 4];
        s.read_pages(3 * 32768 - 1024, &mut tail[..1]);
        s.read_pages(3 * 32768 - 2, &mut tail[1..]);
        assert_eq!(
            tail,
            [
                make(kind::BUDDY, 10),
                kind::FREE,
                kind::FREE,
                kind::NOMEMMAP
            ]
        );
        // Dense writes crossing a section and a block boundary (256 MiB blocks).
        let vals: Vec<u8> = (0..40_000u32).map(|i| (i % 13) as u8).collect();
        let start = 32768 - 100;
        s.write_pages(start, &vals);
        let mut back = vec![0u8; vals.len()];
        s.read_pages(start, &mut back);
        assert_eq!(back, vals);
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(s.page(start + i as u64), v);
        }
        assert_eq!(s.page(3 * 32768 - 1024), make(kind::BUDDY, 10));
    }

    #[test]
    fn free_blocks_pattern() {
        let mut s = store();
        s.set_section_compact(1, Compact::FreeBlocks(10));
        assert_eq!(s.page(32768), make(kind::BUDDY, 10));
        assert_eq!(s.page(32769), kind::FREE);
        assert_eq!(s.page(32768 + 1024), make(kind::BUDDY, 10));
        s.densify(0);
        assert_eq!(s.page(32768 + 2048), make(kind::BUDDY, 10));
        assert_eq!(s.page(32768 + 2047), kind::FREE);
    }
}
