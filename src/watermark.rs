//! The page allocator's min watermark as the model keeps it: `min_free_kbytes` under 5.x and
//! 6.1 rules and the managed pages it is spread over. Model state, recomputed when memory
//! comes or goes (boot, online, offline, a sysctl write); the kernel models read it
//! (`kernel::offline::min_reserve`).

use crate::page::ZoneType;
use crate::topology::Machine;

/// `min_free_kbytes` in pages, under 5.x rules and 6.1 rules: int_sqrt(lowmem_kbytes * 16)
/// clamped to 128..65536 (5.5-rc5 `init_per_zone_wmark_min()`) or 128..262144 (6.1-rc6
/// `calculate_min_free_kbytes()`), a user setting kept where at least as large, and
/// khugepaged's THP raise: the min watermark migration targets must leave.
/// The lowmem pages are the managed pages outside ZONE_MOVABLE (`m.managed_pages`, kept by
/// [`refresh_min_free`] and [`account_block`]).
pub fn compute_min_free_pages(m: &Machine) -> (u64, u64) {
    let g = m.geometry;
    let pbn = g.pageblock_nr_pages();
    let lowmem_pages: u64 = m.managed_pages.iter().map(|x| x[0]).sum();
    let page_kb = g.page_size() / 1024;
    let new_kb = ((lowmem_pages * page_kb * 16) as f64).sqrt() as u64;
    // a user setting at least as large as the new value stands (init_per_zone_wmark_min,
    // 5.5-rc5; calculate_min_free_kbytes, 6.1-rc6)
    let rule = |max_kb: u64| match m.user_min_free_kbytes {
        Some(u) if u >= new_kb => u,
        _ => new_kb.clamp(128, max_kb),
    };
    // khugepaged set_recommended_min_free_kbytes() (5.5-rc5, 6.1-rc6): two pageblocks per
    // populated zone up to ZONE_NORMAL, plus MIGRATE_PCPTYPES^2 = 9 more, at most 5% of
    // lowmem (nr_free_buffer_pages, approximated by the lowmem pages)
    let nr_zones = m
        .nodes
        .iter()
        .flat_map(|n| {
            [ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal]
                .into_iter()
                .filter(move |&z| n.zones[z as usize].is_some_and(|s| s.start_pfn < s.end_pfn))
        })
        .count() as u64;
    let thp_kb = (pbn * nr_zones * (2 + 9)).min(lowmem_pages / 20) * page_kb;
    let raise = |kb: u64, on: bool| {
        if on && m.thp_enabled {
            kb.max(thp_kb)
        } else {
            kb
        }
    };
    // 5.x raises it at khugepaged start only: an online or offline recomputes it without the
    // raise (khugepaged_min_free_kbytes_update() in init_per_zone_wmark_min from v5.10)
    let v5 = raise(rule(65536), !m.hotplugged);
    let v61 = raise(rule(262_144), true);
    (v5 * 1024 / g.page_size(), v61 * 1024 / g.page_size())
}

/// Managed pages per node, [outside ZONE_MOVABLE, in it], of the online sections `secs`.
fn managed_of(m: &Machine, secs: std::ops::Range<u64>) -> Vec<[u64; 2]> {
    let g = m.geometry;
    let pbn = g.pageblock_nr_pages();
    let mut managed = vec![[0u64; 2]; m.nodes.len().max(1)];
    for sec in secs {
        let meta = m.store.section_meta(sec);
        if !meta.online() || meta.device() {
            continue;
        }
        let base = g.section_to_pfn(sec);
        for pb in (base..base + g.pages_per_section()).step_by(pbn as usize) {
            let i = usize::from(m.store.pageblock_zone(pb) == ZoneType::Movable);
            if let Some(n) = managed.get_mut(meta.nid as usize) {
                n[i] += pbn;
            }
        }
    }
    managed
}

/// Recompute both min watermarks (boot, after a setting), and the managed pages they are
/// distributed over: one pass over the machine.
pub fn refresh_min_free(m: &mut Machine) {
    m.managed_pages = managed_of(m, 0..m.store.nr_sections());
    update_min_free(m);
}

/// The managed pages memory block `block` adds while online, per node: taken before an
/// offline, or after an online, for [`account_block`].
pub fn block_managed(m: &Machine, block: u64) -> Vec<[u64; 2]> {
    let spb = m.geometry.sections_per_block();
    managed_of(m, block * spb..(block + 1) * spb)
}

/// After an offline (`joins` false) or an online of a block whose managed pages are
/// `part`: the managed pages and both min watermarks, in O(block), as `refresh_min_free`
/// would recompute them over the whole machine (the kernel's adjust_managed_page_count()
/// and init_per_zone_wmark_min() do the same per zone).
pub fn account_block(m: &mut Machine, part: &[[u64; 2]], joins: bool) {
    for (n, p) in m.managed_pages.iter_mut().zip(part) {
        for i in 0..2 {
            n[i] = if joins {
                n[i] + p[i]
            } else {
                n[i].saturating_sub(p[i])
            };
        }
    }
    update_min_free(m);
}

fn update_min_free(m: &mut Machine) {
    let (a, b) = compute_min_free_pages(m);
    m.min_free_pages = a;
    m.min_free_pages_6_1 = b;
}
