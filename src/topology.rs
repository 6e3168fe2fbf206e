//! Nodes, zones, memory blocks, hugetlb page sizes, and the builder that turns a layout
//! description (RAM ranges, reserved ranges inside RAM, ZONE_DEVICE ranges, zone spans)
//! into a `Machine`.

use crate::error::{Error, Result};
use crate::geometry::{Arch, Geometry};
use crate::page::{kind, make, MigrateType, ZoneType, ZEROED_HOLE};
use crate::sections::{Compact, PageStore, SEC_DEVICE, SEC_EARLY, SEC_ONLINE, SEC_PRESENT};

/// A zone's span: `zone_start_pfn` .. `zone_end_pfn()` (= start + spanned_pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneSpan {
    pub start_pfn: u64,
    pub end_pfn: u64,
}

impl ZoneSpan {
    /// `zone_spans_pfn()`.
    pub fn spans(self, pfn: u64) -> bool {
        self.start_pfn <= pfn && pfn < self.end_pfn
    }
}

/// One NUMA node (`pg_data_t`).
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub online: bool,
    pub zones: [Option<ZoneSpan>; 5],
}

/// `mem->state` of a memory block, plus `Absent` for block ids without a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockState {
    Absent = 0,
    Online = 1,
    Offline = 2,
    GoingOffline = 3,
}

impl BlockState {
    pub const ALL: [BlockState; 4] = [
        BlockState::Absent,
        BlockState::Online,
        BlockState::Offline,
        BlockState::GoingOffline,
    ];
    /// The text `memoryN/state` prints.
    pub fn name(self) -> &'static str {
        match self {
            BlockState::Absent => "absent",
            BlockState::Online => "online",
            BlockState::Offline => "offline",
            BlockState::GoingOffline => "going-offline",
        }
    }
    pub fn parse(s: &str) -> Option<BlockState> {
        match s.trim() {
            "online" => Some(BlockState::Online),
            "offline" => Some(BlockState::Offline),
            "going-offline" => Some(BlockState::GoingOffline),
            _ => None,
        }
    }
}

/// A hugetlb page size (`struct hstate`), with `hugepage_migration_supported()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hstate {
    pub order: u32,
    pub migration_supported: bool,
}

/// A range of pfns `[start, end)` owned by node `nid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfnRange {
    pub start: u64,
    pub end: u64,
    pub nid: u16,
}

/// A ZONE_DEVICE range (pmem): present sections, never online, no memory block. The first
/// `uninit_pages` struct pages (the altmap reserve holding the memmap itself) are never
/// initialised by `memmap_init_zone_device()`; the rest are PG_reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRange {
    pub start: u64,
    pub end: u64,
    pub nid: u16,
    pub uninit_pages: u64,
}

/// A zone span given by the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneSpec {
    pub nid: u16,
    pub zone: ZoneType,
    pub start: u64,
    pub end: u64,
}

/// Everything the builder needs.
#[derive(Debug, Clone)]
pub struct LayoutSpec {
    pub geometry: Geometry,
    /// memblock.memory: System RAM, per node.
    pub ram: Vec<PfnRange>,
    /// memblock.reserved inside RAM (kernel image, ACPI data in RAM, ...): PG_reserved pages.
    pub reserved: Vec<(u64, u64)>,
    pub device: Vec<DeviceRange>,
    pub zones: Vec<ZoneSpec>,
    /// Blocks that are present but offline (hot-added and not onlined): their memmap is
    /// uninitialised until online.
    pub offline_blocks: Vec<u64>,
    pub hstates: Vec<Hstate>,
}

/// The driver name virtio-mem gives the RAM it adds ("System RAM (virtio_mem)" in iomem).
pub const VIRTIO_MEM_DRIVER: &str = "virtio_mem";

/// Free hugetlb pool pages, indexed [node][hstate].
pub type HugetlbFreeCounts = std::sync::Arc<Vec<Vec<u64>>>;

/// The modeled machine. Copied with `try_clone` (its page store's allocations are fallible).
#[derive(Debug)]
pub struct Machine {
    pub geometry: Geometry,
    pub store: PageStore,
    pub nodes: Vec<Node>,
    pub blocks: Vec<BlockState>,
    pub hstates: Vec<Hstate>,
    /// "System RAM" resources (iomem), sorted pfn ranges: what `walk_system_ram_range()` walks.
    pub system_ram: Vec<(u64, u64)>,
    /// RAM a driver added with `add_memory_driver_managed()` (v5.8+; iomem "System RAM
    /// (<driver>)" under the device's resource): sorted, disjoint pfn ranges and the driver.
    pub driver_managed: Vec<(u64, u64, String)>,
    /// s390: blocks of standby memory (added offline at boot through `add_memory()`).
    pub standby_blocks: Vec<u64>,
    /// Reserved hugetlb pages per hstate (`resv_huge_pages`): free pool pages promised to
    /// mappings, which `dissolve_free_huge_page()` may not take.
    pub hugetlb_resv: Vec<u64>,
    /// `min_free_kbytes` in pages, as `init_per_zone_wmark_min()` last computed it (boot,
    /// and after every online or offline).
    pub min_free_pages: u64,
    /// The same under 6.1's rules (`calculate_min_free_kbytes()` clamps to 262144 KiB, and
    /// khugepaged's THP raise is reapplied after every hotplug).
    pub min_free_pages_6_1: u64,
    /// `vm.min_free_kbytes` as a user (or a snapshot) set it (`user_min_free_kbytes`).
    pub user_min_free_kbytes: Option<u64>,
    /// Transparent hugepages enabled (always or madvise), so khugepaged's
    /// `set_recommended_min_free_kbytes()` raises min_free_kbytes at boot.
    pub thp_enabled: bool,
    /// A block was onlined or offlined since boot: 5.x's `init_per_zone_wmark_min()` then
    /// recomputes min_free_kbytes without khugepaged's raise (restored from v5.10).
    pub hotplugged: bool,
    /// Managed pages per node: [kernel zones, ZONE_MOVABLE] (online RAM, by pageblock), as
    /// the watermarks were last distributed over them.
    pub managed_pages: Vec<[u64; 2]>,
    /// Free hugetlb pool pages per node and hstate, with the store generation they were
    /// counted at (`kernel::offline::migrate::hugetlb_free_counts`): a read-side cache, so
    /// repeated offline decisions on an unchanged store count the pool once.
    pub hugetlb_free_cache: std::sync::Mutex<Option<(u64, HugetlbFreeCounts)>>,
    /// The offline model's migration-target search state after its last commit (kernel
    /// offline_pages() allocates from free lists, which do not restart at pfn 0: a commit
    /// costs its block, not the machine). Valid while the store generation is the one saved.
    pub target_cursors: Option<TargetCursors>,
    /// What a struct page that was never initialised holds when DEBUG_VM did not poison it
    /// (an input: the kernel leaves whatever the memory held).
    pub uninit_memmap: UninitMemmap,
    /// v6.1 `mem->zone` of every block, kept from the first online or offline on: `None`
    /// while no block changed state, when each online block's is still its boot value
    /// (see `kernel::offline::mem_zone`).
    pub mem_zone: Option<Vec<Option<(u16, ZoneType)>>>,
    /// HugeTLB Vmemmap Optimization is on (`hugetlb_free_vmemmap=on`, or the Kconfig default
    /// CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON, `default n` in 6.1-rc6): free
    /// hugetlb pages keep one page of their vmemmap, which dissolving must restore.
    pub hugetlb_vmemmap_optimized: bool,
}

/// Where the offline model's search for free target blocks stands (see
/// `kernel::offline::TargetAllocator`): per pool (kernel zones, ZONE_MOVABLE) and request
/// kind (order 0, higher order) a cursor behind which no usable free block is left, the pools
/// and orders found empty, and the largest order the higher-order cursor served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetSearch {
    pub cursors: [[u64; 2]; 2],
    pub exhausted: [[bool; 16]; 2],
    pub max_order: [u32; 2],
}

/// A `TargetSearch` kept after a commit, with what it is valid for: the store generation
/// and the nodes migration may allocate on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCursors {
    pub generation: u64,
    pub allowed: Vec<u16>,
    pub search: TargetSearch,
}

/// The content of never-initialised struct pages on a kernel without DEBUG_VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UninitMemmap {
    /// Unknown bytes (real pmem media that held data): reads are undefined or oops.
    #[default]
    Garbage,
    /// Zeroes (fresh media, QEMU's guest RAM): node 0, ZONE_DMA, flags 0, refcount 0. A
    /// real 5.4.59 kernel without DEBUG_VM reads the seed's pmem pfn this way under QEMU
    /// (../shared/kernels/README.md) and prints 0 rather than crashing.
    Zero,
}

impl UninitMemmap {
    pub const NAMES: [&'static str; 2] = ["garbage", "zero"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Option<UninitMemmap> {
        match s {
            "garbage" => Some(UninitMemmap::Garbage),
            "zero" => Some(UninitMemmap::Zero),
            _ => None,
        }
    }
}

fn check_sorted_disjoint(name: &str, mut v: Vec<(u64, u64)>) -> Result<()> {
    v.sort_unstable();
    for w in v.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(Error::Layout(format!(
                "{name} ranges overlap: pfn {:#x}-{:#x} and {:#x}-{:#x}",
                w[0].0,
                w[0].1 - 1,
                w[1].0,
                w[1].1 - 1
            )));
        }
    }
    Ok(())
}

impl Machine {
    /// An independent copy; `Error::Memory` where the page store does not fit.
    /// Declare RAM that a driver manages (`add_memory_driver_managed()`): pfn ranges
    /// `[start, end)` with the driver's name as iomem prints it ("virtio_mem"). Each must be
    /// non-empty, inside the machine and disjoint from the others; they replace any before.
    pub fn set_driver_managed(&mut self, mut ranges: Vec<(u64, u64, String)>) -> Result<()> {
        ranges.sort_unstable();
        for (i, (s, e, d)) in ranges.iter().enumerate() {
            if s >= e || *e > self.store.max_pfn {
                return Err(Error::Layout(format!(
                    "driver-managed range {s:#x}-{e:#x} ({d}) is empty or beyond max_pfn {:#x}",
                    self.store.max_pfn
                )));
            }
            if i > 0 && ranges[i - 1].1 > *s {
                return Err(Error::Layout(format!(
                    "driver-managed ranges overlap at pfn {s:#x} ({} and {d})",
                    ranges[i - 1].2
                )));
            }
        }
        self.driver_managed = ranges;
        Ok(())
    }

    /// Whether `pfn` is RAM virtio-mem manages. Its memory notifier (6.1
    /// drivers/virtio/virtio_mem.c, `virtio_mem_sbm_notify_going_offline()` →
    /// `virtio_mem_fake_offline_going_offline()`) drops the reference of each fake-offline
    /// (PageOffline) page of the block on MEM_GOING_OFFLINE and takes it again on
    /// MEM_CANCEL_OFFLINE.
    pub fn virtio_mem_managed(&self, pfn: u64) -> bool {
        let i = self.driver_managed.partition_point(|r| r.1 <= pfn);
        self.driver_managed
            .get(i)
            .is_some_and(|(s, _, d)| *s <= pfn && d == VIRTIO_MEM_DRIVER)
    }

    pub fn try_clone(&self) -> Result<Machine> {
        Ok(Machine {
            geometry: self.geometry,
            store: self.store.try_clone()?,
            nodes: self.nodes.clone(),
            blocks: self.blocks.clone(),
            hstates: self.hstates.clone(),
            system_ram: self.system_ram.clone(),
            driver_managed: self.driver_managed.clone(),
            standby_blocks: self.standby_blocks.clone(),
            hugetlb_resv: self.hugetlb_resv.clone(),
            min_free_pages: self.min_free_pages,
            min_free_pages_6_1: self.min_free_pages_6_1,
            user_min_free_kbytes: self.user_min_free_kbytes,
            thp_enabled: self.thp_enabled,
            hotplugged: self.hotplugged,
            managed_pages: self.managed_pages.clone(),
            hugetlb_free_cache: std::sync::Mutex::new(None),
            target_cursors: self.target_cursors.clone(),
            uninit_memmap: self.uninit_memmap,
            mem_zone: self.mem_zone.clone(),
            hugetlb_vmemmap_optimized: self.hugetlb_vmemmap_optimized,
        })
    }

    /// Build a machine from a layout: sections, memmap states, zones, blocks.
    /// Free RAM starts as the buddy allocator holds it after boot (largest aligned blocks).
    pub fn build(spec: &LayoutSpec) -> Result<Machine> {
        let g = spec.geometry;
        g.validate()?;
        for r in &spec.ram {
            if r.start >= r.end {
                return Err(Error::Layout(format!(
                    "empty RAM range at pfn {:#x}",
                    r.start
                )));
            }
        }
        for d in &spec.device {
            if d.start >= d.end {
                return Err(Error::Layout(format!(
                    "empty device range at pfn {:#x}",
                    d.start
                )));
            }
        }
        let all: Vec<(u64, u64)> = spec
            .ram
            .iter()
            .map(|r| (r.start, r.end))
            .chain(spec.device.iter().map(|d| (d.start, d.end)))
            .collect();
        check_sorted_disjoint("RAM and device", all.clone())?;
        check_sorted_disjoint("reserved", spec.reserved.clone())?;
        for &(s, e) in &spec.reserved {
            if s >= e || !spec.ram.iter().any(|r| r.start <= s && e <= r.end) {
                return Err(Error::Layout(format!(
                    "reserved range pfn {s:#x}-{:#x} is not inside one System RAM range",
                    e.saturating_sub(1)
                )));
            }
        }
        let max_pfn = all.iter().map(|r| r.1).max().unwrap_or(0);
        if max_pfn == 0 {
            return Err(Error::Layout("the layout has no memory at all".into()));
        }
        // the store covers whole blocks: the limit applies to the rounded end
        let ppb = g.pages_per_block();
        let rounded = u128::from(max_pfn).div_ceil(u128::from(ppb)) * u128::from(ppb);
        if rounded > 1u128 << (52 - g.page_shift) {
            return Err(Error::Layout(format!(
                "memory ends at pfn {max_pfn:#x}; its memory block ends beyond 2^52 bytes \
                 (MAX_PHYSMEM_BITS)"
            )));
        }
        // The tables follow the address span, the pages the RAM described: a span of mostly
        // nothing would cost far more than its memory. Refused with the size it would need.
        let described: u128 = all.iter().map(|&(s, e)| u128::from(e - s)).sum();
        let tables = PageStore::table_bytes(&g, max_pfn);
        if tables > (256u128 << 20).max(2 * described) {
            return Err(Error::Layout(format!(
                "the layout spans pfns up to {max_pfn:#x} but describes only {described:#x} \
                 pages of memory: its section and pageblock tables would need {tables} bytes \
                 (memscan's tables cover the whole address span); refused"
            )));
        }
        let mut store = PageStore::new(g, max_pfn)?;
        let pps = g.pages_per_section();
        let nr_nodes = all_nids(spec).max().map_or(1, |n| n as usize + 1);

        // Sections: present/online/early for RAM, present/device for ZONE_DEVICE.
        let mut set_sections = |s: u64, e: u64, nid: u16, flags: u8, what: &str| -> Result<()> {
            for sec in (s / pps)..e.div_ceil(pps) {
                let m = &mut store.meta[sec as usize];
                if m.present() && (m.nid != nid || (m.flags & SEC_DEVICE) != (flags & SEC_DEVICE)) {
                    return Err(Error::Layout(format!(
                        "section {sec:#x} would hold {what} of node {nid} and memory of another kind or node {}: memscan models one node and one kind per section",
                        m.nid
                    )));
                }
                m.flags |= flags;
                m.nid = nid;
            }
            Ok(())
        };
        for r in &spec.ram {
            set_sections(
                r.start,
                r.end,
                r.nid,
                SEC_PRESENT | SEC_ONLINE | SEC_EARLY,
                "RAM",
            )?;
        }
        for d in &spec.device {
            if d.start % pps != 0 || d.end % pps != 0 {
                return Err(Error::Layout(format!(
                    "device range pfn {:#x}-{:#x} is not section-aligned (sub-section ZONE_DEVICE is not modeled)",
                    d.start,
                    d.end - 1
                )));
            }
            set_sections(
                d.start,
                d.end,
                d.nid,
                SEC_PRESENT | SEC_DEVICE,
                "device memory",
            )?;
        }

        // Memmap: holes inside present RAM sections are zeroed (v5.5 zero_resv_unavail()),
        // RAM is free, reserved ranges PG_reserved, device pages reserved after the altmap.
        let max_order = (g.max_order - 1) as u8;
        for sec in 0..store.nr_sections() {
            let m = store.meta[sec as usize];
            if m.present() && !m.device() {
                store.set_section_compact(sec, Compact::Uniform(make(kind::ZEROED, ZEROED_HOLE)));
            }
        }
        for r in &spec.ram {
            write_free_range(&mut store, r.start, r.end, max_order);
        }
        for &(s, e) in &spec.reserved {
            store.set_pages(s, e - s, kind::RESERVED);
        }
        // x86: every hole below 1 MiB is memblock-reserved at boot (trim_low_memory_range
        // reserves [0, 64K), reserve_bios_regions [EBDA, 1 MiB): arch/x86/kernel/setup.c and
        // ebda.c, 5.4..6.1), and reserve_bootmem_region() (memblock_free_all, after every
        // memmap pass) sets PG_reserved on them. A real 5.4.59 guest reads KPF_RESERVED at
        // pfn 0 and 0x9f..0xff.
        if g.arch == Arch::X86_64 {
            let hole = make(kind::ZEROED, ZEROED_HOLE);
            let low = (0x10_0000u64 >> g.page_shift).min(store.max_pfn);
            for pfn in 0..low {
                if store.page(pfn) == hole {
                    store.set_pages(pfn, 1, kind::RESERVED);
                }
            }
        }
        for d in &spec.device {
            let uninit = d.uninit_pages.min(d.end - d.start);
            store.set_pages(d.start, uninit, kind::UNINIT);
            store.set_pages(d.start + uninit, d.end - d.start - uninit, kind::RESERVED);
        }

        // Zones.
        let mut nodes = vec![Node::default(); nr_nodes];
        let mut specs = spec.zones.clone();
        specs.sort_by_key(|z| (z.nid, z.start));
        for z in &specs {
            if z.start >= z.end {
                return Err(Error::Layout(format!(
                    "zone {} of node {} is empty ({:#x}..{:#x})",
                    z.zone.name(),
                    z.nid,
                    z.start,
                    z.end
                )));
            }
            if z.zone == ZoneType::Device {
                return Err(Error::Layout(
                    "ZONE_DEVICE spans come from device ranges, not zone specs".into(),
                ));
            }
            let node = nodes.get_mut(z.nid as usize).ok_or_else(|| {
                Error::Layout(format!("zone for node {} which has no memory", z.nid))
            })?;
            if node.zones[z.zone as usize].is_some() {
                return Err(Error::Layout(format!(
                    "zone {} given twice for node {}",
                    z.zone.name(),
                    z.nid
                )));
            }
            node.zones[z.zone as usize] = Some(ZoneSpan {
                start_pfn: z.start,
                end_pfn: z.end,
            });
        }
        for (n, node) in nodes.iter().enumerate() {
            let mut spans: Vec<(u64, u64)> = node
                .zones
                .iter()
                .flatten()
                .map(|s| (s.start_pfn, s.end_pfn))
                .collect();
            spans.sort_unstable();
            check_sorted_disjoint(&format!("node {n} zone"), spans)?;
        }
        // Pageblock zone links: the zone spanning the pageblock's first pfn, else any pfn of it.
        let pbn = g.pageblock_nr_pages();
        let mut offline_sorted = spec.offline_blocks.clone();
        offline_sorted.sort_unstable();
        for sec in 0..store.nr_sections() {
            let m = store.meta[sec as usize];
            if !m.present() {
                continue;
            }
            let nid = m.nid as usize;
            for pb in (sec * pps..(sec + 1) * pps).step_by(pbn as usize) {
                let zone = if m.device() {
                    Some(ZoneType::Device)
                } else {
                    zone_for_pageblock(&nodes[nid], pb, pbn)
                };
                if let Some(z) = zone {
                    store.set_pageblock_zone(pb, z);
                } else {
                    // RAM outside every zone span: memory added but not onlined (a
                    // coldplugged DIMM, standby memory: its block is offline, and it joins a
                    // zone when onlined, move_pfn_range_to_zone) or, in an explicit layout, a
                    // contradiction.
                    let offline = offline_sorted
                        .binary_search(&(pb / g.pages_per_block()))
                        .is_ok();
                    if !offline
                        && spec
                            .ram
                            .iter()
                            .any(|r| r.start < pb + pbn && pb < r.end && r.nid as usize == nid)
                    {
                        return Err(Error::Layout(format!(
                            "RAM at pfn {pb:#x} (node {nid}) lies outside every zone of its node"
                        )));
                    }
                }
                store.set_migratetype(pb, MigrateType::Movable);
            }
        }
        // ZONE_DEVICE spans (per node) for completeness.
        for d in &spec.device {
            let n = &mut nodes[d.nid as usize];
            let z = n.zones[ZoneType::Device as usize].get_or_insert(ZoneSpan {
                start_pfn: d.start,
                end_pfn: d.end,
            });
            z.start_pfn = z.start_pfn.min(d.start);
            z.end_pfn = z.end_pfn.max(d.end);
        }
        for sec in 0..store.nr_sections() {
            let m = store.meta[sec as usize];
            if m.present() && !m.device() {
                nodes[m.nid as usize].online = true;
            }
        }

        // Memory blocks: one per block with a present boot (non-device) section.
        let spb = g.sections_per_block();
        let mut blocks = vec![BlockState::Absent; store.nr_blocks() as usize];
        for (b, st) in blocks.iter_mut().enumerate() {
            let b = b as u64;
            if (b * spb..(b + 1) * spb).any(|s| {
                let m = store.section_meta(s);
                m.present() && !m.device()
            }) {
                *st = BlockState::Online;
            }
        }
        for &b in &spec.offline_blocks {
            let st = blocks
                .get_mut(b as usize)
                .ok_or_else(|| Error::NoSuchBlock {
                    block: b,
                    why: "listed as offline but beyond the end of memory".into(),
                })?;
            if *st == BlockState::Absent {
                return Err(Error::NoSuchBlock {
                    block: b,
                    why: "listed as offline but it has no present RAM section".into(),
                });
            }
            *st = BlockState::Offline;
            // Offline (hot-added, never onlined) memory: present, not online, memmap not yet
            // initialised (v5.5 initialises it in move_pfn_range_to_zone() at online time).
            for s in b * spb..(b + 1) * spb {
                let m = &mut store.meta[s as usize];
                if m.present() {
                    m.flags &= !(SEC_ONLINE | SEC_EARLY);
                    store.set_section_compact(s, Compact::Uniform(kind::UNINIT));
                }
            }
        }
        let hstates: Vec<Hstate> = if spec.hstates.is_empty() {
            default_hstates(&g)
        } else {
            spec.hstates.clone()
        };
        if hstates.len() > 8 {
            return Err(Error::Layout("at most 8 hugetlb page sizes".into()));
        }
        let hugetlb_resv = vec![0; hstates.len()];
        let mut system_ram: Vec<(u64, u64)> = spec.ram.iter().map(|r| (r.start, r.end)).collect();
        system_ram.sort_unstable();
        Ok(Machine {
            geometry: g,
            store,
            nodes,
            blocks,
            hstates,
            system_ram,
            driver_managed: Vec::new(),
            standby_blocks: if g.arch == crate::geometry::Arch::S390x {
                spec.offline_blocks.clone()
            } else {
                Vec::new()
            },
            hugetlb_resv,
            min_free_pages: 0,
            min_free_pages_6_1: 0,
            user_min_free_kbytes: None,
            thp_enabled: true,
            hotplugged: false,
            managed_pages: Vec::new(),
            hugetlb_free_cache: std::sync::Mutex::new(None),
            target_cursors: None,
            uninit_memmap: UninitMemmap::default(),
            mem_zone: None,
            hugetlb_vmemmap_optimized: false,
        })
        .map(|mut m| {
            crate::watermark::refresh_min_free(&mut m);
            m
        })
    }

    pub fn nr_blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// The block's state, with a clear error for ids without a block directory.
    pub fn block_state(&self, block: u64) -> Result<BlockState> {
        match self.blocks.get(block as usize) {
            None => Err(Error::NoSuchBlock {
                block,
                why: format!("the machine has block ids 0..{}", self.blocks.len()),
            }),
            Some(BlockState::Absent) => Err(Error::NoSuchBlock {
                block,
                why: "no present RAM section in it, so the kernel creates no memoryN directory"
                    .into(),
            }),
            Some(&s) => Ok(s),
        }
    }

    /// `set_block_state` by the state's sysfs name.
    pub fn set_block_state_named(&mut self, block: u64, state: &str) -> Result<()> {
        let st = BlockState::parse(state).ok_or_else(|| {
            Error::Argument(format!(
                "unknown block state {state:?} (online, offline, going-offline)"
            ))
        })?;
        self.set_block_state(block, st)
    }

    /// Zone spans of every node: (nid, zone, start_pfn, end_pfn), nodes and zones in order.
    pub fn zone_spans(&self) -> Vec<(u16, ZoneType, u64, u64)> {
        let mut v = Vec::new();
        for (nid, n) in self.nodes.iter().enumerate() {
            for z in ZoneType::ALL {
                if let Some(s) = n.zones[z as usize] {
                    v.push((nid as u16, z, s.start_pfn, s.end_pfn));
                }
            }
        }
        v
    }

    /// Set the reserved pages (`resv_huge_pages`) of hstate `hstate`.
    pub fn set_hugetlb_reserved(&mut self, hstate: usize, pages: u64) -> Result<()> {
        let n = self.hstates.len();
        let slot = self.hugetlb_resv.get_mut(hstate).ok_or_else(|| {
            Error::Argument(format!(
                "hstate {hstate} does not exist (the machine has {n})"
            ))
        })?;
        *slot = pages;
        Ok(())
    }

    /// `echo KB > /proc/sys/vm/min_free_kbytes` (None: as booted); recomputes the watermarks.
    pub fn set_user_min_free_kbytes(&mut self, kbytes: Option<u64>) {
        self.user_min_free_kbytes = kbytes;
        crate::watermark::refresh_min_free(self);
    }

    /// Transparent hugepages on or off (khugepaged raises min_free_kbytes).
    pub fn set_thp_enabled(&mut self, on: bool) {
        self.thp_enabled = on;
        crate::watermark::refresh_min_free(self);
    }

    /// Whether a block was onlined or offlined since boot (what a snapshot's captured
    /// min_free_kbytes tells on 5.x); recomputes the watermarks.
    pub fn set_hotplugged(&mut self, on: bool) {
        self.hotplugged = on;
        crate::watermark::refresh_min_free(self);
    }

    /// What never-initialised struct pages hold, by name.
    pub fn set_uninit_memmap_named(&mut self, value: &str) -> Result<()> {
        self.uninit_memmap = UninitMemmap::parse(value).ok_or_else(|| {
            Error::Argument(format!(
                "uninit_memmap {value:?}: expected one of {:?}",
                UninitMemmap::NAMES
            ))
        })?;
        Ok(())
    }

    /// One page byte, range-checked.
    pub fn page_checked(&self, pfn: u64) -> Result<u8> {
        self.check_pfn_range(pfn, 1)?;
        Ok(self.store.page(pfn))
    }

    /// A copy of `count` page bytes from `pfn`, range-checked.
    pub fn read_pages_checked(&self, pfn: u64, count: u64) -> Result<Vec<u8>> {
        self.check_pfn_range(pfn, count)?;
        let n = usize::try_from(count).map_err(|_| Error::Memory(format!("{count} page bytes")))?;
        let mut out = Vec::new();
        out.try_reserve_exact(n)
            .map_err(|_| Error::Memory(format!("a copy of {count} page bytes")))?;
        out.resize(n, 0);
        self.store.read_pages(pfn, &mut out);
        Ok(out)
    }

    /// `count` pages from `pfn` set to `value`, range-checked.
    pub fn set_pages_checked(&mut self, pfn: u64, count: u64, value: u8) -> Result<()> {
        self.check_pfn_range(pfn, count)?;
        let around = self.free_blocks_around(pfn, pfn + count);
        self.store.set_pages(pfn, count, value);
        self.refree(pfn, pfn + count, around);
        Ok(())
    }

    /// Page bytes written from `pfn`, range-checked.
    pub fn write_pages_checked(&mut self, pfn: u64, values: &[u8]) -> Result<()> {
        self.check_pfn_range(pfn, values.len() as u64)?;
        let end = pfn + values.len() as u64;
        let around = self.free_blocks_around(pfn, end);
        self.store.write_pages(pfn, values);
        self.refree(pfn, end, around);
        Ok(())
    }

    /// The span of the free buddy blocks that reach into `[start, end)` from outside it: a
    /// buddy block of order o starts at a multiple of 2^o, so the one covering a pfn, if any,
    /// has its head at that pfn rounded down to some 2^o; blocks do not overlap, so only the
    /// ones covering `start` and `end - 1` can reach out. Returns (first pfn, end pfn).
    fn free_blocks_around(&self, start: u64, end: u64) -> (u64, u64) {
        if start >= end {
            return (start, end);
        }
        let top = self.geometry.max_order;
        let head_covering = |p: u64| -> Option<(u64, u64)> {
            (0..top).find_map(|o| {
                let h = p & !((1u64 << o) - 1);
                let b = self.store.page(h);
                (crate::page::kind_of(b) == crate::page::kind::BUDDY
                    && u32::from(crate::page::field_of(b)) == o)
                    .then_some((h, h + (1u64 << o)))
            })
        };
        let lo = head_covering(start).map_or(start, |(h, _)| h.min(start));
        let hi = head_covering(end - 1).map_or(end, |(_, e)| e.max(end));
        (lo, hi)
    }

    /// After a write into `[start, end)`: what was free around it (`free_blocks_around`) is
    /// free again as buddy blocks that do not cover the written pages (the split the page
    /// allocator makes when it hands pages of a free block out).
    fn refree(&mut self, start: u64, end: u64, (lo, hi): (u64, u64)) {
        let top = (self.geometry.max_order - 1) as u8;
        if lo < start {
            write_free_range(&mut self.store, lo, start, top);
        }
        if hi > end {
            write_free_range(&mut self.store, end, hi, top);
        }
    }

    /// The migratetype of the pageblock holding `pfn`, by number, range-checked.
    pub fn set_migratetype_checked(&mut self, pfn: u64, mt: u8) -> Result<()> {
        let mt = crate::page::MigrateType::from_u8(mt)
            .ok_or_else(|| Error::Argument(format!("unknown migratetype {mt}")))?;
        self.check_pfn_range(pfn, 1)?;
        self.store.set_migratetype(pfn, mt);
        Ok(())
    }

    /// A block's page bytes pinned for a live view (`PageStore::pin`); the id is checked.
    pub fn pin_block_checked(&mut self, block: u64) -> Result<&[u8]> {
        if block >= self.nr_blocks() {
            return Err(Error::NoSuchBlock {
                block,
                why: format!("the machine has block ids 0..{}", self.nr_blocks()),
            });
        }
        Ok(self.store.pin(block))
    }

    pub fn set_block_state(&mut self, block: u64, state: BlockState) -> Result<()> {
        self.block_state(block)?;
        if state == BlockState::Absent {
            return Err(Error::Argument("a block cannot be made absent".into()));
        }
        self.blocks[block as usize] = state;
        Ok(())
    }

    /// The span of `(nid, zone)`; a zone that is not populated reads as an empty span at 0,
    /// as an unused `struct zone` does.
    pub fn zone_span(&self, nid: u16, zone: ZoneType) -> ZoneSpan {
        self.nodes
            .get(nid as usize)
            .and_then(|n| n.zones[zone as usize])
            .unwrap_or(ZoneSpan {
                start_pfn: 0,
                end_pfn: 0,
            })
    }

    /// `node_online(nid)`.
    pub fn node_online(&self, nid: u16) -> bool {
        self.nodes.get(nid as usize).is_some_and(|n| n.online)
    }

    pub fn check_pfn_range(&self, start: u64, count: u64) -> Result<()> {
        if count == 0
            || start
                .checked_add(count)
                .is_none_or(|e| e > self.store.max_pfn)
        {
            return Err(Error::PfnRange {
                start,
                count,
                max_pfn: self.store.max_pfn,
            });
        }
        Ok(())
    }
}

fn all_nids(spec: &LayoutSpec) -> impl Iterator<Item = u16> + '_ {
    spec.ram
        .iter()
        .map(|r| r.nid)
        .chain(spec.device.iter().map(|d| d.nid))
        .chain(spec.zones.iter().map(|z| z.nid))
}

fn zone_for_pageblock(node: &Node, pb: u64, pbn: u64) -> Option<ZoneType> {
    let zones = ZoneType::ALL
        .iter()
        .copied()
        .filter(|&z| z != ZoneType::Device);
    let mut any = None;
    for z in zones {
        if let Some(span) = node.zones[z as usize] {
            if span.spans(pb) {
                return Some(z);
            }
            if any.is_none() && span.start_pfn < pb + pbn && pb < span.end_pfn {
                any = Some(z);
            }
        }
    }
    any
}

/// Free `[start, end)` into the largest naturally aligned buddy blocks (at most
/// `max_order`), as `memblock_free_all()` leaves free memory after boot.
pub fn write_free_range(store: &mut PageStore, start: u64, end: u64, max_order: u8) {
    let g = store.geometry;
    let pps = g.pages_per_section();
    let mut p = start;
    while p < end {
        if p % pps == 0 && end - p >= pps {
            let sec = p / pps;
            store.set_section_compact(sec, Compact::FreeBlocks(max_order));
            p += pps;
            continue;
        }
        let align = if p == 0 { 63 } else { p.trailing_zeros() };
        let fit = (end - p).ilog2();
        let order = align.min(fit).min(u32::from(max_order));
        store.set_pages(p, 1, make(kind::BUDDY, order as u8));
        if order > 0 {
            store.set_pages(p + 1, (1 << order) - 1, kind::FREE);
        }
        p += 1 << order;
    }
}

/// hstates a v5.5 kernel registers by default, with `hugepage_migration_supported()`
/// (x86_64: PMD and PUD sizes with ARCH_ENABLE_HUGEPAGE_MIGRATION).
pub fn default_hstates(g: &Geometry) -> Vec<Hstate> {
    let pmd = g.pageblock_order;
    let mut v = vec![Hstate {
        order: pmd,
        migration_supported: true,
    }];
    if g.arch == crate::geometry::Arch::X86_64 {
        v.push(Hstate {
            order: 18,
            migration_supported: true,
        });
    }
    v
}
