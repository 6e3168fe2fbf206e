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
pub fn compute_min_free_pages(m: &Machine) -> (u64, u64) {
    let g = m.geometry;
    let pbn = g.pageblock_nr_pages();
    let mut lowmem_pages = 0u64;
    for sec in 0..m.store.nr_sections() {
        let meta = m.store.section_meta(sec);
        if meta.online() && !meta.device() {
            let base = g.section_to_pfn(sec);
            for pb in (base..base + g.pages_per_section()).step_by(pbn as usize) {
                if m.store.pageblock_zone(pb) != ZoneType::Movable {
                    lowmem_pages += pbn;
                }
            }
        }
    }
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

/// Recompute both min watermarks (boot, after an online or offline, after a setting), and
/// the managed pages they are distributed over.
pub fn refresh_min_free(m: &mut Machine) {
    let (a, b) = compute_min_free_pages(m);
    m.min_free_pages = a;
    m.min_free_pages_6_1 = b;
    let g = m.geometry;
    let pbn = g.pageblock_nr_pages();
    let mut managed = vec![[0u64; 2]; m.nodes.len().max(1)];
    for sec in 0..m.store.nr_sections() {
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
    m.managed_pages = managed;
}
