//! Which zone a block is in: the refusals before isolation (`section_count`, the memory-holes
//! check), v5.5 `test_pages_in_a_zone()`, 6.1 `mem->zone`, the zone an online picks,
//! `valid_zones`, and the zone spans an offline shrinks and an online grows.

use crate::error::{Error, Result};
use crate::kernel::pageinfo::{page_zone, Fault};
use crate::kernel::profile::KernelProfile;
use crate::page::ZoneType;
use crate::topology::{BlockState, Machine, ZoneSpan};

use super::{is_v61, OfflineWork};

/// Sections of the block that are present and not ZONE_DEVICE (`mem->section_count`).
pub(super) fn section_count(m: &Machine, block: u64) -> u64 {
    let spb = m.geometry.sections_per_block();
    (block * spb..(block + 1) * spb)
        .filter(|&s| {
            let meta = m.store.section_meta(s);
            meta.present() && !meta.device()
        })
        .count() as u64
}

/// Pages of busy System RAM in the range: `walk_system_ram_range()` +
/// `count_system_ram_pages_cb` over the iomem "System RAM" resources (no struct page is read).
pub(super) fn system_ram_pages(m: &Machine, start: u64, end: u64) -> u64 {
    m.system_ram
        .iter()
        .map(|&(s, e)| e.min(end).saturating_sub(s.max(start)))
        .sum()
}

/// v5.5 `test_pages_in_a_zone()`: one page per MAX_ORDER_NR_PAGES of each present section
/// must lie in one zone that spans it. Returns the (nid, zone).
pub(super) fn test_pages_in_a_zone(
    m: &Machine,
    start: u64,
    end: u64,
    profile: KernelProfile,
    work: &mut OfflineWork,
) -> std::result::Result<Option<(u16, ZoneType)>, Fault> {
    let g = m.geometry;
    let mut found: Option<(u16, ZoneType)> = None;
    let mut pfn = start;
    while pfn < end {
        let meta = m.store.section_meta(g.pfn_to_section(pfn));
        if !meta.present() {
            pfn += g.pages_per_section();
            continue;
        }
        // 5.4.59 / v5.5 test_pages_in_a_zone(): "if (zone && !zone_spans_pfn(zone, pfn))
        // return 0" comes before the page_zone() read, so a pfn outside the first page's zone
        // ends the test without touching its struct page (a real 5.4.59 +debug kernel BUGs
        // here, RIP test_pages_in_a_zone, only where that zone spans the poisoned pfn).
        if let Some(z) = found {
            if !m.zone_span(z.0, z.1).spans(pfn) {
                return Ok(None);
            }
        }
        work.struct_pages_read += 1;
        let (nid, zone, _) = page_zone(m, pfn, &profile, "test_pages_in_a_zone")?;
        if let Some(z) = found {
            if z != (nid, zone) {
                return Ok(None);
            }
        } else {
            found = Some((nid, zone));
        }
        pfn += g.max_order_nr_pages();
    }
    Ok(found)
}

/// v6.1 `early_node_zone_for_memory_block()` (drivers/base/memory.c, 6.1-rc6): the boot
/// value of `mem->zone`, set when the node registers its early blocks
/// (`memory_block_add_nid()`, MEMINIT_EARLY): the one populated zone of the block's node whose
/// span intersects the block; `None` for two or more zones, or where a second node registers
/// the same block.
pub fn early_zone(m: &Machine, block: u64) -> Option<(u16, ZoneType)> {
    let g = m.geometry;
    let spb = g.sections_per_block();
    let mut nids: Vec<u16> = (block * spb..(block + 1) * spb)
        .map(|s| m.store.section_meta(s))
        .filter(|x| x.present() && !x.device())
        .map(|x| x.nid)
        .collect();
    nids.dedup();
    if nids.len() != 1 {
        return None;
    }
    let nid = nids[0];
    let (s, e) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
    let mut zones = ZoneType::ALL
        .iter()
        .copied()
        .filter(|&z| z != ZoneType::Device)
        .filter(|&z| {
            let span = m.zone_span(nid, z);
            span.start_pfn < e && s < span.end_pfn
        });
    match (zones.next(), zones.next()) {
        (Some(z), None) => Some((nid, z)),
        _ => None,
    }
}

/// v6.1 `mem->zone`: its boot value (`early_zone`) for a block online at boot (blocks added
/// offline, hot-added or coldplugged DIMMs, start NULL), then what `memory_block_online()`
/// set (the zone the online chose) or `memory_block_offline()` cleared (NULL). It is never
/// recomputed from the zone spans, which overlap once a block inside one zone's span is
/// onlined to another (6.1-rc6 drivers/base/memory.c).
pub fn mem_zone(m: &Machine, block: u64) -> Option<(u16, ZoneType)> {
    match &m.mem_zone {
        Some(v) => v.get(block as usize).copied().flatten(),
        None if m.blocks.get(block as usize) == Some(&BlockState::Online)
            || m.blocks.get(block as usize) == Some(&BlockState::GoingOffline) =>
        {
            early_zone(m, block)
        }
        None => None,
    }
}

/// Record a new `mem->zone` for `block`, keeping every other block's boot value (computed
/// now, before the state change alters any zone span).
pub(super) fn set_mem_zone(m: &mut Machine, block: u64, zone: Option<(u16, ZoneType)>) {
    if m.mem_zone.is_none() {
        let all = (0..m.nr_blocks()).map(|b| mem_zone(m, b)).collect();
        m.mem_zone = Some(all);
    }
    if let Some(slot) = m.mem_zone.as_mut().and_then(|v| v.get_mut(block as usize)) {
        *slot = zone;
    }
}

/// `shrink_zone_span()` after `[start, end)` went offline: a zone whose span starts (ends)
/// inside the range moves its start (end) to the next (previous) online pageblock it owns.
pub(super) fn shrink_zone_spans(m: &mut Machine, start: u64, end: u64) {
    let g = m.geometry;
    let pbn = g.pageblock_nr_pages();
    let owns = |m: &Machine, nid: usize, z: ZoneType, pb: u64| {
        let meta = m.store.section_meta(g.pfn_to_section(pb));
        meta.online()
            && !meta.device()
            && meta.nid as usize == nid
            && m.store.pageblock_zone(pb) == z
    };
    for nid in 0..m.nodes.len() {
        for z in [
            ZoneType::Dma,
            ZoneType::Dma32,
            ZoneType::Normal,
            ZoneType::Movable,
        ] {
            let Some(mut span) = m.nodes[nid].zones[z as usize] else {
                continue;
            };
            if span.start_pfn >= start && span.start_pfn < end {
                let first = (end..span.end_pfn)
                    .step_by(pbn as usize)
                    .find(|&pb| owns(m, nid, z, pb));
                match first {
                    Some(pb) => span.start_pfn = pb,
                    None => span.end_pfn = span.start_pfn,
                }
            }
            if span.end_pfn > start && span.end_pfn <= end && span.start_pfn < span.end_pfn {
                let first_pb = span.start_pfn / pbn;
                let last = (first_pb..start / pbn)
                    .rev()
                    .map(|i| i * pbn)
                    .find(|&pb| owns(m, nid, z, pb));
                match last {
                    Some(pb) => span.end_pfn = pb + pbn,
                    None => span.end_pfn = span.start_pfn,
                }
            }
            m.nodes[nid].zones[z as usize] = (span.start_pfn < span.end_pfn).then_some(span);
        }
    }
}

/// `move_pfn_range_to_zone()` resizing: the zone grows to cover `[start, end)`.
pub(super) fn grow_zone_span(m: &mut Machine, nid: u16, zone: ZoneType, start: u64, end: u64) {
    let slot = &mut m.nodes[nid as usize].zones[zone as usize];
    *slot = Some(match *slot {
        Some(s) => ZoneSpan {
            start_pfn: s.start_pfn.min(start),
            end_pfn: s.end_pfn.max(end),
        },
        None => ZoneSpan {
            start_pfn: start,
            end_pfn: end,
        },
    });
}

/// The zone a plain "online" / "online_kernel" / "online_movable" picks for an offline block
/// (`zone_for_pfn_range()`, contig-zones policy, without movable_node).
pub fn online_zone(m: &Machine, block: u64, online_type: &str) -> Result<(u16, ZoneType)> {
    let g = m.geometry;
    let (s, e) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
    let spb = g.sections_per_block();
    let nid = (block * spb..(block + 1) * spb)
        .map(|x| m.store.section_meta(x))
        .find(|x| x.present() && !x.device())
        .map_or(0, |x| x.nid);
    let intersects = |z: ZoneType| {
        let span = m.zone_span(nid, z);
        span.start_pfn < span.end_pfn && span.start_pfn < e && s < span.end_pfn
    };
    // default_kernel_zone_for_pfn(): first zone below Movable that intersects, else Normal.
    let kernel = [ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal]
        .into_iter()
        .find(|&z| intersects(z))
        .unwrap_or(ZoneType::Normal);
    let zone = match online_type {
        "online_kernel" => kernel,
        "online_movable" => ZoneType::Movable,
        "online" => {
            let (k, mv) = (intersects(kernel), intersects(ZoneType::Movable));
            if mv && !k {
                ZoneType::Movable
            } else {
                kernel
            }
        }
        other => {
            return Err(Error::Argument(format!(
                "unknown online type {other:?} (online, online_kernel, online_movable)"
            )))
        }
    };
    Ok((nid, zone))
}

/// `valid_zones` of a block, as printed (without the newline).
/// `memoryN/valid_zones` as read: its text, or the fault that killed the reader (5.4/5.5
/// `valid_zones_show()` of an online block runs `test_pages_in_a_zone()`, which reads
/// `page_zone()` of a struct page per MAX_ORDER_NR_PAGES; 6.1 reads `mem->zone`).
pub fn valid_zones(
    m: &Machine,
    block: u64,
    profile: &KernelProfile,
) -> Result<std::result::Result<String, Fault>> {
    let state = m.block_state(block)?;
    if !profile.memory_hotremove {
        return Err(Error::Argument(
            "valid_zones exists only with CONFIG_MEMORY_HOTREMOVE".into(),
        ));
    }
    let g = m.geometry;
    // valid_zones_show() (v5.5-rc5, 6.1): only MEM_ONLINE reports the block's zone; every
    // other state, going-offline included, lists the zones an online would choose
    if state == BlockState::Online {
        let z = if is_v61(*profile) {
            mem_zone(m, block)
        } else {
            let mut w = OfflineWork::default();
            let (s, e) = (g.block_to_pfn(block), g.block_to_pfn(block + 1));
            match test_pages_in_a_zone(m, s, e, *profile, &mut w) {
                Ok(z) => z,
                Err(f) if f.kind.stops() => return Ok(Err(f)),
                // an undefined read (garbage) answers something; model it as no zone
                Err(_) => None,
            }
        };
        return Ok(Ok(
            z.map_or("none".to_string(), |(_, z)| z.name().to_string())
        ));
    }
    let (_, def) = online_zone(m, block, "online")?;
    let mut out = def.name().to_string();
    for t in ["online_kernel", "online_movable"] {
        let (_, z) = online_zone(m, block, t)?;
        if z != def && !out.split(' ').any(|n| n == z.name()) {
            out.push(' ');
            out.push_str(z.name());
        }
    }
    Ok(Ok(out))
}
