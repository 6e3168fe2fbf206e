//! Small machines for the kernel models' own unit tests (no Python needed).

use crate::geometry::{Arch, Geometry, GeometryOverrides};
use crate::kernel::profile::KernelProfile;
use crate::page::ZoneType;
use crate::topology::{Hstate, LayoutSpec, Machine, PfnRange, ZoneSpec};

/// First pfn of RAM: 4 GiB with 4 KiB pages.
pub const PFN0: u64 = 0x10_0000;
/// Pages per 128 MiB block (one section).
pub const BLOCK: u64 = 32_768;
/// Pages per pageblock.
pub const PB: u64 = 512;

/// x86_64, 128 MiB blocks, `blocks` blocks of RAM at 4 GiB on node 0, all ZONE_NORMAL, the
/// blocks in `offline` hot-added and offline; every page free as after boot.
pub fn machine(blocks: u64, offline: &[u64]) -> Machine {
    machine_with_hstates(blocks, offline, vec![])
}

/// [`machine`] with hugetlb sizes.
pub fn machine_with_hstates(blocks: u64, offline: &[u64], hstates: Vec<Hstate>) -> Machine {
    let g = Geometry::for_arch(
        Arch::X86_64,
        GeometryOverrides {
            block_size: Some(128 << 20),
            ..Default::default()
        },
        0,
    )
    .expect("geometry");
    let end = PFN0 + blocks * BLOCK;
    Machine::build(&LayoutSpec {
        geometry: g,
        ram: vec![PfnRange {
            start: PFN0,
            end,
            nid: 0,
        }],
        reserved: vec![],
        device: vec![],
        zones: vec![ZoneSpec {
            nid: 0,
            zone: ZoneType::Normal,
            start: PFN0,
            end,
        }],
        offline_blocks: offline.to_vec(),
        hstates,
    })
    .expect("machine")
}

/// The block id of the machine's `i`-th block.
pub fn block(i: u64) -> u64 {
    PFN0 / BLOCK + i
}

pub fn kernel(spec: &str) -> KernelProfile {
    KernelProfile::parse(spec, Arch::X86_64).expect("kernel")
}
