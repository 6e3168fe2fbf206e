"""Stateful sequences of offline / online on a two-node machine: no page is lost or
duplicated, a dry run predicts what the real write does, and the core agrees with the
reference model after every step."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import memscan
from memscan import reference

KERNELS = ["5.5", "5.6", "6.1"]


def user_pages(m):
    c = m.kind_counts()
    return (
        c["LRU"] + c["THP_HEAD"] + c["THP_TAIL"],  # a THP may be split on migration
        c["MOVABLE"],
        c["PINNED"],
        c["UNMOVABLE"],
        c["HUGETLB_HEAD"] + c["HUGETLB_TAIL"],
        c["HWPOISON"],
        c["OFFLINE"],
    )


class OfflineOnline(RuleBasedStateMachine):
    @initialize(
        seed=st.integers(0, 2**16),
        preset=st.sampled_from(["movable-node", "idle", "fragmented"]),
        zone=st.sampled_from(["Normal", "Movable"]),
    )
    def build(self, seed, preset, zone):
        layout = {
            "arch": "x86_64",
            "block_size": "128M",
            "ranges": [
                {"start": 4 << 30, "size": "256M", "kind": "ram", "nid": 0},
                {"start": (4 << 30) + (256 << 20), "size": "256M", "kind": "ram", "nid": 1},
            ],
            "zones": [
                {"nid": 0, "zone": "Normal", "start_pfn": 0x100000, "end_pfn": 0x110000},
                {"nid": 1, "zone": zone, "start_pfn": 0x110000, "end_pfn": 0x120000},
            ],
        }
        self.m = memscan.Machine.from_layout(layout)
        if preset == "movable-node":
            preset = "idle"  # the layout already gives node 1 its zone
        self.m.populate(preset, seed=seed)
        self.before = user_pages(self.m)

    @rule(block=st.integers(32, 35), kernel=st.sampled_from(KERNELS))
    def offline(self, block, kernel):
        dry = self.m.offline(block, kernel)
        ref = reference.offline(self.m, block, kernel, patience_rounds=1000)
        assert (dry.errno, dry.reason, dry.pfn) == (ref.errno, ref.reason, ref.pfn)
        real = self.m.offline(block, kernel, dry_run=False)
        assert (real.errno, real.reason, real.pfn) == (dry.errno, dry.reason, dry.pfn)
        assert real.applied == real.ok
        if real.ok:
            assert self.m.block_state(block) == memscan.BlockState.OFFLINE

    @rule(
        block=st.integers(32, 35),
        online_type=st.sampled_from(["online", "online_kernel", "online_movable"]),
    )
    def online(self, block, online_type):
        was = self.m.block_state(block)
        err = self.m.online(block, online_type)
        assert (err is None) == (was == memscan.BlockState.OFFLINE)
        assert self.m.block_state(block) == memscan.BlockState.ONLINE

    @invariant()
    def no_page_lost_or_duplicated(self):
        assert user_pages(self.m) == self.before

    @invariant()
    def removable_never_faults_on_online_blocks(self):
        s = self.m.scan("5.5+debug", progress=False)
        assert s.faults == []


OfflineOnline.TestCase.settings = settings(
    max_examples=15, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)
)
TestOfflineOnline = OfflineOnline.TestCase
