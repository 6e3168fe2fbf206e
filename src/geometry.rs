//! Page, section, pageblock and memory-block sizes per architecture (v5.5 constants,
//! kernel-semantics.md section 1), each overridable, validated as the kernel would need them.

use crate::error::{Error, Result};
use crate::kernel::profile::KernelVersion;

/// The architectures memscan models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Arm64,
    Ppc64,
    S390x,
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::X86_64, Arch::Arm64, Arch::Ppc64, Arch::S390x];

    /// Names accepted for each arch besides its canonical one, as `uname -m`, Debian and
    /// the kernel's own arch directories spell them: the one home of the aliases.
    pub const ALIASES: [(&'static str, Arch); 7] = [
        ("x86-64", Arch::X86_64),
        ("amd64", Arch::X86_64),
        ("aarch64", Arch::Arm64),
        ("ppc64le", Arch::Ppc64),
        ("powerpc", Arch::Ppc64),
        ("pseries", Arch::Ppc64),
        ("s390", Arch::S390x),
    ];

    /// Parse an arch name (canonical or an alias, any case).
    pub fn parse(name: &str) -> Result<Arch> {
        let lower = name.to_ascii_lowercase();
        Self::ALL
            .iter()
            .map(|&a| (a.name(), a))
            .chain(Self::ALIASES)
            .find(|(n, _)| *n == lower)
            .map(|(_, a)| a)
            .ok_or_else(|| {
                Error::Geometry(format!(
                    "unknown arch {lower:?} (known: {})",
                    Self::ALL.map(Arch::name).join(", ")
                ))
            })
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
            Arch::Ppc64 => "ppc64",
            Arch::S390x => "s390x",
        }
    }
}

/// Sizes that shape the memmap. Orders and shifts are in the kernel's sense:
/// `max_order` is exclusive (buddy orders 0..max_order-1), as in v5.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub arch: Arch,
    pub page_shift: u32,
    pub section_size_bits: u32,
    pub pageblock_order: u32,
    pub max_order: u32,
    pub block_size: u64,
}

/// Sizes a caller may override; `None` takes the arch default.
#[derive(Debug, Clone, Copy, Default)]
pub struct GeometryOverrides {
    pub page_shift: Option<u32>,
    pub section_size_bits: Option<u32>,
    pub pageblock_order: Option<u32>,
    pub max_order: Option<u32>,
    pub block_size: Option<u64>,
    /// The kernel whose defaults apply where they changed between versions (arm64 section
    /// sizes); `None` takes v5.5's, the seed's kernel.
    pub kernel: Option<KernelVersion>,
}

impl GeometryOverrides {
    /// The keys a layout's `geometry` table may hold.
    pub const KEYS: [&'static str; 5] = [
        "page_shift",
        "section_size_bits",
        "pageblock_order",
        "max_order",
        "block_size",
    ];

    /// Overrides from `(key, value)` pairs (a layout's `geometry` table); an unknown key or
    /// a shift that does not fit is refused.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, u64)>,
        kernel: Option<KernelVersion>,
    ) -> Result<GeometryOverrides> {
        let mut ov = GeometryOverrides {
            kernel,
            ..GeometryOverrides::default()
        };
        for (key, value) in pairs {
            let shift = || {
                u32::try_from(value)
                    .map_err(|_| Error::Geometry(format!("geometry {key} = {value} is too large")))
            };
            match key {
                "page_shift" => ov.page_shift = Some(shift()?),
                "section_size_bits" => ov.section_size_bits = Some(shift()?),
                "pageblock_order" => ov.pageblock_order = Some(shift()?),
                "max_order" => ov.max_order = Some(shift()?),
                "block_size" => ov.block_size = Some(value),
                _ => {
                    return Err(Error::Geometry(format!(
                        "unknown geometry key {key:?} (known: {})",
                        Self::KEYS.join(", ")
                    )))
                }
            }
        }
        Ok(ov)
    }

    /// The geometry's values under the same keys (what `default_geometry` returns).
    pub fn values_of(g: &Geometry) -> [(&'static str, u64); 5] {
        [
            ("page_shift", u64::from(g.page_shift)),
            ("section_size_bits", u64::from(g.section_size_bits)),
            ("pageblock_order", u64::from(g.pageblock_order)),
            ("max_order", u64::from(g.max_order)),
            ("block_size", g.block_size),
        ]
    }
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// x86_64 `probe_memory_block_size()` (arch/x86/mm/init_64.c, v4.17..v5.8 form):
/// below 64 GiB of boot memory 128 MiB; else the first of 2G, 1G, 512M, 256M dividing the
/// end of boot memory; else 128 MiB. (`is_uv` selects the UV rule: always 2 GiB.)
pub fn x86_probe_memory_block_size(boot_mem_end: u64, is_uv: bool) -> u64 {
    if is_uv {
        return 2 * GIB;
    }
    if boot_mem_end < 64 * GIB {
        return 128 * MIB;
    }
    for bz in [2 * GIB, GIB, 512 * MIB, 256 * MIB] {
        if boot_mem_end % bz == 0 {
            return bz;
        }
    }
    128 * MIB
}

impl Geometry {
    /// Arch defaults (v5.5), overridden where asked, then validated. `boot_mem_end` feeds the
    /// x86 block-size probe when no block size is given.
    pub fn for_arch(arch: Arch, ov: GeometryOverrides, boot_mem_end: u64) -> Result<Geometry> {
        // (page_shift, section_size_bits, pageblock_order, max_order) per arch, v5.5.
        let page_shift = ov.page_shift.unwrap_or(match arch {
            Arch::Ppc64 => 16,
            _ => 12,
        });
        // arm64 SECTION_SIZE_BITS (arch/arm64/include/asm/sparsemem.h): 30 in v5.5-rc5; from
        // v5.12 (f0b13ee23241) 27 for 4K and 16K pages and 29 for 64K (read in 6.1-rc6). The
        // memory block is one section there (no memory_block_size_bytes() override).
        let small_sections = ov.kernel.is_some_and(|v| v >= KernelVersion::V6_1);
        let arm64_bits = |small: u32| if small_sections { small } else { 30 };
        let (section_bits, pb_order, max_order, block) = match (arch, page_shift) {
            (Arch::X86_64, _) => (27, 9, 11, 0),
            (Arch::Arm64, 12) => (arm64_bits(27), 9, 11, 1u64 << arm64_bits(27)),
            (Arch::Arm64, 14) => (arm64_bits(27), 11, 12, 1u64 << arm64_bits(27)),
            (Arch::Arm64, 16) => (arm64_bits(29), 13, 14, 1u64 << arm64_bits(29)),
            (Arch::Arm64, p) => {
                return Err(Error::Geometry(format!(
                    "arm64 supports 4K, 16K and 64K pages, not 2^{p} bytes"
                )))
            }
            // pseries, hash MMU with 16M huge pages: pageblock = one 16 MiB section [R/U].
            (Arch::Ppc64, _) => (24, 8, 9, 256 * MIB),
            (Arch::S390x, _) => (28, 8, 11, 256 * MIB),
        };
        let section_size_bits = ov.section_size_bits.unwrap_or(section_bits);
        let block_size = match ov.block_size {
            Some(b) => b,
            None if block != 0 => block,
            None => x86_probe_memory_block_size(boot_mem_end, false),
        };
        let g = Geometry {
            arch,
            page_shift,
            section_size_bits,
            pageblock_order: ov.pageblock_order.unwrap_or(pb_order),
            max_order: ov.max_order.unwrap_or(max_order),
            block_size,
        };
        g.validate()?;
        Ok(g)
    }

    /// Refuse combinations no kernel could boot with.
    pub fn validate(&self) -> Result<()> {
        let e = |s: String| Err(Error::Geometry(s));
        if !(12..=16).contains(&self.page_shift) {
            return e(format!(
                "page size 2^{} bytes is not one of 4K..64K",
                self.page_shift
            ));
        }
        if self.section_size_bits <= self.page_shift || self.section_size_bits > 40 {
            return e(format!(
                "section size 2^{} bytes must be larger than a page and at most 1 TiB",
                self.section_size_bits
            ));
        }
        if self.max_order < 1 || self.max_order > 16 {
            return e(format!(
                "MAX_ORDER {} out of range 1..=16 (it is exclusive, as in v5.5)",
                self.max_order
            ));
        }
        if self.pageblock_order > self.section_size_bits - self.page_shift {
            return e(format!(
                "pageblock order {} makes a pageblock larger than a section ({} pages): a section must be a whole number of pageblocks",
                self.pageblock_order,
                self.pages_per_section()
            ));
        }
        if self.max_order - 1 > self.section_size_bits - self.page_shift {
            return e(format!(
                "MAX_ORDER {} makes the largest buddy larger than a section",
                self.max_order
            ));
        }
        if self.pageblock_order > 15 {
            return e(format!(
                "pageblock order {} too large",
                self.pageblock_order
            ));
        }
        if !self.block_size.is_power_of_two() {
            return e(format!(
                "memory block size {:#x} is not a power of two",
                self.block_size
            ));
        }
        if self.block_size > 1 << 40 {
            return e(format!(
                "memory block size {:#x} is larger than 1 TiB: no kernel makes memory \
                 blocks that large",
                self.block_size
            ));
        }
        if self.block_size < self.section_size() {
            return e(format!(
                "memory block size {:#x} is smaller than a section ({:#x})",
                self.block_size,
                self.section_size()
            ));
        }
        Ok(())
    }

    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }
    pub fn section_size(&self) -> u64 {
        1 << self.section_size_bits
    }
    /// `PAGES_PER_SECTION`.
    pub fn pages_per_section(&self) -> u64 {
        1 << (self.section_size_bits - self.page_shift)
    }
    /// log2 of `PAGES_PER_SECTION` (`PFN_SECTION_SHIFT`).
    pub fn pfn_section_shift(&self) -> u32 {
        self.section_size_bits - self.page_shift
    }
    /// `pageblock_nr_pages`.
    pub fn pageblock_nr_pages(&self) -> u64 {
        1 << self.pageblock_order
    }
    /// `MAX_ORDER_NR_PAGES` = 1 << (MAX_ORDER - 1).
    pub fn max_order_nr_pages(&self) -> u64 {
        1 << (self.max_order - 1)
    }
    /// `sections_per_block`.
    pub fn sections_per_block(&self) -> u64 {
        self.block_size >> self.section_size_bits
    }
    pub fn pages_per_block(&self) -> u64 {
        self.block_size >> self.page_shift
    }
    pub fn pfn_to_section(&self, pfn: u64) -> u64 {
        pfn >> self.pfn_section_shift()
    }
    pub fn section_to_pfn(&self, nr: u64) -> u64 {
        nr << self.pfn_section_shift()
    }
    pub fn pfn_to_block(&self, pfn: u64) -> u64 {
        pfn / self.pages_per_block()
    }
    pub fn block_to_pfn(&self, block: u64) -> u64 {
        block * self.pages_per_block()
    }
    pub fn pfn_to_phys(&self, pfn: u64) -> u64 {
        pfn << self.page_shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_parse_to_their_arch_in_any_case() {
        for (alias, arch) in Arch::ALIASES {
            assert_eq!(Arch::parse(&alias.to_ascii_uppercase()).unwrap(), arch);
        }
        for a in Arch::ALL {
            assert_eq!(Arch::parse(a.name()).unwrap(), a);
        }
        assert!(Arch::parse("sparc").is_err());
    }

    #[test]
    fn overrides_from_pairs_take_known_keys_and_refuse_others() {
        let ov =
            GeometryOverrides::from_pairs([("pageblock_order", 10), ("block_size", 1 << 30)], None)
                .unwrap();
        assert_eq!(ov.pageblock_order, Some(10));
        assert_eq!(ov.block_size, Some(1 << 30));
        assert_eq!(ov.page_shift, None);
        let e = GeometryOverrides::from_pairs([("pageblock", 9)], None).unwrap_err();
        assert!(e.to_string().contains("unknown geometry key"), "{e}");
        let e = GeometryOverrides::from_pairs([("page_shift", u64::MAX)], None).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let g = Geometry::for_arch(Arch::X86_64, GeometryOverrides::default(), 0).unwrap();
        let back = GeometryOverrides::from_pairs(GeometryOverrides::values_of(&g), None).unwrap();
        assert_eq!(Geometry::for_arch(Arch::X86_64, back, 0).unwrap(), g);
    }

    #[test]
    fn x86_defaults() {
        let g = Geometry::for_arch(
            Arch::X86_64,
            GeometryOverrides {
                block_size: Some(2 * GIB),
                ..Default::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(g.pages_per_section(), 32768);
        assert_eq!(g.pageblock_nr_pages(), 512);
        assert_eq!(g.sections_per_block(), 16);
        assert_eq!(g.max_order_nr_pages(), 1024);
    }

    #[test]
    fn probe_rule() {
        assert_eq!(x86_probe_memory_block_size(16 * GIB, false), 128 * MIB);
        assert_eq!(x86_probe_memory_block_size(0x30_4000_0000, false), GIB);
        assert_eq!(x86_probe_memory_block_size(256 * GIB, false), 2 * GIB);
        assert_eq!(
            x86_probe_memory_block_size(64 * GIB + 128 * MIB, false),
            128 * MIB
        );
        assert_eq!(x86_probe_memory_block_size(GIB, true), 2 * GIB);
    }

    #[test]
    fn refuses_bad_block_sizes() {
        for bs in [3 * GIB, 64 * MIB, 0] {
            let r = Geometry::for_arch(
                Arch::X86_64,
                GeometryOverrides {
                    block_size: Some(bs),
                    ..Default::default()
                },
                0,
            );
            assert!(matches!(r, Err(Error::Geometry(_))), "{bs:#x}");
        }
    }

    #[test]
    fn arm64_page_sizes() {
        for (shift, pb) in [(12, 9), (14, 11), (16, 13)] {
            let g = Geometry::for_arch(
                Arch::Arm64,
                GeometryOverrides {
                    page_shift: Some(shift),
                    ..Default::default()
                },
                0,
            )
            .unwrap();
            assert_eq!(g.pageblock_order, pb);
            assert_eq!(g.block_size, GIB);
            assert_eq!(g.section_size_bits, 30);
        }
        // v5.12+ (6.1-rc6 sparsemem.h): 128 MiB sections for 4K/16K pages, 512 MiB for 64K
        for (shift, bits) in [(12, 27), (14, 27), (16, 29)] {
            let g = Geometry::for_arch(
                Arch::Arm64,
                GeometryOverrides {
                    page_shift: Some(shift),
                    kernel: Some(KernelVersion::V6_1),
                    ..Default::default()
                },
                0,
            )
            .unwrap();
            assert_eq!((g.section_size_bits, g.block_size), (bits, 1 << bits));
        }
        assert!(Geometry::for_arch(
            Arch::Arm64,
            GeometryOverrides {
                page_shift: Some(13),
                ..Default::default()
            },
            0
        )
        .is_err());
    }
}
