"""One dry-run offline attempt on 32 TiB (256 MiB blocks, fragmentation 0.5): 3,000 blocks in
a fixed random order, each `m.offline(b, "5.6")` timed, averaged per outcome (an attempt that
would succeed plans its migration; one that fails stops at isolation). Dry runs change nothing,
so the blocks that would succeed are timed again in 7 more passes, and the median and fastest
pass are printed too (this shared machine's noise moves single passes by 30% or more).
Run: python benches/scale_dry_run_32t.py [SIZE]"""

from __future__ import annotations

import os
import random
import sys
import time

import memscan
from memscan.studies.tradeoff import fragmentation_workload


def main(size: str = "32T") -> None:
    m = memscan.Machine.synthetic(size, block_size="256M")
    m.populate(fragmentation_workload(0.5), seed=1)
    ids = [int(b) for b in m.blocks()]
    random.Random(5).shuffle(ids)
    spent = {True: [0.0, 0], False: [0.0, 0]}
    for b in ids[:3000]:
        t = time.perf_counter()
        ok = m.offline(b, "5.6").ok
        spent[ok][0] += time.perf_counter() - t
        spent[ok][1] += 1
    (ts, ns), (tf, nf) = spent[True], spent[False]
    good = [b for b in ids[:3000] if m.offline(b, "5.6").ok]
    passes = []
    for _ in range(7):
        t = time.perf_counter()
        for b in good:
            m.offline(b, "5.6")
        passes.append((time.perf_counter() - t) / max(len(good), 1) * 1e3)
    passes.sort()
    print(
        f"{size}/256M dry run: would succeed {ts / max(ns, 1) * 1e3:.3f} ms ({ns}; again: "
        f"median {passes[3]:.3f} ms, fastest {passes[0]:.3f} ms), "
        f"fails {tf / max(nf, 1) * 1e3:.3f} ms ({nf}); load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
