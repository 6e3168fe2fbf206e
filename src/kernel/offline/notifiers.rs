//! Memory notifiers the offline path calls: the pseries CMM isolate notifier (5.4).

use crate::geometry::Arch;
use crate::kernel::profile::KernelProfile;
use crate::page::{kind, kind_of};
use crate::topology::Machine;

/// 5.4 pseries: `memory_isolate_notify(MEM_ISOLATE_COUNT)` reaches the CMM balloon, which
/// reports the pages it has loaned in the pageblock (modeled as its PG_offline pages); they are
/// passed to `has_unmovable_pages()` as `count`. v5.5-rc5 has no such notifier: CMM uses
/// balloon compaction (see `unmovable::cmm_balloon_movable`).
pub(super) fn cmm_isolate_count(m: &Machine, profile: KernelProfile, pb: u64) -> u32 {
    if !cmm_notifier(m, profile) {
        return 0;
    }
    let run = m.store.run(pb, m.geometry.pageblock_nr_pages() as usize);
    (0..run.len())
        .filter(|&i| kind_of(run.get(i)) == kind::OFFLINE)
        .count() as u32
}

/// Whether the pseries CMM balloon's memory notifiers are registered: 5.4.18 cmm.c
/// registers the isolate notifier (and gives its pages back in MEM_GOING_OFFLINE); v5.5-rc5
/// does not (read in both).
pub(super) fn cmm_notifier(m: &Machine, profile: KernelProfile) -> bool {
    m.geometry.arch == Arch::Ppc64 && profile.cmm_isolate_notifier()
}
