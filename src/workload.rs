//! The workload model: seeded, deterministic page states for online RAM. The only writer of
//! page states besides hand edits (`set_pages`). Each pageblock draws from its own generator
//! seeded by (seed, pfn), so results do not depend on thread count or machine size elsewhere.

use crate::error::{Error, Result};
use crate::page::{kind, kind_of, make, MigrateType, ZoneType, HUGETLB_FREE};
use crate::sections::{fill_compact, Compact, PageStore};
use crate::topology::Machine;
use rayon::prelude::*;

/// Knobs of the workload. Fractions are of RAM pages unless said otherwise; they are
/// targets met in expectation (read the realised counts with `kind_counts`).
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Free pages.
    pub free: f64,
    /// Share of the free memory held as whole free pageblocks (merged up to MAX_ORDER-1);
    /// the rest is fragments inside used pageblocks.
    pub free_whole: f64,
    /// Relative weights of fragment orders 0..pageblock_order-1.
    pub free_orders: Vec<f64>,
    /// Unmovable kernel pages (slab, page tables, ...).
    pub unmovable: f64,
    /// Share of unmovable pages that sit in MIGRATE_UNMOVABLE pageblocks; the rest are
    /// fallback pollution of movable pageblocks.
    pub unmovable_clustered: f64,
    /// Share of movable pageblocks that carry pollution (at least one unmovable page).
    pub polluted_pageblocks: f64,
    /// Share of used, non-kernel pages that are non-LRU movable (`__PageMovable`).
    pub movable: f64,
    /// Share of LRU memory in transparent huge pages (pageblock-sized on x86).
    pub thp: f64,
    /// Share of LRU pages with a long-term pin.
    pub pinned: f64,
    /// hugetlb pages (share of RAM), their hstate index, and the share of them free in the pool.
    pub hugetlb: f64,
    pub hugetlb_hstate: u8,
    pub hugetlb_free: f64,
    /// Pages of a CMA area (MIGRATE_CMA pageblocks) at the top of the first node's kernel memory.
    pub cma_pages: u64,
    /// Pages with PageHWPoison (not in the buddy) and PG_offline balloon pages.
    pub hwpoison_pages: u64,
    pub balloon_pages: u64,
    /// `movable_node`: memory of nodes other than 0 is ZONE_MOVABLE (on a one-node machine,
    /// the upper half of its Normal memory, as `movablecore=50%` would do).
    pub movable_node: bool,
    /// How unmovable pageblocks are placed: 1 spreads them at random over RAM; 0 puts them at
    /// the lowest addresses (where boot and early kernel allocations cluster); in between,
    /// that share of pageblocks decides at random.
    pub unmovable_spread: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            free: 0.3,
            free_whole: 0.5,
            free_orders: vec![4.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            unmovable: 0.06,
            unmovable_clustered: 0.8,
            polluted_pageblocks: 0.1,
            movable: 0.02,
            thp: 0.1,
            pinned: 0.0,
            hugetlb: 0.0,
            hugetlb_hstate: 0,
            hugetlb_free: 0.0,
            cma_pages: 0,
            hwpoison_pages: 0,
            balloon_pages: 0,
            movable_node: false,
            unmovable_spread: 1.0,
        }
    }
}

/// How a workload knob is typed: a fraction in [0, 1], a page count, a 4-bit-free index, a
/// list of weights, or a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnobKind {
    Fraction,
    Count,
    Index,
    Weights,
    Flag,
}

impl KnobKind {
    /// The Python type a knob of this kind takes (the vocabulary's name for it).
    pub fn name(self) -> &'static str {
        match self {
            KnobKind::Fraction => "fraction",
            KnobKind::Count => "count",
            KnobKind::Index => "index",
            KnobKind::Weights => "weights",
            KnobKind::Flag => "flag",
        }
    }
}

/// A knob's value, as the binding hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum KnobValue {
    Number(f64),
    Count(u64),
    Weights(Vec<f64>),
    Flag(bool),
}

/// One workload knob: its name, kind and where it lives in [`Workload`]. [`KNOBS`] is the one
/// home of the knob names, their order and (through `Workload::default()`) their defaults;
/// Python's `memscan.Workload` and the binding read them from here.
pub struct Knob {
    pub name: &'static str,
    pub kind: KnobKind,
    pub get: fn(&Workload) -> KnobValue,
    set: fn(&mut Workload, KnobValue),
}

macro_rules! knob {
    ($name:ident, Fraction) => {
        Knob {
            name: stringify!($name),
            kind: KnobKind::Fraction,
            get: |w| KnobValue::Number(w.$name),
            set: |w, v| {
                if let KnobValue::Number(x) = v {
                    w.$name = x;
                }
            },
        }
    };
    ($name:ident, Count) => {
        Knob {
            name: stringify!($name),
            kind: KnobKind::Count,
            get: |w| KnobValue::Count(w.$name),
            set: |w, v| {
                if let KnobValue::Count(x) = v {
                    w.$name = x;
                }
            },
        }
    };
}

/// Every knob of [`Workload`], in declaration order.
pub const KNOBS: [Knob; 17] = [
    knob!(free, Fraction),
    knob!(free_whole, Fraction),
    Knob {
        name: "free_orders",
        kind: KnobKind::Weights,
        get: |w| KnobValue::Weights(w.free_orders.clone()),
        set: |w, v| {
            if let KnobValue::Weights(x) = v {
                w.free_orders = x;
            }
        },
    },
    knob!(unmovable, Fraction),
    knob!(unmovable_clustered, Fraction),
    knob!(polluted_pageblocks, Fraction),
    knob!(movable, Fraction),
    knob!(thp, Fraction),
    knob!(pinned, Fraction),
    knob!(hugetlb, Fraction),
    Knob {
        name: "hugetlb_hstate",
        kind: KnobKind::Index,
        get: |w| KnobValue::Count(u64::from(w.hugetlb_hstate)),
        set: |w, v| {
            if let KnobValue::Count(x) = v {
                w.hugetlb_hstate = u8::try_from(x).unwrap_or(u8::MAX);
            }
        },
    },
    knob!(hugetlb_free, Fraction),
    knob!(cma_pages, Count),
    knob!(hwpoison_pages, Count),
    knob!(balloon_pages, Count),
    Knob {
        name: "movable_node",
        kind: KnobKind::Flag,
        get: |w| KnobValue::Flag(w.movable_node),
        set: |w, v| {
            if let KnobValue::Flag(x) = v {
                w.movable_node = x;
            }
        },
    },
    knob!(unmovable_spread, Fraction),
];

impl Workload {
    /// The knob called `name`, or an error naming the known ones.
    pub fn knob(name: &str) -> Result<&'static Knob> {
        KNOBS.iter().find(|k| k.name == name).ok_or_else(|| {
            Error::Argument(format!(
                "workload {name}: unknown knob (known: {})",
                KNOBS.map(|k| k.name).join(", ")
            ))
        })
    }

    /// Set one knob. The value must be of the knob's kind (the binding converts by kind).
    pub fn set_knob(&mut self, name: &str, value: KnobValue) -> Result<()> {
        let k = Self::knob(name)?;
        let fits = matches!(
            (k.kind, &value),
            (KnobKind::Fraction, KnobValue::Number(_))
                | (KnobKind::Count | KnobKind::Index, KnobValue::Count(_))
                | (KnobKind::Weights, KnobValue::Weights(_))
                | (KnobKind::Flag, KnobValue::Flag(_))
        );
        if !fits {
            return Err(Error::Argument(format!(
                "workload {name}: expected a {} value, got {value:?}",
                k.kind.name()
            )));
        }
        (k.set)(self, value);
        Ok(())
    }
}

/// splitmix64: a tiny, well-mixed generator; enough for layouts, and stable across versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// SplitMix64 (Steele, Lea, Flood 2014): the state advances by this odd constant per draw.
const RNG_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function of a state.
#[inline]
fn rng_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(RNG_STEP));
        r.next_u64();
        r
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(RNG_STEP);
        rng_mix(self.0)
    }
    /// Uniform in [0, 1): `bits53() / 2^53`.
    pub fn f64(&mut self) -> f64 {
        self.bits53() as f64 / (1u64 << 53) as f64
    }
    /// The 53 bits [`Rng::f64`] scales, for comparison against a [`threshold`].
    pub fn bits53(&mut self) -> u64 {
        self.next_u64() >> 11
    }
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

fn check_fraction(name: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) || v.is_nan() {
        return Err(Error::Argument(format!(
            "workload {name} = {v} is not a fraction in [0, 1]"
        )));
    }
    Ok(())
}

/// Per-pageblock class probabilities derived from the knobs.
#[derive(Debug, Clone)]
struct Plan {
    p_free: f64,
    p_unmov: f64,
    p_thp: f64,
    p_huge: f64,
    /// In mixed pageblocks: unmovable pages per polluted pageblock (mean) and pollution chance.
    pollute_p: f64,
    pollute_n: f64,
    hugetlb_free: f64,
    /// Mixed pageblocks, per alignment of the next slot (trailing zero bits of its position,
    /// capped at the pageblock order): see [`Slot`].
    slots: Vec<Slot>,
}

/// One uniform draw `r` per slot of a mixed pageblock decides everything about it:
/// `r < cum[o]` for the first order `o` makes it a free fragment of order min(o, align);
/// otherwise it is one used page, MOVABLE below `movable_below`, PINNED below `pinned_below`,
/// else LRU (the used share of [0, 1) split in the knobs' proportions).
///
/// The fill loop compares the draw's 53 integer bits `k` (r = k / 2^53) against integer
/// thresholds instead ([`threshold`]): `r < c` exactly when `k < threshold(c)`, so the pages
/// are the same, with no float conversion.
#[derive(Debug, Clone)]
struct Slot {
    /// threshold() of the running sums over fragment orders `o` of P(order o drawn) x
    /// P(a slot of order min(o, align) is free); the last is the chance the slot is free.
    /// Non-decreasing, so the order drawn is the count of sums `k` reaches.
    cum: Vec<u64>,
    /// The last of `cum`: below it the slot is free.
    free: u64,
    movable_below: u64,
    pinned_below: u64,
}

/// The integer form of a probability threshold: `k < threshold(c)` exactly when
/// `k as f64 / 2^53 < c`, for every 53-bit `k` (both sides scale by 2^53 exactly, and for
/// an integer `k`, `k < x` is `k < ceil(x)`).
fn threshold(c: f64) -> u64 {
    if c > 0.0 {
        // `as` saturates: thresholds past 1 (rounding of running sums) stay above every k.
        (c * (1u64 << 53) as f64).ceil() as u64
    } else {
        0
    }
}

/// Fraction of pages in an unmovable pageblock that are unmovable (the rest are fragments).
const UNMOVABLE_DENSITY: f64 = 0.9;

impl Workload {
    pub fn validate(&self, m: &Machine) -> Result<()> {
        for k in &KNOBS {
            if let KnobValue::Number(v) = (k.get)(self) {
                check_fraction(k.name, v)?;
            }
        }
        if self.free + self.unmovable + self.hugetlb > 1.0 + 1e-9 {
            return Err(Error::Argument(format!(
                "workload free + unmovable + hugetlb = {} exceeds 1",
                self.free + self.unmovable + self.hugetlb
            )));
        }
        if self
            .free_orders
            .iter()
            .any(|w| w.is_nan() || *w < 0.0 || !w.is_finite())
        {
            return Err(Error::Argument(
                "workload free_orders must be finite non-negative weights".into(),
            ));
        }
        if self.hugetlb > 0.0 && (self.hugetlb_hstate as usize) >= m.hstates.len() {
            return Err(Error::Argument(format!(
                "workload hugetlb_hstate {} but the machine has {} hugetlb sizes",
                self.hugetlb_hstate,
                m.hstates.len()
            )));
        }
        Ok(())
    }

    fn plan(&self, m: &Machine) -> Plan {
        let pb_order = m.geometry.pageblock_order;
        let huge_small =
            self.hugetlb > 0.0 && m.hstates[self.hugetlb_hstate as usize].order <= pb_order;
        let p_huge = if huge_small { self.hugetlb } else { 0.0 };
        let p_free = self.free * self.free_whole;
        let clustered = self.unmovable * self.unmovable_clustered;
        let p_unmov = (clustered / UNMOVABLE_DENSITY).min(1.0);
        let user = (1.0 - self.free - self.unmovable - self.hugetlb).max(0.0);
        let lru = user * (1.0 - self.movable);
        let p_thp = lru * self.thp;
        let p_mixed = (1.0 - p_free - p_unmov - p_thp - p_huge).max(1e-12);
        let frag_total =
            (self.free * (1.0 - self.free_whole) - p_unmov * (1.0 - UNMOVABLE_DENSITY)).max(0.0);
        let pollution = (self.unmovable - clustered).max(0.0);
        let pollute_p = if pollution > 0.0 {
            self.polluted_pageblocks.max(1e-6)
        } else {
            0.0
        };
        let pbn = m.geometry.pageblock_nr_pages() as f64;
        let pollute_n = if pollute_p > 0.0 {
            (pollution / p_mixed * pbn / pollute_p).max(1.0)
        } else {
            0.0
        };
        let n = (pb_order as usize).min(self.free_orders.len());
        let total: f64 = self.free_orders[..n].iter().sum();
        // order weights, normalised (no weights: every fragment is order 0)
        let weights: Vec<f64> = if total > 0.0 {
            self.free_orders[..n].iter().map(|w| w / total).collect()
        } else {
            vec![1.0]
        };
        let frag = (frag_total / p_mixed).min(1.0);
        // A slot of order o is free with chance q / (q + (1-q) 2^o): free pages are a share q
        // of each slot's pages on average.
        let free_chance = |o: u32| {
            if frag > 0.0 {
                frag / (frag + (1.0 - frag) * f64::from(1u32 << o))
            } else {
                0.0
            }
        };
        let slots = (0..=pb_order)
            .map(|align| {
                let cum: Vec<f64> = weights
                    .iter()
                    .enumerate()
                    .scan(0.0, |acc, (o, p)| {
                        *acc += p * free_chance((o as u32).min(align));
                        Some(*acc)
                    })
                    .collect();
                let free = cum[cum.len() - 1];
                let used = 1.0 - free;
                Slot {
                    cum: cum.iter().map(|&c| threshold(c)).collect(),
                    free: threshold(free),
                    movable_below: threshold(free + used * self.movable),
                    pinned_below: threshold(
                        free + used * (self.movable + (1.0 - self.movable) * self.pinned),
                    ),
                }
            })
            .collect();
        Plan {
            p_free,
            p_unmov,
            p_thp,
            p_huge,
            pollute_p,
            pollute_n,
            hugetlb_free: self.hugetlb_free,
            slots,
        }
    }
}

/// An allocated order-0 page (not free, not part of a compound page): the only pages the
/// workload may turn into another allocated kind without breaking a buddy block or compound.
#[inline]
fn is_allocated_base_page(b: u8) -> bool {
    matches!(kind_of(b), kind::LRU | kind::MOVABLE | kind::UNMOVABLE)
}

/// Whether a page byte holds RAM the workload may rewrite (not reserved, hole, device or
/// uninitialised memmap).
#[inline]
pub fn is_ram_page(b: u8) -> bool {
    kind_of(b) < kind::RESERVED
}

/// Whether every byte of `pb` holds RAM ([`is_ram_page`]), eight bytes at a time: a byte is
/// not RAM when its kind has both bits 2 and 3 set (kinds 12-15, RESERVED and up).
fn all_ram_pages(pb: &[u8]) -> bool {
    const _: () = assert!(kind::RESERVED == 0b1100 && kind::NOMEMMAP == 0b1111);
    const BIT2: u64 = u64::from_ne_bytes([0b100; 8]);
    let (words, rest) = pb.split_at(pb.len() - pb.len() % 8);
    let mut acc = 0u64;
    for w in words.chunks_exact(8) {
        let w = u64::from_ne_bytes(w.try_into().unwrap());
        // bit 2 of a byte ends up set exactly where bits 2 and 3 of that byte are set
        acc |= w & (w >> 1) & BIT2;
    }
    acc == 0 && rest.iter().all(|&x| is_ram_page(x))
}

fn write_buddy(bytes: &mut [u8], pos: usize, order: u32) {
    bytes[pos] = make(kind::BUDDY, order as u8);
    bytes[pos + 1..pos + (1 << order)].fill(kind::FREE);
}

/// Fill one pageblock that is entirely RAM. Returns its migratetype.
fn fill_pageblock(
    bytes: &mut [u8],
    rng: &mut Rng,
    plan: &Plan,
    w: &Workload,
    m: &Machine,
    zone: ZoneType,
    rank: f64,
) -> MigrateType {
    let g = &m.geometry;
    let pb_order = g.pageblock_order;
    let nr = bytes.len();
    let movable_zone = zone == ZoneType::Movable;
    let r = rng.f64();
    let mut acc = plan.p_free;
    if r < acc {
        write_buddy(bytes, 0, pb_order);
        return MigrateType::Movable;
    }
    acc += plan.p_huge;
    if r < acc {
        let hs = w.hugetlb_hstate;
        let order = m.hstates[hs as usize].order;
        for pos in (0..nr).step_by(1 << order) {
            let free = if rng.f64() < plan.hugetlb_free {
                HUGETLB_FREE
            } else {
                0
            };
            bytes[pos] = make(kind::HUGETLB_HEAD, hs | free);
            bytes[pos + 1..pos + (1 << order)].fill(make(kind::HUGETLB_TAIL, hs | free));
        }
        return MigrateType::Movable;
    }
    // Placement of unmovable pageblocks: at random, or (for a 1 - unmovable_spread share of
    // pageblocks) by address rank, lowest first.
    let by_rank = w.unmovable_spread < 1.0 && rng.f64() >= w.unmovable_spread;
    let unmovable_here = if by_rank {
        rank < plan.p_unmov
    } else {
        acc += plan.p_unmov;
        r < acc
    };
    if unmovable_here && !movable_zone {
        // The free pages among them are order-0 buddies.
        let dense = threshold(UNMOVABLE_DENSITY);
        let free0 = make(kind::BUDDY, 0);
        for b in bytes.iter_mut() {
            *b = if rng.bits53() < dense {
                kind::UNMOVABLE
            } else {
                free0
            };
        }
        return MigrateType::Unmovable;
    }
    acc += plan.p_thp;
    if r < acc && g.max_order > pb_order {
        bytes[0] = make(kind::THP_HEAD, pb_order as u8);
        bytes[1..].fill(kind::THP_TAIL);
        return MigrateType::Movable;
    }
    // Mixed movable pageblock: fragments and user pages. A slot is a free fragment of
    // 2^order pages or one used page.
    let mut pos = 0usize;
    while pos < nr {
        let align = if pos == 0 {
            pb_order
        } else {
            pos.trailing_zeros()
        };
        let slot = &plan.slots[align as usize];
        let k = rng.bits53();
        if k < slot.free {
            // The order drawn is the first whose running sum exceeds the draw, capped at the
            // alignment: the count of sums the draw reaches among the first `align` (the
            // sums do not decrease, so those reached are a prefix). Odd slots need none.
            let order = slot.cum[..(align as usize).min(slot.cum.len())]
                .iter()
                .map(|&c| u32::from(k >= c))
                .sum::<u32>();
            write_buddy(bytes, pos, order);
            pos += 1 << order;
        } else {
            bytes[pos] = if k < slot.movable_below {
                kind::MOVABLE
            } else if k < slot.pinned_below {
                kind::PINNED
            } else {
                kind::LRU
            };
            pos += 1;
        }
    }
    if !movable_zone && plan.pollute_p > 0.0 && rng.f64() < plan.pollute_p {
        // Geometric-ish count around the mean, at random positions (fallback allocations).
        let n = (plan.pollute_n * (0.5 + rng.f64())).round().max(1.0) as usize;
        // Only allocated base pages are replaced: free buddy blocks stay whole.
        for _ in 0..n.min(nr) {
            let p = rng.below(nr as u64) as usize;
            if is_allocated_base_page(bytes[p]) {
                bytes[p] = kind::UNMOVABLE;
            }
        }
    }
    MigrateType::Movable
}

/// Rewrite the pages of online RAM with `w`, seeded by `seed`.
pub fn populate(m: &mut Machine, w: &Workload, seed: u64) -> Result<()> {
    populate_cancellable(m, w, seed, &crate::control::Control::new(), None)
}

/// The blocks of `only` (any order, repeats allowed) as populate takes them: sorted, each an
/// existing block with online RAM, or an error naming the first that is not.
pub fn populate_subset(m: &Machine, only: &[u64]) -> Result<Vec<u64>> {
    let mut v = only.to_vec();
    v.sort_unstable();
    v.dedup();
    let fillable = populated_blocks(m);
    for &b in &v {
        if b >= m.store.nr_blocks() {
            return Err(Error::NoSuchBlock {
                block: b,
                why: format!(
                    "populate: the machine has memory blocks 0-{}",
                    m.store.nr_blocks() - 1
                ),
            });
        }
        if fillable.binary_search(&b).is_err() {
            return Err(Error::Argument(format!(
                "populate: memory block {b} has no online RAM to fill (offline, a hole or \
                 ZONE_DEVICE)"
            )));
        }
    }
    Ok(v)
}

/// The blocks populate makes dense: those with online RAM sections.
fn populated_blocks(m: &Machine) -> Vec<u64> {
    let spb = m.geometry.sections_per_block();
    (0..m.store.nr_blocks())
        .filter(|&b| {
            (b * spb..(b + 1) * spb).any(|s| {
                let meta = m.store.section_meta(s);
                meta.online() && !meta.device()
            })
        })
        .collect()
}

/// Bytes `populate` would allocate on `m` (page bytes of the blocks it makes dense that are
/// not dense yet), known before anything is allocated.
pub fn populate_bytes(m: &Machine, only: Option<&[u64]>) -> Result<u64> {
    let per = m.geometry.pages_per_block();
    let todo = match only {
        Some(o) => populate_subset(m, o)?,
        None => populated_blocks(m),
    };
    Ok(todo
        .into_iter()
        .filter(|&b| !m.store.is_dense(b))
        .map(|_| per)
        .sum())
}

/// `populate`, stopping with `Error::Interrupted` soon after `ctl` is cancelled (checked per
/// block; the machine is then partly populated), advancing `ctl` by one per block filled.
/// With `only`, just those blocks are filled (a sparse machine: the rest keep their pages);
/// a block's pages depend on the seed and its pfns alone, so a block filled alone gets the
/// pages it gets in a full populate, but for the machine-wide placements (gigantic pages,
/// CMA, hwpoison and balloon pages), which draw among the chosen blocks only.
pub fn populate_cancellable(
    m: &mut Machine,
    w: &Workload,
    seed: u64,
    ctl: &crate::control::Control,
    only: Option<&[u64]>,
) -> Result<()> {
    w.validate(m)?;
    let todo = match only {
        Some(o) => populate_subset(m, o)?,
        None => populated_blocks(m),
    };
    if w.movable_node {
        apply_movable_node(m);
        crate::watermark::refresh_min_free(m);
    }
    let g = m.geometry;
    let plan = w.plan(m);
    let spb = g.sections_per_block();
    let pps = g.pages_per_section() as usize;
    let pbn = g.pageblock_nr_pages() as usize;
    ctl.set_total(todo.len() as u64);
    // Sections of blocks made dense here whose compact form is all RAM: every page byte of
    // them is written below, so they are allocated zero and not filled first, and their
    // pageblocks need no per-byte check for reserved pages or holes.
    let fresh: Vec<(u64, Compact)> = todo
        .iter()
        .flat_map(|&b| b * spb..(b + 1) * spb)
        .filter_map(|s| {
            let meta = m.store.section_meta(s);
            let how = m.store.section_compact(s)?; // None: dense already
            let ram = match how {
                Compact::Uniform(x) => is_ram_page(x),
                Compact::FreeBlocks(_) => true,
            };
            (meta.online() && !meta.device() && ram).then_some((s, how))
        })
        .collect();
    let fresh_form = |s: u64| {
        fresh
            .binary_search_by_key(&s, |&(x, _)| x)
            .ok()
            .map(|i| fresh[i].1)
    };
    let is_fresh = |s: u64| fresh_form(s).is_some();
    m.store.densify_many_leaving(&todo, &is_fresh)?;
    let mut chunks = m.store.take_chunks();
    let store: &PageStore = &m.store;
    let mref: &Machine = m;
    // address rank of a pfn within online RAM, for unmovable_spread
    let (ram_lo, ram_hi) = {
        let on: Vec<u64> = (0..m.store.nr_sections())
            .filter(|&s| {
                let meta = m.store.section_meta(s);
                meta.online() && !meta.device()
            })
            .collect();
        match (on.first(), on.last()) {
            (Some(&a), Some(&b)) => (g.section_to_pfn(a), g.section_to_pfn(b + 1)),
            _ => (0, 1),
        }
    };
    let results: Vec<(u64, Vec<(usize, MigrateType)>)> = chunks
        .par_blocks_mut()
        .filter(|(b, _)| todo.binary_search(b).is_ok())
        .map(|(b, bytes)| {
            if ctl.cancelled() {
                // left as it was: the sections left zero get their compact bytes back
                for (si, sec_bytes) in bytes.chunks_mut(pps).enumerate() {
                    let s = b * spb + si as u64;
                    if let Some(how) = fresh_form(s) {
                        fill_compact(sec_bytes, how);
                    }
                }
                return (b, Vec::new());
            }
            let base_pfn = g.block_to_pfn(b);
            let mut mts = Vec::new();
            for (si, sec_bytes) in bytes.chunks_mut(pps).enumerate() {
                let sec = b * spb + si as u64;
                let meta = store.section_meta(sec);
                if !meta.online() || meta.device() {
                    continue;
                }
                let all_ram = is_fresh(sec);
                for (pi, pb) in sec_bytes.chunks_mut(pbn).enumerate() {
                    let pfn = base_pfn + (si * pps + pi * pbn) as u64;
                    let mut rng = Rng::new(seed, pfn);
                    let zone = store.pageblock_zone(pfn);
                    if all_ram || all_ram_pages(pb) {
                        let rank =
                            (pfn.saturating_sub(ram_lo)) as f64 / (ram_hi - ram_lo).max(1) as f64;
                        let mt = fill_pageblock(pb, &mut rng, &plan, w, mref, zone, rank);
                        mts.push(((pfn / pbn as u64) as usize, mt));
                    } else {
                        // Partly reserved or holed: per-page draws for the RAM pages only.
                        for x in pb.iter_mut().filter(|x| is_ram_page(**x)) {
                            let r = rng.f64();
                            *x = if r < w.free {
                                make(kind::BUDDY, 0)
                            } else if r < w.free + w.unmovable && zone != ZoneType::Movable {
                                kind::UNMOVABLE
                            } else {
                                kind::LRU
                            };
                        }
                    }
                }
            }
            ctl.advance(1);
            (b, mts)
        })
        .collect();
    m.store.restore_chunks(chunks);
    if ctl.cancelled() {
        return Err(Error::Interrupted);
    }
    for (_, mts) in results {
        for (pb, mt) in mts {
            m.store
                .set_migratetype((pb as u64) << g.pageblock_order, mt);
        }
    }
    merge_free_pageblocks(m, &todo);
    let chosen = |m: &Machine, pfn: u64| todo.binary_search(&m.geometry.pfn_to_block(pfn)).is_ok();
    place_gigantic(m, w, seed, &chosen);
    place_cma(m, w, &chosen);
    place_scattered(m, w.hwpoison_pages, kind::HWPOISON, seed ^ 0x4857, &chosen);
    place_scattered(m, w.balloon_pages, kind::OFFLINE, seed ^ 0x4241, &chosen);
    Ok(())
}

/// Merge aligned runs of whole free pageblocks into buddies of up to MAX_ORDER-1, as the
/// buddy allocator would.
fn merge_free_pageblocks(m: &mut Machine, blocks: &[u64]) {
    let g = m.geometry;
    let pb_order = g.pageblock_order;
    let top = g.max_order - 1;
    if top <= pb_order {
        return;
    }
    let pbn = g.pageblock_nr_pages() as usize;
    let group = 1usize << top;
    let ppb = g.pages_per_block() as usize;
    for &b in blocks {
        let bytes = m.store.block_pages_mut(b);
        for start in (0..ppb).step_by(group.min(ppb)) {
            let end = (start + group).min(ppb);
            let all_free = (start..end)
                .step_by(pbn)
                .all(|p| bytes[p] == make(kind::BUDDY, pb_order as u8));
            if all_free && end - start == group {
                for p in (start..end).step_by(pbn) {
                    bytes[p] = kind::FREE;
                }
                bytes[start] = make(kind::BUDDY, top as u8);
            }
        }
    }
}

fn place_gigantic(
    m: &mut Machine,
    w: &Workload,
    seed: u64,
    chosen: &dyn Fn(&Machine, u64) -> bool,
) {
    if w.hugetlb <= 0.0 {
        return;
    }
    let g = m.geometry;
    let hs = w.hugetlb_hstate;
    let order = m.hstates[hs as usize].order;
    if order <= g.pageblock_order {
        return;
    }
    let n = 1u64 << order;
    let mut pfn = 0;
    while pfn + n <= m.store.max_pfn {
        let mut rng = Rng::new(seed ^ 0x4855_4745, pfn);
        let ok = (pfn..pfn + n)
            .step_by(g.pages_per_section() as usize)
            .all(|p| {
                let meta = m.store.section_meta(g.pfn_to_section(p));
                meta.online() && !meta.device() && chosen(m, p)
            })
            && rng.f64() < w.hugetlb
            && (pfn..pfn + n).all(|p| is_ram_page(m.store.page(p)));
        if ok {
            let free = if rng.f64() < w.hugetlb_free {
                HUGETLB_FREE
            } else {
                0
            };
            m.store
                .set_pages(pfn, 1, make(kind::HUGETLB_HEAD, hs | free));
            m.store
                .set_pages(pfn + 1, n - 1, make(kind::HUGETLB_TAIL, hs | free));
        }
        pfn += n;
    }
}

/// A CMA area: the highest `cma_pages` (rounded to pageblocks) of node 0's kernel memory.
fn place_cma(m: &mut Machine, w: &Workload, chosen: &dyn Fn(&Machine, u64) -> bool) {
    if w.cma_pages == 0 {
        return;
    }
    let g = m.geometry;
    let pbn = g.pageblock_nr_pages();
    let mut left = w.cma_pages.div_ceil(pbn);
    let mut pb = m.store.max_pfn / pbn;
    while left > 0 && pb > 0 {
        pb -= 1;
        let pfn = pb * pbn;
        let meta = m.store.section_meta(g.pfn_to_section(pfn));
        let zone = m.store.pageblock_zone(pfn);
        if meta.online()
            && !meta.device()
            && meta.nid == 0
            && zone == ZoneType::Normal
            && chosen(m, pfn)
        {
            m.store.set_migratetype(pfn, MigrateType::Cma);
            left -= 1;
        }
    }
}

fn place_scattered(
    m: &mut Machine,
    count: u64,
    k: u8,
    seed: u64,
    chosen: &dyn Fn(&Machine, u64) -> bool,
) {
    if count == 0 {
        return;
    }
    let g = m.geometry;
    let online: Vec<u64> = (0..m.store.nr_sections())
        .filter(|&s| {
            let meta = m.store.section_meta(s);
            meta.online() && !meta.device() && chosen(m, g.section_to_pfn(s))
        })
        .collect();
    if online.is_empty() {
        return;
    }
    let mut rng = Rng::new(seed, 0x5ca7);
    let mut placed = 0;
    let mut tries = 0;
    while placed < count && tries < count * 64 {
        tries += 1;
        let sec = online[rng.below(online.len() as u64) as usize];
        let pfn = g.section_to_pfn(sec) + rng.below(g.pages_per_section());
        let b = m.store.page(pfn);
        if is_allocated_base_page(b) {
            m.store.set_pages(pfn, 1, k);
            placed += 1;
        }
    }
}

/// `movable_node`: every pageblock of nodes other than 0 moves to ZONE_MOVABLE (one node:
/// the upper half of its Normal span). Zone spans follow.
pub fn apply_movable_node(m: &mut Machine) {
    let g = m.geometry;
    let pbn = g.pageblock_nr_pages();
    let multi = m.nodes.iter().filter(|n| n.online).count() > 1;
    let mut single_cut = None;
    if !multi {
        if let Some(n) = m.nodes.first() {
            if let Some(s) = n.zones[ZoneType::Normal as usize] {
                let mid = s.start_pfn + (s.end_pfn - s.start_pfn) / 2;
                let align = g.max_order_nr_pages();
                single_cut = Some(mid.div_ceil(align) * align);
            }
        }
    }
    let mut spans: Vec<Option<(u64, u64)>> = vec![None; m.nodes.len()];
    for sec in 0..m.store.nr_sections() {
        let meta = m.store.section_meta(sec);
        if !meta.present() || meta.device() {
            continue;
        }
        let nid = meta.nid as usize;
        for pfn in (g.section_to_pfn(sec)..g.section_to_pfn(sec + 1)).step_by(pbn as usize) {
            if m.store.pageblock_zone(pfn) != ZoneType::Normal {
                continue;
            }
            let to_movable = if multi {
                nid != 0
            } else {
                single_cut.is_some_and(|c| pfn >= c)
            };
            if to_movable {
                m.store.set_pageblock_zone(pfn, ZoneType::Movable);
                let e = spans[nid].get_or_insert((pfn, pfn + pbn));
                e.0 = e.0.min(pfn);
                e.1 = e.1.max(pfn + pbn);
            }
        }
    }
    for (nid, span) in spans.into_iter().enumerate() {
        let Some((s, e)) = span else { continue };
        let node = &mut m.nodes[nid];
        node.zones[ZoneType::Movable as usize] = Some(crate::topology::ZoneSpan {
            start_pfn: s,
            end_pfn: e,
        });
        if let Some(n) = node.zones[ZoneType::Normal as usize] {
            if s <= n.start_pfn {
                node.zones[ZoneType::Normal as usize] = None;
            } else {
                node.zones[ZoneType::Normal as usize] = Some(crate::topology::ZoneSpan {
                    start_pfn: n.start_pfn,
                    end_pfn: s.min(n.end_pfn),
                });
            }
        }
    }
}

/// Count of pages per kind over online RAM sections (index = kind).
pub fn kind_counts(m: &Machine) -> [u64; 16] {
    let g = m.geometry;
    let mut counts = [0u64; 16];
    for sec in 0..m.store.nr_sections() {
        let meta = m.store.section_meta(sec);
        if !meta.present() {
            continue;
        }
        let base = g.section_to_pfn(sec);
        match m.store.run(base, g.pages_per_section() as usize) {
            crate::sections::RunView::Dense(s) => {
                for &b in s {
                    counts[kind_of(b) as usize] += 1;
                }
            }
            v @ crate::sections::RunView::Compact { .. } => {
                for i in 0..v.len() {
                    counts[kind_of(v.get(i)) as usize] += 1;
                }
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integer_threshold_decides_as_the_float_comparison_does() {
        let mut rng = Rng::new(11, 3);
        let mut cs: Vec<f64> = vec![0.0, 1.0, 0.5, 1e-12, 1.0 - 1e-16, 1.0 + 1e-15, 0.1, 0.3];
        cs.extend((0..200).map(|_| rng.f64()));
        for &c in &cs {
            let t = threshold(c);
            // the boundary draws and random ones
            let mut ks: Vec<u64> = [t.saturating_sub(1), t, t + 1, 0, (1 << 53) - 1]
                .into_iter()
                .filter(|&k| k < 1 << 53)
                .collect();
            ks.extend((0..50).map(|_| rng.bits53()));
            for k in ks {
                let r = k as f64 / (1u64 << 53) as f64;
                assert_eq!(k < t, r < c, "k={k} c={c} t={t}");
            }
        }
    }

    #[test]
    fn a_populate_cancelled_before_it_starts_leaves_every_page_as_it_was() {
        use crate::kernel::testutil::{block, machine, BLOCK};
        let mut m = machine(4, &[]);
        let before: Vec<u8> = (0..4 * BLOCK)
            .map(|i| m.store.page(block(0) * BLOCK + i))
            .collect();
        let ctl = crate::control::Control::new();
        ctl.cancel();
        let r = populate_cancellable(&mut m, &Workload::default(), 1, &ctl, None);
        assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
        // made dense (allocated zero, the fill left to populate), then restored
        assert!(m.store.is_dense(block(0)));
        let after: Vec<u8> = (0..4 * BLOCK)
            .map(|i| m.store.page(block(0) * BLOCK + i))
            .collect();
        assert_eq!(before, after);
        assert!(
            after.iter().any(|&b| b != 0),
            "free memory after boot is not zero bytes"
        );
    }

    #[test]
    fn the_word_wise_ram_check_agrees_with_the_byte_test() {
        let mut rng = Rng::new(5, 1);
        for len in [0usize, 1, 7, 8, 9, 63, 64, 512, 515] {
            for _ in 0..200 {
                let mut v: Vec<u8> = (0..len).map(|_| (rng.below(12) as u8) | 0xa0).collect();
                if len > 0 && rng.f64() < 0.5 {
                    let i = rng.below(len as u64) as usize;
                    v[i] = (12 + rng.below(4) as u8) | ((rng.below(16) as u8) << 4);
                }
                assert_eq!(
                    all_ram_pages(&v),
                    v.iter().all(|&x| is_ram_page(x)),
                    "{v:?}"
                );
            }
        }
    }

    #[test]
    fn knobs_name_every_field_once_and_read_back_what_is_set() {
        let names: Vec<_> = KNOBS.iter().map(|k| k.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        let mut w = Workload::default();
        for k in &KNOBS {
            let v = match k.kind {
                KnobKind::Fraction => KnobValue::Number(0.25),
                KnobKind::Count | KnobKind::Index => KnobValue::Count(3),
                KnobKind::Weights => KnobValue::Weights(vec![1.0, 2.0]),
                KnobKind::Flag => KnobValue::Flag(true),
            };
            w.set_knob(k.name, v.clone()).unwrap();
            assert_eq!((k.get)(&w), v, "{}", k.name);
        }
        // every field changed: no knob writes another's field
        let d = Workload::default();
        for k in &KNOBS {
            assert_ne!((k.get)(&w), (k.get)(&d), "{}", k.name);
        }
    }

    #[test]
    fn a_value_of_the_wrong_kind_or_an_unknown_knob_is_refused() {
        let mut w = Workload::default();
        let e = w.set_knob("free", KnobValue::Flag(true)).unwrap_err();
        assert!(e.to_string().contains("free: expected a fraction"), "{e}");
        let e = w.set_knob("fre", KnobValue::Number(0.1)).unwrap_err();
        assert!(e.to_string().contains("unknown knob"), "{e}");
        assert_eq!(w, Workload::default());
    }

    #[test]
    fn validate_checks_every_fraction_knob() {
        let m = crate::kernel::testutil::machine(1, &[]);
        for k in KNOBS.iter().filter(|k| k.kind == KnobKind::Fraction) {
            let mut w = Workload::default();
            w.set_knob(k.name, KnobValue::Number(1.5)).unwrap();
            let e = w.validate(&m).unwrap_err();
            assert!(e.to_string().contains(k.name), "{e}");
        }
    }
}
