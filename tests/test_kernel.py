"""Kernel profiles as values (memscan.Kernel): parsed once by the core's parser; code asks
the value what a kernel does instead of cutting version strings."""

from __future__ import annotations

import dataclasses

import pytest

import memscan
from memscan import Kernel
from memscan.studies import clients
from memscan.studies.cost import CostModel


def test_release_strings_parse_to_profiles_with_their_behaviours():
    k = Kernel.parse("5.5.10-200.fc31.x86_64+debug")
    assert (k.version, k.name, k.debug_vm, k.debug_vm_pgflags) == ("5.5", "5.5+debug", True, True)
    assert k.removable_scans and k.has_memory_holes_check and not k.offline_path_6_1
    assert k.without_debug() == Kernel.parse("5.5")
    k61 = Kernel.parse("6.1.0-18-amd64")
    assert k61.offline_path_6_1 and not k61.removable_scans and not k61.has_is_mem_section_removable
    assert not Kernel.parse("5.4.59").has_memory_holes_check
    assert Kernel.parse("5.4", "ppc64").cmm_isolate_notifier
    assert Kernel.parse("5.5", "ppc64").cmm_balloon_compaction
    assert Kernel.parse("5.5", "ppc64").zone_zero == "Normal"
    assert not Kernel.parse("5.5", "arm64").memory_hotremove
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.version = "6.1"  # type: ignore[misc]
    for bad in ("5.10.0-28-amd64", "6.18.44", 5.5):
        with pytest.raises(memscan.ArgumentError):
            Kernel.parse(bad)  # type: ignore[arg-type]


def test_machine_methods_take_a_kernel_value_or_its_name():
    m = memscan.Machine.seed()
    k = Kernel.parse("5.5.10-200.fc31.x86_64+debug")
    a, b = m.removable(96, k), m.removable(96, "5.5+debug")
    assert a == b and a.kernel == "5.5+debug" and a.fault is not None
    assert m.offline(40, Kernel.parse("6.1")) == m.offline(40, "6.1")
    assert m.predict(k).offline_kernel == "5.5"  # the same kernel without DEBUG_VM


def test_lsmem_cost_counts_valid_zones_reads_on_every_5x_profile():
    """5.4.59 and 5.5 valid_zones_show() run test_pages_in_a_zone() (struct page reads); 6.1
    prints mem->zone. The study took only 5.5/5.6 names as 5.x, so 5.4 lost those reads."""
    m = memscan.Machine.synthetic("2G", arch="s390x")  # s390: memory0 exists, lsmem reads ZONES
    cost = CostModel()
    by = {k: clients.lsmem(m, k, cost)["struct_pages_read"] for k in ("5.4", "5.5", "6.1")}
    scan = {k: m.scan(k, progress=False).total() for k in by}
    assert by["5.4"] - scan["5.4"] == by["5.5"] - scan["5.5"] > 0
    assert by["6.1"] == scan["6.1"]
