"""Client emulation and the trade-off, on layouts small enough to count by hand."""

from __future__ import annotations

import numpy as np
import pytest

import memscan
from conftest import PFN0
from memscan import PageKind
from memscan.studies import CostModel, blind, break_even, chmem_size, drmgr, lsmem
from memscan.studies.tradeoff import Case, fragmentation_workload, tradeoff

SEC = 32768
COST = CostModel()


def four_blocks():
    """1 GiB at 4 GiB in 128 MiB blocks: 32-35 Normal and free (the migration targets),
    36-39 ZONE_MOVABLE with 512 LRU pages each."""
    m = memscan.Machine.from_layout(
        {
            "arch": "x86_64",
            "block_size": "128M",
            "ranges": [{"start": 4 << 30, "size": "1G", "kind": "ram"}],
            "zones": [
                {"nid": 0, "zone": "Normal", "start_pfn": PFN0, "end_pfn": PFN0 + 4 * SEC},
                {
                    "nid": 0,
                    "zone": "Movable",
                    "start_pfn": PFN0 + 4 * SEC,
                    "end_pfn": PFN0 + 8 * SEC,
                },
            ],
        }
    )
    # blocks 36-39 hold 512 LRU pages each; blocks 32-35 stay free (the migration targets)
    for b in range(36, 40):
        m.set_pages(PFN0 + (b - 32) * SEC, 1024, PageKind.FREE)
        m.set_pages(PFN0 + (b - 32) * SEC, 512, PageKind.LRU)
        m.set_pages(PFN0 + (b - 32) * SEC + 512, 1, PageKind.BUDDY, 9)
    return m


def test_lsmem_counts_by_hand():
    m = four_blocks()
    post = lsmem(m, "5.6", COST)
    # no memory0: 2 files + the block directory each, and the first block's directory once
    # at start (util-linux 2.38 read_basic_info())
    assert post["struct_pages_read"] == 0 and post["syscalls"] == 8 * 3 + 1
    assert post["killed_at"] is None
    pre = lsmem(m, "5.5", COST)
    s = m.scan("5.5", progress=False)
    assert pre["struct_pages_read"] == s.total() > 0
    assert pre["kernel_ns"] == pytest.approx(
        post["kernel_ns"] + s.total() * COST.ns_per_struct_page
    )


def test_nothing_blocked_the_hint_saves_nothing():
    a, b = four_blocks(), four_blocks()
    d = drmgr(a, "5.5", 2, COST, seed=3)
    z = blind(b, "5.6", 2, COST, seed=3)
    assert d.met and z.met and d.attempts == z.attempts == 2 and not d.failures and not z.failures
    # the same blocks were taken (same shuffled order, nothing skipped): the difference is
    # exactly the removable reads
    assert (a.block_states() == b.block_states()).all()
    reads_ns = (
        sum(COST.removable_read_ns(0) for _ in range(8))
        + d.removable_struct_pages_read * COST.ns_per_struct_page
    )
    assert d.kernel_ns - z.kernel_ns == pytest.approx(reads_ns)
    assert d.removable_reads == 8


def test_every_block_pinned_removable_always_wrong_and_costs_time():
    a, b = four_blocks(), four_blocks()
    for m in (a, b):
        for blk in range(32, 40):
            m.set_pages(PFN0 + (blk - 32) * SEC + 2000, 1, PageKind.PINNED)
    p = a.predict("5.5", offline_kernel="5.5", patience_rounds=10)
    c = p.confusion("pre")
    assert (
        c["tp"] == 0 and c["fp"] == 8 and c["tn"] == 0
    )  # removable 1, offline EINTR: always wrong
    d = drmgr(a, "5.5", 2, COST, seed=1, patience_rounds=10)
    z = blind(b, "5.6", 2, COST, seed=1, patience_rounds=10)
    assert not d.met and not z.met and d.attempts == z.attempts == 8
    assert d.failures == z.failures == {"EINTR signal backoff": 8}
    assert d.kernel_ns > z.kernel_ns  # the hint only added its reads


def test_chmem_walks_down_from_the_highest_block():
    m = four_blocks()
    m.set_pages(PFN0 + 7 * SEC + 5000, 1, PageKind.RESERVED)  # block 39 cannot go
    r = chmem_size(m, "6.1", 2, COST)
    assert r.met and r.attempts == 3 and r.offlined_blocks == 2
    assert r.failures == {"EBUSY failure to isolate range": 1}
    st = m.block_states()
    assert st[39] == 1 and st[38] == 2 and st[37] == 2 and st[36] == 1
    assert r.removable_reads == 0  # chmem never reads removable


def test_drmgr_killed_on_the_seed_and_break_even_ignores_it():
    m = memscan.Machine.seed()
    r = drmgr(m, "5.5+debug", 4, COST, seed=0)
    assert r.message.startswith("killed reading memory96/removable (bug")
    assert r.attempts == 0
    rec = [
        {
            "machine": "x",
            "fragmentation": 0.0,
            "hint_saves_ns": 5.0,
            "drmgr_pre": {"message": r.message},
        }
    ]
    assert break_even(rec) == {"x": None}


def test_tradeoff_records_and_fragmentation_knob():
    assert (
        fragmentation_workload(0).unmovable_spread == 0
        and fragmentation_workload(1).polluted_pageblocks > 0
    )
    cases = [Case("tiny", lambda: memscan.Machine.synthetic("2G", block_size="128M"))]
    recs = tradeoff(cases, levels=(0.0, 1.0), request_fraction=0.25)
    assert [r["fragmentation"] for r in recs] == [0.0, 1.0]
    lo, hi = recs
    assert lo["offlineable_blocks"] >= hi["offlineable_blocks"]
    for r in recs:
        assert r["request_blocks"] == 4 and r["lsmem_post"]["struct_pages_read"] == 0
        assert (
            r["blind_post"]["removable_reads"] == 0
            and r["drmgr_pre"]["removable_reads"] == r["blocks"]
        )


def test_unmovable_spread_zero_puts_kernel_pageblocks_lowest():
    m = memscan.Machine.synthetic("1G", block_size="128M")
    m.populate(
        memscan.Workload(
            unmovable=0.1, unmovable_clustered=1.0, polluted_pageblocks=0.0, unmovable_spread=0.0
        ),
        seed=2,
    )
    bits = m._core.pageblock_bits()
    blocks = m.blocks().tolist()
    per = m.geometry.pages_per_block // m.geometry.pageblock_nr_pages
    unmov = [int(((bits[b * per : (b + 1) * per] & 0xF) == 0).sum()) for b in blocks]
    assert unmov[0] > 0 and unmov[-1] == 0 and unmov == sorted(unmov, reverse=True)


def test_cli_tradeoff_json_and_plot(tmp_path, capsys):
    import json

    from memscan.cli import main

    png = tmp_path / "t.png"
    assert (
        main(["tradeoff", "--synthetic", "2G", "--levels", "0,1", "--json", "--plot", str(png)])
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert {r["machine"] for r in d["records"]} == {"seed", "synthetic 2G/128M"}
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_calibrate_measures_positive_constants():
    from memscan.studies import calibrate

    c = calibrate(pages=1 << 16, copies=1 << 10, reads=100)
    assert c["ns_per_struct_page"] > 0 and c["ns_per_page_copy"] > 0
    assert c["ns_per_syscall"] > 0 and c["syscall_probe"].startswith(("/sys/", "/proc/"))


def test_attribute_read_timer_names_a_missing_file(tmp_path):
    from memscan._core import CoreMachine

    with pytest.raises(memscan.ArgumentError, match="nope"):
        CoreMachine.time_attribute_reads(str(tmp_path / "nope"), 10)


@pytest.mark.filterwarnings("ignore")  # distributed's own start-up and shutdown warnings
def test_sweep_on_a_local_dask_cluster():
    distributed = pytest.importorskip("distributed")
    from memscan.studies.tradeoff import Case, tradeoff

    cases = [Case("tiny", lambda: memscan.Machine.synthetic("1G", block_size="128M"))]
    local = tradeoff(cases, levels=(0.0, 1.0))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            remote = tradeoff(cases, levels=(0.0, 1.0), executor=client.get_executor())
    # the same seed gives the same results wherever the sweep runs
    assert [r["drmgr_pre"] for r in remote] == [r["drmgr_pre"] for r in local]
    assert [r["offlineable_blocks"] for r in remote] == [r["offlineable_blocks"] for r in local]


def test_pin_sweep_makes_removable_wrong_and_keys_the_break_even():
    """Pinned LRU pages pass has_unmovable_pages, so removable says yes to blocks that then
    fail to offline: precision falls from 1 as the pin density rises; recall stays 1 (a pin
    never makes removable say no)."""
    cases = [Case("tiny", lambda: memscan.Machine.synthetic("2G", block_size="128M"))]
    recs = tradeoff(cases, levels=(0.0,), pins=(0.0, 1e-4), request_fraction=0.25)
    assert [(r["pinned"], r["pin_sweep"]) for r in recs] == [(0.0, True), (1e-4, True)]
    clean, pinned = recs
    assert clean["removable_precision"] == 1.0 and clean["confusion_pre"]["fp"] == 0
    assert pinned["confusion_pre"]["fp"] > 0 and pinned["removable_precision"] < 1.0
    assert pinned["offlineable_blocks"] < clean["offlineable_blocks"]
    assert pinned["removable_recall"] in (None, 1.0)
    assert set(break_even(recs)) == {"tiny, pinned 0", "tiny, pinned 0.0001"}


def test_cli_tradeoff_pins(tmp_path, capsys):
    import json

    from memscan.cli import main

    png = tmp_path / "p.png"
    argv = ["tradeoff", "--synthetic", "1G", "--levels", "0", "--pins", "0,1e-4"]
    assert main([*argv, "--json", "--plot", str(png)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert sorted({(r["machine"], r["pinned"]) for r in d["records"]}) == [
        ("seed", 0.0),
        ("seed", 1e-4),
        ("synthetic 1G/128M", 0.0),
        ("synthetic 1G/128M", 1e-4),
    ]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_break_even_by_block_count_counts_by_hand():
    from memscan.studies import break_even_blocks

    def rec(machine, blocks, level, saves, pinned=0.0, msg=None):
        return {
            "machine": machine,
            "blocks": blocks,
            "fragmentation": level,
            "pinned": pinned,
            "hint_saves_ns": saves,
            "drmgr_pre": {"message": msg},
        }

    recs = [
        rec("a", 32, 0.0, -1.0),
        rec("b", 128, 0.0, -2.0),
        rec("a", 32, 0.5, -1.0),
        rec("b", 128, 0.5, 3.0),
        rec("c", 512, 0.5, 9.0),
        rec("s", 16, 0.5, 7.0, msg="killed reading memory9/removable (oops)"),
        rec("a", 32, 1.0, 1.0, pinned=1e-4),  # not the lowest pin density of the level
        rec("a", 32, 1.0, -1.0),
        rec("b", 128, 1.0, 2.0),
    ]
    assert break_even_blocks(recs) == {0.0: None, 0.5: 128, 1.0: 128}


def test_predict_and_lsmem_leave_the_machine_as_drmgr_would_find_it():
    """run_case hands the machine predict() and lsmem used to drmgr: they must only read."""
    from memscan.studies.tradeoff import fragmentation_workload

    def fresh():
        m = memscan.Machine.synthetic("2G", block_size="128M")
        m.populate(fragmentation_workload(0.25, pinned=3e-5), seed=3)
        return m

    used = fresh()
    used.predict("5.5", post_kernel="5.6", offline_kernel="5.5")
    lsmem(used, "5.5", COST)
    a = drmgr(used, "5.5", 4, COST, seed=3).to_dict()
    b = drmgr(fresh(), "5.5", 4, COST, seed=3).to_dict()
    assert a == b and a["attempts"] > a["offlined_blocks"] > 0  # successes and failures


def test_records_as_a_structured_array():
    from memscan.studies import as_array

    cases = [Case("tiny", lambda: memscan.Machine.synthetic("2G", block_size="128M"))]
    recs = tradeoff(cases, levels=(0.0, 1.0), pins=(0.0, 1e-3), request_fraction=0.25)
    a = as_array(recs)
    assert a.shape == (4,) and list(a["machine"]) == ["tiny"] * 4
    for row, r in zip(a, recs):
        assert row["pinned"] == r["pinned"] and row["blocks"] == r["blocks"]
        assert row["drmgr_pre_kernel_ns"] == r["drmgr_pre"]["kernel_ns"]
        assert row["blind_post_met"] == r["blind_post"]["met"]
        assert row["lsmem_pre_struct_pages_read"] == r["lsmem_pre"]["struct_pages_read"]
        p = r["removable_precision"]
        assert (np.isnan(row["removable_precision"]) and p is None) or row[
            "removable_precision"
        ] == p
        assert r["memscan_seconds"] > 0 and row["memscan_seconds"] == r["memscan_seconds"]


def test_progress_bar_counts_records():
    import io
    from unittest import mock

    cases = [Case("tiny", lambda: memscan.Machine.synthetic("1G", block_size="128M"))]
    err = io.StringIO()
    with mock.patch("sys.stderr", err):
        tradeoff(cases, levels=(0.0, 1.0), progress=True)
    final = err.getvalue().rstrip().split("\r")[-1]
    assert final.startswith("tradeoff: 100%") and " 2/2 " in final, final
    err = io.StringIO()
    with mock.patch("sys.stderr", err):
        tradeoff(cases, levels=(0.0,), progress=None)  # not a terminal: quiet
    assert err.getvalue() == ""


def test_dataframe_when_pandas_is_installed_else_a_clear_error():
    import importlib.util

    from memscan.studies import as_array, as_dataframe

    cases = [Case("tiny", lambda: memscan.Machine.synthetic("1G", block_size="128M"))]
    recs = tradeoff(cases, levels=(0.0,))
    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(ImportError, match="pip install pandas"):
            as_dataframe(recs)
    else:
        df = as_dataframe(recs)
        assert list(df.columns) == list(as_array(recs).dtype.names) and len(df) == 1


def test_pins_and_levels_may_be_one_shot_iterables():
    build = lambda: memscan.Machine.synthetic("1G", block_size="128M")  # noqa: E731
    cases = [Case("a", build), Case("b", build)]
    recs = tradeoff(cases, levels=iter((0.0, 1.0)), pins=(p for p in (0.0, 1e-4)))
    want = [(lv, p) for lv in (0.0, 1.0) for p in (0.0, 1e-4)]
    assert [(r["machine"], r["fragmentation"], r["pinned"]) for r in recs] == [
        (c, lv, p) for c in "ab" for lv, p in want
    ]


def test_tradeoff_takes_calibrated_costs_a_seed_and_can_leave_the_seed_machine_out(
    tmp_path, capsys
):
    """`memscan calibrate --json` output feeds `memscan tradeoff --cost`; the constants it
    measured replace the defaults (the modeled lsmem time follows ns_per_syscall)."""
    import json as _json
    import pickle

    from memscan.cli import main
    from memscan.studies.cost import CostModel

    cal = tmp_path / "cal.json"
    cal.write_text(
        _json.dumps(
            {
                "measured": {
                    "ns_per_struct_page": 1.0,
                    "ns_per_page_copy": 100.0,
                    "ns_per_syscall": 1_000_000.0,
                    "machine": "test",
                }
            }
        )
    )
    c = CostModel.from_file(str(cal))
    assert c.ns_per_syscall == 1e6 and c.ns_per_struct_page == 1.0 and "test" in c.source
    args = ["tradeoff", "--synthetic", "4G", "--levels", "0", "--no-seed-machine", "--json"]
    assert main([*args, "--cost", str(cal), "--seed", "5"]) == 0
    slow = _json.loads(capsys.readouterr().out)["records"]
    assert main([*args, "--seed", "5"]) == 0
    fast = _json.loads(capsys.readouterr().out)["records"]
    assert [r["machine"] for r in slow] == ["synthetic 4G/128M"]  # no seed machine
    assert slow[0]["lsmem_pre"]["kernel_ns"] > 20 * fast[0]["lsmem_pre"]["kernel_ns"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"ns_per_syscall": "fast"}')
    assert main([*args, "--cost", str(bad)]) == 2
    assert "not a non-negative number" in capsys.readouterr().err
    # the cases the CLI builds are picklable (a ProcessPoolExecutor can take them)
    import functools

    from memscan import Machine
    from memscan.studies.tradeoff import Case

    pickle.dumps(Case("x", functools.partial(Machine.synthetic, "4G", block_size="128M")))


def test_plot_without_matplotlib_fails_before_the_sweep():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['matplotlib'] = None; from memscan.cli import main; "
        "sys.exit(main(['tradeoff', '--plot', 'x.png']))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pip install 'memscan[plot]'" in r.stderr


def test_killed_runs_save_nothing_and_are_drawn_as_killed(tmp_path, capsys):
    """A drmgr killed by the faulting read (the seed, 5.5+debug) has no saving (None, not
    the kernel time it spent before it died), prints "killed" in the SAVED column, and the
    plot draws it as a cross above the data, never as a point of the saving line; the other
    machine's savings are drawn as shares of the blind agent's time, signs kept."""
    import json as _json

    from memscan.cli import main
    from memscan.studies.tradeoff import plot, saving_share

    args = ["tradeoff", "--synthetic", "4G", "--levels", "0,1"]
    assert main([*args, "--json"]) == 0
    recs = _json.loads(capsys.readouterr().out)["records"]
    seed = [r for r in recs if r["machine"] == "seed"]
    other = [r for r in recs if r["machine"] != "seed"]
    assert seed and all(r["drmgr_killed"] and r["hint_saves_ns"] is None for r in seed)
    assert all(saving_share(r) is None for r in seed)
    assert other and not any(r["drmgr_killed"] for r in other)
    drawn = plot(recs, str(tmp_path / "t.png"))
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert drawn["saving"]["seed"] == []
    assert sorted(drawn["killed"]) == sorted(
        ("seed", r["fragmentation"], r["pinned"]) for r in seed
    )
    name = other[0]["machine"]
    want = [
        (
            r["fragmentation"],
            100
            * (r["blind_post"]["kernel_ns"] - r["drmgr_pre"]["kernel_ns"])
            / r["blind_post"]["kernel_ns"],
        )
        for r in sorted(other, key=lambda r: r["fragmentation"])
    ]
    got = drawn["saving"][name]
    assert [x for x, _, _ in got] == [x for x, _ in want]
    assert [y for _, _, y in got] == pytest.approx([y for _, y in want])
    assert any("killed" in label and label.startswith("seed") for label in drawn["legend"])
    assert main(args) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("seed ")]
    assert len(rows) == 2 and all(" killed " in ln for ln in rows)


def test_tradeoff_studies_workload_presets_instead_of_levels(capsys):
    """--workload runs each case under workload presets instead of the fragmentation ladder:
    the records name their preset, each preset populates as Machine.populate(preset) does, and
    --workload with --levels or --plot is refused before any work."""
    import json as _json

    from memscan.cli import main

    args = ["tradeoff", "--synthetic", "4G", "--no-seed-machine", "--seed", "2"]
    assert main([*args, "--workload", "idle,fragmented", "--json"]) == 0
    recs = _json.loads(capsys.readouterr().out)["records"]
    assert [(r["workload"], r["fragmentation"]) for r in recs] == [
        ("idle", None),
        ("fragmented", None),
    ]
    for r in recs:
        m = memscan.Machine.synthetic("4G", block_size="128M")
        m.populate(r["workload"], seed=2, progress=False)
        assert r["offlineable_blocks"] == sum(
            1 for o in m.offline_many(m.blocks().tolist()) if o.ok
        )
    assert main([*args, "--workload", "idle", "--levels", "0"]) == 2
    assert main([*args, "--workload", "idle", "--plot", "x.png"]) == 2
    assert main([*args, "--workload", "nope"]) == 2
    assert "presets are" in capsys.readouterr().err


def test_the_hint_pays_only_where_drmgr_met_the_request():
    """A drmgr that gave up or fell short spent less kernel time because it did less: no
    break-even there; one that met the request in less time than the blind agent pays."""
    from memscan.studies.tradeoff import break_even, pays

    def rec(level, saves, met, msg=None):
        return {
            "machine": "m",
            "blocks": 32,
            "fragmentation": level,
            "pinned": 0.0,
            "hint_saves_ns": saves,
            "drmgr_pre": {"message": msg, "met": met},
        }

    gave_up = rec(0.25, 9.0, False, "There is not enough removable memory available")
    assert not pays(gave_up) and not pays(rec(0.5, -1.0, True)) and pays(rec(0.75, 2.0, True))
    assert break_even([rec(0.0, -1.0, True), gave_up, rec(0.5, 3.0, True)]) == {"m": 0.5}
    assert break_even([gave_up]) == {"m": None}
