"""Each constructor records where a machine came from in one ``Machine.origin``; the earlier
provenance attributes read and write it; a copy's origin is its own."""

from __future__ import annotations

import json

import memscan
from memscan.sources import SEED_IOMEM


def test_each_constructor_names_its_source(tmp_path):
    layout = {"name": "two", "ranges": [{"start": 0, "end": "2G", "kind": "ram"}]}
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(layout))
    cases = {
        "seed": memscan.Machine.seed(),
        "iomem": memscan.Machine.from_iomem(SEED_IOMEM, source="seed.iomem"),
        "synthetic": memscan.Machine.synthetic("4G"),
        "layout": memscan.Machine.from_layout(str(path)),
    }
    for kind, m in cases.items():
        assert m.origin.kind == kind, (kind, m.origin)
        assert m.origin.sysfs_tree is None and m.origin.snapshot_info is None
    assert cases["iomem"].origin.source == "seed.iomem"
    assert cases["layout"].origin.source == str(path)
    assert memscan.Machine.from_layout(layout).origin.source == "<dict>"


def test_a_sysfs_machine_keeps_the_kernels_answers_in_its_origin(tmp_path):
    src = memscan.Machine.seed()
    src.export_sysfs(tmp_path / "t", kernel="5.5+debug")
    m = memscan.Machine.from_sysfs(tmp_path / "t")
    assert m.origin.kind == "sysfs" and m.origin.source == str(tmp_path / "t")
    assert m.sysfs_removable is m.origin.sysfs_removable
    assert m.origin.sysfs_removable[96] is None  # the faulting read left no file
    assert m.sysfs_tree is m.origin.sysfs_tree and m.sysfs_tree.blocks


def test_the_old_attributes_write_through_and_a_copy_is_independent():
    m = memscan.Machine.synthetic("4G")
    m.sysfs_removable = {0: 1}
    m.storage_increment = 1 << 20
    assert m.origin.sysfs_removable == {0: 1} and m.origin.storage_increment == 1 << 20
    c = m.copy()
    assert c.origin == m.origin and c.origin is not m.origin
    c.sysfs_removable[0] = 0
    assert m.sysfs_removable == {0: 1}
