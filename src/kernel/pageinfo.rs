//! Reads of a struct page's node and zone links (`page_to_nid()`, `page_zone()`,
//! include/linux/mm.h, v5.5) and of its flags, with what they do on a struct page that was
//! never initialised. Faults are results: the model reports what the kernel would do.

use crate::kernel::profile::KernelProfile;
use crate::page::{field_of, kind, kind_of, ZoneType, ZEROED_HOLE};
use crate::topology::{Machine, UninitMemmap};

/// What the kernel does when a modeled function reads a bad struct page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `VM_BUG_ON_PAGE(PagePoisoned(p))` on a DEBUG_VM_PGFLAGS kernel: kernel BUG.
    Bug,
    /// A wild pointer from garbage or poison is dereferenced: an oops.
    Oops,
    /// Garbage is read but not dereferenced: the answer is undefined.
    Undefined,
    /// A zeroed struct page reads as node 0 / zone 0 (DMA): no crash, a silently wrong answer.
    WrongAnswer,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Bug => "bug",
            FaultKind::Oops => "oops",
            FaultKind::Undefined => "undefined",
            FaultKind::WrongAnswer => "wrong-answer",
        }
    }
    /// Whether the kernel stops here (BUG or oops): the read never returns.
    pub fn stops(self) -> bool {
        matches!(self, FaultKind::Bug | FaultKind::Oops)
    }
}

/// One fault: where, on which page, and what the kernel would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The modeled function that read the page, e.g. "is_mem_section_removable".
    pub function: &'static str,
    /// The access chain inside it, e.g. "page_zone -> page_to_nid".
    pub access: &'static str,
    pub pfn: u64,
    pub kind: FaultKind,
    /// What the kernel would print (first line of the splat).
    pub message: String,
}

/// The state of a struct page's memmap, as a reader sees it under a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memmap {
    /// Initialised (or zeroed: node 0, zone index 0, flags 0) links.
    Valid {
        nid: u16,
        zone: ZoneType,
        zeroed: bool,
    },
    /// All ones (DEBUG_VM `page_init_poison()`), never initialised.
    Poisoned,
    /// Never initialised, not poisoned: whatever the memory held.
    Garbage,
    /// No memmap: the vmemmap for this pfn is not mapped.
    Missing,
}

/// What the struct page of a hole (a pfn of a present section that is not RAM, page byte
/// `ZEROED` with field `ZEROED_HOLE`) holds under a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoleAs {
    /// All zeroes: refcount 0, no flags, node 0 / zone DMA (`zero_resv_unavail`, <= 5.5).
    Zeroed,
    /// PG_reserved (`init_unavailable_mem`, 5.6; `init_unavailable_range`, 6.1).
    Reserved,
    /// An ordinary page of its zone with refcount 1 and no flags: `memmap_init_zone` reached
    /// it (inside a zone span, 5.4..5.6; see `KernelProfile::holes_in_zone_initialised`).
    InUse,
}

/// How the hole at `pfn` reads under `profile`. Zone spans are the machine's current ones
/// (the boot spans unless an offline or online changed them).
pub fn hole_as(m: &Machine, pfn: u64, profile: &KernelProfile) -> HoleAs {
    if profile.holes_in_zone_initialised() {
        let nid = m.store.section_meta(m.geometry.pfn_to_section(pfn)).nid;
        if ZoneType::ALL
            .iter()
            .any(|&z| z != ZoneType::Device && m.zone_span(nid, z).spans(pfn))
        {
            return HoleAs::InUse;
        }
    }
    if profile.holes_zeroed() {
        HoleAs::Zeroed
    } else {
        HoleAs::Reserved
    }
}

/// Classify the struct page of `pfn`.
pub fn memmap_state(m: &Machine, pfn: u64, profile: &KernelProfile) -> Memmap {
    let b = m.store.page(pfn);
    match kind_of(b) {
        kind::NOMEMMAP => Memmap::Missing,
        // DEBUG_VM poisons hot-added memmap (5.4.59 sparse_add_section() ->
        // page_init_poison()); otherwise it holds what the memory held.
        kind::UNINIT if profile.debug_vm => Memmap::Poisoned,
        kind::UNINIT => match m.uninit_memmap {
            UninitMemmap::Garbage => Memmap::Garbage,
            UninitMemmap::Zero => Memmap::Valid {
                nid: 0,
                zone: profile.zone_zero(),
                zeroed: true,
            },
        },
        kind::ZEROED if field_of(b) != ZEROED_HOLE => Memmap::Valid {
            nid: 0,
            zone: profile.zone_zero(),
            zeroed: true,
        },
        // a hole: zeroed (<= 5.5) or PG_reserved as node 0, zone 0 (5.6) unless
        // memmap_init_zone() reached it; 6.1 gives it its node and zone
        kind::ZEROED
            if profile.holes_read_zone_zero() && hole_as(m, pfn, profile) != HoleAs::InUse =>
        {
            Memmap::Valid {
                nid: 0,
                zone: profile.zone_zero(),
                zeroed: true,
            }
        }
        _ => Memmap::Valid {
            nid: m.store.section_meta(m.geometry.pfn_to_section(pfn)).nid,
            zone: m.store.pageblock_zone(pfn),
            zeroed: false,
        },
    }
}

/// The page byte as the kernel's reads see it: a never-initialised struct page that holds
/// zeroes (no DEBUG_VM, `UninitMemmap::Zero`) reads like a zeroed one.
pub fn effective_byte(m: &Machine, pfn: u64, profile: &KernelProfile) -> u8 {
    let b = m.store.page(pfn);
    if kind_of(b) == kind::UNINIT && !profile.debug_vm && m.uninit_memmap == UninitMemmap::Zero {
        crate::page::make(kind::ZEROED, 0)
    } else {
        b
    }
}

/// x86_64 `vmemmap` base (4-level paging, no KASLR of vmemmap): struct page addresses as
/// dump_page() prints them.
pub const X86_VMEMMAP_BASE: u64 = 0xffff_ea00_0000_0000;

fn page_addr(m: &Machine, pfn: u64) -> String {
    if m.geometry.arch == crate::geometry::Arch::X86_64 {
        format!(
            "{:x}",
            X86_VMEMMAP_BASE + pfn * crate::cost::STRUCT_PAGE_BYTES
        )
    } else {
        format!("<struct page of pfn {pfn:#x}>")
    }
}

fn bug(m: &Machine, function: &'static str, access: &'static str, pfn: u64) -> Fault {
    Fault {
        function,
        access,
        pfn,
        kind: FaultKind::Bug,
        message: format!(
            "page:{} is uninitialized and poisoned; kernel BUG: VM_BUG_ON_PAGE(PagePoisoned(p))",
            page_addr(m, pfn)
        ),
    }
}

/// The oops of a `page_zone()` read of a poisoned struct page without DEBUG_VM_PGFLAGS.
pub const POISONED_NODE_OOPS: &str = "unable to handle page fault or NULL pointer dereference \
     (which one depends on node_data[] past the last node): NODE_DATA() of the poisoned node id";

fn oops(m: &Machine, function: &'static str, access: &'static str, pfn: u64, why: &str) -> Fault {
    Fault {
        function,
        access,
        pfn,
        kind: FaultKind::Oops,
        message: format!("Oops: {why} (struct page {})", page_addr(m, pfn)),
    }
}

/// A silently wrong read: a zeroed struct page whose real node/zone differs from node 0 and
/// zone index 0 (`KernelProfile::zone_zero`).
pub fn wrong(
    m: &Machine,
    profile: &KernelProfile,
    function: &'static str,
    access: &'static str,
    pfn: u64,
) -> Fault {
    Fault {
        function,
        access,
        pfn,
        kind: FaultKind::WrongAnswer,
        message: format!(
            "zeroed struct page {} reads as node 0, zone {}",
            page_addr(m, pfn),
            profile.zone_zero().name()
        ),
    }
}

/// `page_zone(pfn_to_page(pfn))` (v5.5: `&NODE_DATA(page_to_nid(page))->node_zones[page_zonenum(page)]`).
/// Returns (nid, zone, read-was-zeroed).
pub fn page_zone(
    m: &Machine,
    pfn: u64,
    profile: &KernelProfile,
    function: &'static str,
) -> Result<(u16, ZoneType, bool), Fault> {
    match memmap_state(m, pfn, profile) {
        Memmap::Valid { nid, zone, zeroed } => Ok((nid, zone, zeroed)),
        Memmap::Poisoned if profile.debug_vm_pgflags => {
            Err(bug(m, function, "page_zone -> page_to_nid", pfn))
        }
        // All-ones flags give nid = NODES_MASK: NODE_DATA() indexes node_data[] past the
        // last node, and the zone address built from what it finds is dereferenced. x86 then
        // prints "BUG: kernel NULL pointer dereference" or "BUG: unable to handle page fault"
        // depending on that value (NULL or not), which the model cannot know.
        Memmap::Poisoned => Err(oops(m, function, "page_zone", pfn, POISONED_NODE_OOPS)),
        Memmap::Garbage => Err(oops(
            m,
            function,
            "page_zone",
            pfn,
            "wild pointer from the garbage node/zone bits of an uninitialized struct page",
        )),
        Memmap::Missing => Err(oops(
            m,
            function,
            "pfn_to_page",
            pfn,
            "unable to handle page fault in vmemmap (no memmap for this section)",
        )),
    }
}

/// `page_to_nid()`. `Ok(None)` is the poisoned node id of a DEBUG_VM kernel without
/// PGFLAGS: a number no node has, so `node_online()` of it is false.
pub fn page_to_nid(
    m: &Machine,
    pfn: u64,
    profile: &KernelProfile,
    function: &'static str,
) -> Result<Option<(u16, bool)>, Fault> {
    match memmap_state(m, pfn, profile) {
        Memmap::Valid { nid, zeroed, .. } => Ok(Some((nid, zeroed))),
        Memmap::Poisoned if profile.debug_vm_pgflags => Err(bug(m, function, "page_to_nid", pfn)),
        Memmap::Poisoned => Ok(None),
        Memmap::Garbage => Err(Fault {
            function,
            access: "page_to_nid",
            pfn,
            kind: FaultKind::Undefined,
            message: format!(
                "node id read from the garbage of uninitialized struct page {}",
                page_addr(m, pfn)
            ),
        }),
        Memmap::Missing => Err(oops(
            m,
            function,
            "pfn_to_page",
            pfn,
            "unable to handle page fault in vmemmap (no memmap for this section)",
        )),
    }
}

/// A flag test with the `PF_POISONED_CHECK` page-flag policy (PageReserved and the other
/// PF_* accessors). Returns the page byte to test, or `Ok(None)` for a poisoned page on a
/// kernel without PGFLAGS (all flags read as set).
pub fn page_flags(
    m: &Machine,
    pfn: u64,
    profile: &KernelProfile,
    function: &'static str,
    access: &'static str,
) -> Result<Option<u8>, Fault> {
    match memmap_state(m, pfn, profile) {
        Memmap::Valid { .. } => Ok(Some(effective_byte(m, pfn, profile))),
        Memmap::Poisoned if profile.debug_vm_pgflags => Err(bug(m, function, access, pfn)),
        Memmap::Poisoned => Ok(None),
        Memmap::Garbage => Err(Fault {
            function,
            access,
            pfn,
            kind: FaultKind::Undefined,
            message: format!(
                "flags read from the garbage of uninitialized struct page {}",
                page_addr(m, pfn)
            ),
        }),
        Memmap::Missing => Err(oops(
            m,
            function,
            "pfn_to_page",
            pfn,
            "unable to handle page fault in vmemmap (no memmap for this section)",
        )),
    }
}
