"""The trade-off study on the seed machine, one fragmentation level (memscan's own run time)."""

from __future__ import annotations

import memscan
from memscan.studies import Case, tradeoff


def test_tradeoff_seed_one_level(benchmark):
    benchmark.group = "tradeoff study"
    recs = benchmark.pedantic(
        lambda: tradeoff([Case("seed", memscan.Machine.seed)], levels=(0.5,)), rounds=1
    )
    assert len(recs) == 1 and recs[0]["blocks"] == 96
