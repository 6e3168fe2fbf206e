"""pytest-benchmark benches of the removable scan, grouped by size (2**12 .. 2**28 pages).

Normal test runs execute each once as a smoke test (--benchmark-disable); measure with
``pytest benches --benchmark-enable``. Ratios for the closing notes come from one run:
worst-case scan vs numpy.count_nonzero over the same bytes; core vs reference model; the
worst-case scan serial vs parallel (rayon).
"""

from __future__ import annotations

import numpy as np
import pytest

import memscan
from memscan import reference

SIZES = [12, 16, 20, 24, 28]


def machine(log_pages: int, preset: str) -> memscan.Machine:
    pages = 1 << log_pages
    start = 4 << 30
    layout = {
        "arch": "x86_64",
        "block_size": "128M",
        "ranges": [{"start": start, "size": pages * 4096, "kind": "ram"}],
    }
    m = memscan.Machine.from_layout(layout)
    return m.populate(preset, seed=1)


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"2**{s}")
def worst(request):
    return request.param, machine(request.param, "worst-case")


def test_scan_worst_case(benchmark, worst):
    log_pages, m = worst
    benchmark.group = f"worst-case 2**{log_pages} pages"
    s = benchmark(m.scan, "5.5", None, False, False)
    assert (s.value == 1).all()
    assert s.total() >= 1 << log_pages


def test_scan_worst_case_parallel(benchmark, worst):
    """The same scan split over rayon's threads (2**28 pages is the 1 TiB worst case)."""
    log_pages, m = worst
    benchmark.group = f"worst-case 2**{log_pages} pages"
    s = benchmark(m.scan, "5.5", None, True, False)
    serial = m.scan("5.5", None, False, False)
    assert (s.value == serial.value).all() and s.total() == serial.total()


def test_count_nonzero_same_bytes(benchmark, worst):
    log_pages, m = worst
    benchmark.group = f"worst-case 2**{log_pages} pages"
    views = [m.pages(int(b)) for b in m.blocks()]
    n = benchmark(lambda: sum(np.count_nonzero(v) for v in views))
    assert n >= 1 << log_pages


@pytest.mark.parametrize("log_pages", [16, 20, 24])
def test_scan_fragmented(benchmark, log_pages):
    m = machine(log_pages, "fragmented")
    benchmark.group = f"fragmented 2**{log_pages} pages"
    benchmark(m.scan, "5.5", None, False, False)


def test_reference_model_2_20(benchmark):
    m = machine(20, "worst-case")
    benchmark.group = "core vs reference 2**20 pages"
    snap = reference.Snapshot.of(m)
    prof = reference.Profile.parse("5.5", "x86_64")
    blocks = m.blocks().tolist()
    vals = benchmark.pedantic(
        lambda: [reference.Reference(snap, prof).removable_show(b).value for b in blocks],
        rounds=1,
        iterations=1,
    )
    assert vals == [1] * len(blocks)


def test_core_2_20(benchmark):
    m = machine(20, "worst-case")
    benchmark.group = "core vs reference 2**20 pages"
    benchmark(m.scan, "5.5", None, False, False)


@pytest.fixture(scope="module")
def uniform_and_dense_4t():
    """4 TiB with every page LRU: kept uniform (compact sections) and the same bytes dense
    for comparison (a 2**30-page scan each)."""
    out = {}
    for form in ("uniform", "dense"):
        m = memscan.Machine.synthetic("4T")
        ppb = m.geometry.pages_per_block
        for b in m.blocks():
            if form == "dense":
                m.write_pages(int(b) * ppb, np.full(ppb, int(memscan.PageKind.LRU), np.uint8))
            else:
                m.set_pages(int(b) * ppb, ppb, memscan.PageKind.LRU)
        out[form] = m
    return out


@pytest.mark.parametrize("form", ["uniform", "dense"])
def test_scan_4t_every_page_lru(benchmark, uniform_and_dense_4t, form):
    """A uniform section is tested in O(1) with the page-by-page reads (it was page by page:
    8 TiB took 5.2 s, now 0.09 s); compare with the dense row."""
    benchmark.group = "4T every page LRU: uniform vs dense"
    m = uniform_and_dense_4t[form]
    s = benchmark.pedantic(m.scan, args=("5.5", None, False, False), rounds=3)
    assert int(s.value.sum()) == len(s.value)
