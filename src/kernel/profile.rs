//! `KernelProfile`: which kernel version, arch and config the models follow.

use crate::error::{Error, Result};
use crate::geometry::Arch;
use crate::page::ZoneType;

/// Kernel versions with distinct behaviour on these paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelVersion {
    /// v5.4.y before 5.4.29 (the stable backport of 53cdc1cb29e8), or a 5.4.y with it
    /// reverted (the ground-truth kernel in ../shared/kernels, 5.4.59). Read in
    /// BoKyoungHan/linux-5.4.59-vanilla: the removable path and has_unmovable_pages are the
    /// v5.5 ones (flag SKIP_HWPOISON for MEMORY_OFFLINE, same value); __offline_pages has no
    /// "memory holes" check; pseries CMM still counts its pages through the isolate notifier.
    V5_4,
    /// v5.5.x before the stable backport of 53cdc1cb29e8 (the seed crash: 5.5.10).
    V5_5,
    /// v5.6-rc1..rc7: pre-patch `removable`, `has_unmovable_pages` without `count`.
    V5_6Rc,
    /// v5.6 final: 53cdc1cb29e8 "indicate all memory blocks as removable" is in.
    V5_6,
    /// v6.1 LTS: what people run today.
    V6_1,
}

impl KernelVersion {
    pub fn name(self) -> &'static str {
        match self {
            KernelVersion::V5_4 => "5.4",
            KernelVersion::V5_5 => "5.5",
            KernelVersion::V5_6Rc => "5.6-rc",
            KernelVersion::V5_6 => "5.6",
            KernelVersion::V6_1 => "6.1",
        }
    }
}

/// What the struct pages of an offlined block hold (`KernelProfile::offlined_memmap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflinedMemmap {
    Reserved,
    Stale,
    Poisoned,
}

/// Version, arch and the config options the models read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelProfile {
    pub version: KernelVersion,
    pub arch: Arch,
    /// CONFIG_DEBUG_VM: memmap is poisoned (all ones) when allocated (`page_init_poison()`).
    pub debug_vm: bool,
    /// CONFIG_DEBUG_VM_PGFLAGS: `PF_POISONED_CHECK` turns a read of a poisoned struct page
    /// into `VM_BUG_ON_PAGE(PagePoisoned(p))`.
    pub debug_vm_pgflags: bool,
    /// CONFIG_MEMORY_HOTREMOVE.
    pub memory_hotremove: bool,
}

/// The MAJOR.MINOR[.SUB][-rcN] at the start of a kernel release string (the rest, a
/// distribution's build suffix after "-" or "+", is dropped).
fn release_version(s: &str) -> &str {
    let bytes = s.as_bytes();
    let mut end = 0;
    let mut dots = 0;
    while end < bytes.len() {
        match bytes[end] {
            b'0'..=b'9' => end += 1,
            b'.' if dots < 2 && end + 1 < bytes.len() && bytes[end + 1].is_ascii_digit() => {
                dots += 1;
                end += 1;
            }
            _ => break,
        }
    }
    let rest = &s[end..];
    if let Some(rc) = rest.strip_prefix("-rc") {
        let n = rc.bytes().take_while(u8::is_ascii_digit).count();
        return &s[..end + 3 + n];
    }
    // a release string goes on with "-..." or "+..." after its version (or ends there)
    if end == 0 || dots == 0 || !(rest.is_empty() || rest.starts_with(['-', '+'])) {
        return s; // not a version: refused below with the whole string
    }
    &s[..end]
}

impl KernelProfile {
    /// Parse "5.4", "5.4.59", "5.5", "5.5.10", "5.6-rc7", "5.6", "6.1.0", each optionally with "+debug"
    /// (DEBUG_VM and DEBUG_VM_PGFLAGS, as Fedora's debug kernels set them).
    /// MEMORY_HOTREMOVE follows the arch: arm64 has none before v5.7 (bbd6ec605c0f).
    pub fn parse(spec: &str, arch: Arch) -> Result<KernelProfile> {
        let s = spec.trim();
        let (ver, debug) = match s.strip_suffix("+debug") {
            Some(v) => (v, true),
            None => (s, false),
        };
        // `uname -r` strings: "5.5.10-200.fc31.x86_64", "6.1.0-18-amd64", "5.4.59": the
        // version is the leading MAJOR.MINOR[.SUB] (with -rcN kept); a distribution's suffix
        // after it says nothing the profiles model
        let ver = release_version(ver);
        let bad = || {
            Error::Argument(format!(
                "unknown kernel {spec:?}: expected 5.4[.N], 5.5[.N], 5.6-rcN, 5.6[.N] or 6.1[.N] \
                 (a `uname -r` string such as 6.1.0-18-amd64 or 5.5.10-200.fc31.x86_64+debug \
                 is read the same way), optionally with +debug; other versions are not modeled: \
                 5.7..6.0 and after 6.1 changed the offline path in ways no profile follows"
            ))
        };
        let version = if let Some(rest) = ver.strip_prefix("5.6-rc") {
            if !rest.is_empty() && rest.parse::<u32>().map_or(true, |n| !(1..=7).contains(&n)) {
                return Err(bad());
            }
            KernelVersion::V5_6Rc
        } else {
            let mut parts = ver.split('.');
            let major = parts.next().and_then(|p| p.parse::<u32>().ok());
            let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
            let sub = match parts.next() {
                None => None,
                Some(p) => Some(p.parse::<u32>().map_err(|_| bad())?),
            };
            if parts.next().is_some() {
                return Err(bad());
            }
            match (major, minor, sub) {
                // 5.4.0..28 scan; 5.4.29 took the backport (its stable changelog lists
                // 53cdc1cb29e8), so a later 5.4.y scans only with it reverted, as the
                // ground-truth kernel is: accepted, the caller says which one it runs.
                (Some(5), Some(4), _) => KernelVersion::V5_4,
                // 5.5.14 most likely took the stable backport [U]; 5.5.0..13 scan.
                (Some(5), Some(5), s) if s.unwrap_or(0) <= 13 => KernelVersion::V5_5,
                (Some(5), Some(5), Some(_)) => {
                    return Err(Error::Argument(format!(
                        "kernel {spec:?}: 5.5.14 and later most likely carry the stable backport of 53cdc1cb29e8 [unverified]; model it as 5.6 for `removable` or 5.5.13 for the scan"
                    )))
                }
                (Some(5), Some(6), _) => KernelVersion::V5_6,
                (Some(6), Some(1), _) => KernelVersion::V6_1,
                _ => return Err(bad()),
            }
        };
        Ok(KernelProfile {
            version,
            arch,
            debug_vm: debug,
            debug_vm_pgflags: debug,
            memory_hotremove: !(arch == Arch::Arm64 && version <= KernelVersion::V5_6),
        })
    }

    /// Whether `removable_show()` scans the memmap (before 53cdc1cb29e8) or prints the
    /// config constant (v5.6 final and later).
    pub fn removable_scans(&self) -> bool {
        matches!(
            self.version,
            KernelVersion::V5_4 | KernelVersion::V5_5 | KernelVersion::V5_6Rc
        )
    }

    /// Whether the memmap of holes in present sections is zeroed (`zero_resv_unavail()`,
    /// v5.4.18 and v5.5-rc5, up to max_pfn) rather than initialised PG_reserved as node 0,
    /// zone 0 (`init_unavailable_mem()`, 4b094b7851bf, from v5.6-rc1: read in v5.6.4; 6.1
    /// gives them their real node and zone). Holes inside a zone's span are then
    /// re-initialised up to v5.6: see `holes_in_zone_initialised`.
    pub fn holes_zeroed(&self) -> bool {
        self.version <= KernelVersion::V5_5
    }

    /// Whether a hole inside a zone's span gets an ordinary struct page at boot:
    /// `memmap_init_zone()` (MEMMAP_EARLY) in v5.4.18, v5.5-rc5 and v5.6.4 walks every pfn
    /// of the zone span and initialises each valid one (`__init_single_page`: refcount 1,
    /// no flags, the zone's node and zone), holes of present sections included, after the
    /// zeroing or PG_reserved pass above; nothing frees it, so it reads as an allocated
    /// kernel page. 6.1's `memmap_init_zone_range()` walks memblock ranges only and marks the
    /// holes between them PG_reserved. Checked on the real 5.4.59 kernel: the hole pfns
    /// 0xbffda-0xbffff of a QEMU guest read kpagecount 0 (a zeroed struct page reads 1, its
    /// _mapcount being 0) and no flags. Assumes DEFERRED_STRUCT_PAGE_INIT off (as the
    /// ground-truth kernels): with it, holes in the deferred part of a node's last zone are
    /// never initialised [U].
    pub fn holes_in_zone_initialised(&self) -> bool {
        self.version <= KernelVersion::V5_6
    }

    /// `__offline_pages()` refuses a range with holes ("memory holes", EINVAL) from v5.5
    /// (walk_system_ram_range + count_system_ram_pages_cb; absent in 5.4.59, present in
    /// v5.5-rc5 right after mem_hotplug_begin()).
    pub fn has_memory_holes_check(&self) -> bool {
        self.version >= KernelVersion::V5_5
    }

    /// The 6.1 memory-block offline path (kernel-6.1-offline.md): `mem->zone` kept per block,
    /// `zone_pcp_disable()` + `lru_cache_disable()` once, isolation of the first, last, then
    /// middle pageblocks, the 6.1 `has_unmovable_pages()`, PageOffline handling, the arm64
    /// boot-memory veto (v5.7+). The 5.x profiles take `__offline_pages()`.
    pub fn offline_path_6_1(&self) -> bool {
        self.version >= KernelVersion::V6_1
    }

    /// A hole's struct page outside every zone span reads node 0, zone index 0 (zeroed up to
    /// 5.5, PG_reserved node 0 / zone 0 in 5.6, `init_unavailable_mem()`); 6.1's
    /// `init_unavailable_range()` gives it the node and zone it lies in.
    pub fn holes_read_zone_zero(&self) -> bool {
        self.version <= KernelVersion::V5_6
    }

    /// `is_mem_section_removable()` exists (up to 5.6; 6.1-rc6 has none).
    pub fn has_is_mem_section_removable(&self) -> bool {
        self.version <= KernelVersion::V5_6
    }

    /// `has_unmovable_pages()` ends with `WARN_ON_ONCE(zone_idx(zone) == ZONE_MOVABLE)` at
    /// its `unmovable:` label (5.4.18, 5.5-rc5); 5.6.4 moved the warning into
    /// `set_migratetype_isolate()`'s failure branch (taken as from 5.6-rc1 [U]).
    pub fn warns_unmovable_in_zone_movable(&self) -> bool {
        self.version <= KernelVersion::V5_5
    }

    /// The reason a CMA pageblock gets: "CMA page" up to 5.5, "unmovable page" from 5.6.
    pub fn cma_reason(&self) -> &'static str {
        if self.version <= KernelVersion::V5_5 {
            "CMA page"
        } else {
            "unmovable page"
        }
    }

    /// pseries CMM registers a memory isolate notifier and gives its loaned pages back in
    /// MEM_GOING_OFFLINE: 5.4.18 cmm.c; v5.5-rc5 has neither.
    pub fn cmm_isolate_notifier(&self) -> bool {
        self.arch == Arch::Ppc64 && self.version == KernelVersion::V5_4
    }

    /// pseries CMM uses balloon compaction from v5.5 (v5.5-rc5 cmm.c: `balloon_page_enqueue`,
    /// `cmm_migratepage`; the fe030c9b85e6 series [R]): its pages are `__PageMovable`.
    pub fn cmm_balloon_compaction(&self) -> bool {
        self.arch == Arch::Ppc64 && self.version >= KernelVersion::V5_5
    }

    /// What an offlined block's struct pages hold: 5.4.18 `__offline_isolated_pages()` sets
    /// PG_reserved; 5.5 leaves them stale and free; from v5.6-rc1
    /// `remove_pfn_range_from_zone()` poisons them (`page_init_poison`, d33695b16a9f; a no-op
    /// without DEBUG_VM). Read in 5.4.18, 5.5-rc5, 5.6.4 and 6.1-rc6.
    pub fn offlined_memmap(&self) -> OfflinedMemmap {
        if self.version == KernelVersion::V5_4 {
            OfflinedMemmap::Reserved
        } else if self.version >= KernelVersion::V5_6Rc && self.debug_vm {
            OfflinedMemmap::Poisoned
        } else {
            OfflinedMemmap::Stale
        }
    }

    /// The zone a zeroed struct page names (zone index 0 of `enum zone_type`, whose members
    /// are each behind a config): ZONE_DMA where the arch has it (x86_64; s390; arm64 from
    /// v5.5, 1a8e1cef7603), arm64 5.4's first zone ZONE_DMA32, and ZONE_NORMAL on pseries,
    /// which has neither (arch/powerpc/Kconfig in v5.5-rc5 and 6.1-rc6: ZONE_DMA only
    /// `if PPC_BOOK3E_64`; no ZONE_DMA32 on powerpc).
    pub fn zone_zero(&self) -> ZoneType {
        match self.arch {
            Arch::Ppc64 => ZoneType::Normal,
            Arch::Arm64 if self.version == KernelVersion::V5_4 => ZoneType::Dma32,
            _ => ZoneType::Dma,
        }
    }

    /// Human-readable name, e.g. "5.5+debug".
    pub fn name(&self) -> String {
        let mut s = self.version.name().to_string();
        if self.debug_vm && self.debug_vm_pgflags {
            s.push_str("+debug");
        } else if self.debug_vm {
            s.push_str("+debug_vm");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_versions() {
        let p = KernelProfile::parse("5.5.10+debug", Arch::X86_64).unwrap();
        assert_eq!(p.version, KernelVersion::V5_5);
        assert!(p.debug_vm && p.debug_vm_pgflags && p.memory_hotremove);
        assert!(p.removable_scans());
        let p = KernelProfile::parse("5.6", Arch::X86_64).unwrap();
        assert!(!p.removable_scans());
        assert_eq!(
            KernelProfile::parse("5.6-rc7", Arch::X86_64)
                .unwrap()
                .version,
            KernelVersion::V5_6Rc
        );
        assert!(
            !KernelProfile::parse("5.5", Arch::Arm64)
                .unwrap()
                .memory_hotremove
        );
        assert!(
            KernelProfile::parse("6.1", Arch::Arm64)
                .unwrap()
                .memory_hotremove
        );
        let p = KernelProfile::parse("5.4.59+debug", Arch::X86_64).unwrap();
        assert_eq!(p.version, KernelVersion::V5_4);
        assert!(p.removable_scans() && !p.has_memory_holes_check());
        assert!(KernelProfile::parse("5.5", Arch::X86_64)
            .unwrap()
            .has_memory_holes_check());
        for bad in ["5.7", "4.19", "5.5.x", "5.6-rc9", "banana", "5.5.14"] {
            assert!(KernelProfile::parse(bad, Arch::X86_64).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_uname_release_strings() {
        let p = KernelProfile::parse("5.5.10-200.fc31.x86_64+debug", Arch::X86_64).unwrap();
        assert_eq!(p.version, KernelVersion::V5_5);
        assert!(p.debug_vm);
        let p = KernelProfile::parse("6.1.0-18-amd64", Arch::X86_64).unwrap();
        assert_eq!(p.version, KernelVersion::V6_1);
        assert!(!p.debug_vm);
        let p = KernelProfile::parse("5.4.59", Arch::X86_64).unwrap();
        assert_eq!(p.version, KernelVersion::V5_4);
        let p = KernelProfile::parse("5.6.0-rc7-1-default", Arch::X86_64);
        assert!(p.is_err()); // "5.6.0-rc7": a sub-level and an rc: not a form kernels use
        assert_eq!(
            KernelProfile::parse("5.6-rc3-gabcdef", Arch::X86_64)
                .unwrap()
                .version,
            KernelVersion::V5_6Rc
        );
        for bad in ["5.10.0-28-amd64", "6.18.44", "5.5.16-200.fc31.x86_64"] {
            let e = KernelProfile::parse(bad, Arch::X86_64).unwrap_err();
            assert!(format!("{e}").contains(bad), "{bad}: {e}");
        }
    }
}
