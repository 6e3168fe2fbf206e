"""The seed machine and its crash (design.md, 'The seed machine')."""

from __future__ import annotations

import json

import pytest

import memscan
from memscan.cli import main


def test_seed_geometry_and_blocks(seed):
    g = seed.geometry
    assert g.block_size == 2 << 30 and g.section_size == 128 << 20 and g.pageblock_nr_pages == 512
    blocks = seed.blocks().tolist()
    assert blocks[0] == 0 and 1 not in blocks  # 2-4 GiB: PCI hole, no block directory
    assert blocks[-1] == 96 and len(blocks) == 96  # pure-pmem blocks above get none
    flags = seed.sections()["flags"]
    assert all(flags[s] & 1 and flags[s] & 2 for s in range(0x600, 0x608))  # online RAM
    assert all(flags[s] == 0 for s in range(0x608, 0x60C))  # Reserved range: not present
    assert all(flags[s] & 1 and flags[s] & 8 and not flags[s] & 2 for s in range(0x60C, 0x610))


@pytest.mark.parametrize(
    "kernel,kind,access",
    [
        ("5.5+debug", "bug", "page_zone -> page_to_nid"),
        ("5.5.10+debug", "bug", "page_zone -> page_to_nid"),
        ("5.6-rc7+debug", "bug", "page_zone -> page_to_nid"),
        ("5.5", "oops", "page_zone"),
        ("5.6-rc3", "oops", "page_zone"),
    ],
)
def test_memory96_faults_on_pmem_struct_page(seed, kernel, kind, access):
    r = seed.removable(96, kernel)
    assert r.value is None
    f = r.fault
    assert (f.function, f.access, f.kind) == ("is_mem_section_removable", access, kind)
    assert f.pfn == 0x3060000 and f.phys == 0x3060000000 and f.section == 0x60C and f.block == 96
    if kind == "bug":
        assert "VM_BUG_ON_PAGE(PagePoisoned(p))" in f.message
        assert "ffffea00c1800000" in f.message


@pytest.mark.parametrize("kernel", ["5.6", "6.1"])
def test_memory96_after_the_patch(seed, kernel):
    r = seed.removable(96, kernel)
    assert r.value == 1 and r.fault is None and r.struct_pages_read == 0


def test_memory0_reads_0_before_the_patch(seed):
    # pfn 0's zeroed struct page: zone DMA, which starts at pfn 1 -> zone_spans_pfn fails.
    r = seed.removable(0, "5.5")
    assert r.value == 0


def test_report_text_and_json(capsys):
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert "FAULT" in out and "0x3060000" in out and "VM_BUG_ON_PAGE(PagePoisoned(p))" in out
    assert "0x0000003000000000-0x000000307fffffff" in out
    assert main(["report", "--json", "--kernel", "5.5"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["faults"][0]["kind"] == "oops" and d["faults"][0]["block"] == 96
    assert all(b["removable_post"] == 1 for b in d["blocks"])
    assert d["totals"]["struct_pages_read"] == sum(b["struct_pages_read"] for b in d["blocks"])
    assert main(["report", "--json", "--kernel", "5.6"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["faults"] == [] and d["totals"]["struct_pages_read"] == 0


def test_report_bad_input_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "iomem"
    bad.write_text("00000000-0000zzzz : System RAM\n")
    assert main(["report", "--iomem", str(bad)]) == 2
    assert "iomem:1" in capsys.readouterr().err
    assert main(["report", "--kernel", "5.7"]) == 2


def test_lsmem_merging_splits_on_removable_and_gaps():
    m = memscan.Machine.synthetic("1G", block_size="128M")
    m.set_pages(0x100000, 8 * 32768, memscan.PageKind.LRU)
    m.set_pages(0x100000 + 3 * 32768 + 5, 1, memscan.PageKind.UNMOVABLE)
    from memscan.report import build_report

    r = build_report(m, kernel="5.5")
    assert [(x.first_block, x.last_block, x.removable) for x in r.ranges] == [
        (32, 34, "yes"),
        (35, 35, "no"),
        (36, 39, "yes"),
    ]
