"""Dry-run offline prediction of every block vs the pre-patch removable scan, same layout
(1 TiB fragmented, 2 GiB blocks). Compare the time ratio with the ratio of struct pages read:
``pytest benches/bench_offline.py --benchmark-enable``."""

from __future__ import annotations

import pytest

import memscan


@pytest.fixture(scope="module")
def tib():
    return memscan.Machine.synthetic("1T", block_size="2G").populate("fragmented", seed=1)


def test_scan_1t_fragmented(benchmark, tib):
    benchmark.group = "1 TiB fragmented: scan vs offline prediction"
    s = benchmark(tib.scan, "5.5", None, False, False)
    benchmark.extra_info["struct_pages_read"] = s.total()


@pytest.mark.parametrize("kernel", ["5.5", "6.1"])
def test_offline_prediction_1t_fragmented(benchmark, tib, kernel):
    benchmark.group = "1 TiB fragmented: scan vs offline prediction"
    outs = benchmark(tib.offline_many, None, kernel)
    assert len(outs) == 512
    benchmark.extra_info["struct_pages_read"] = sum(o.struct_pages_read for o in outs)
