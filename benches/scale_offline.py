"""One offline attempt's cost against machine size: dry runs and commits of the top 40
blocks (2 GiB blocks, movable-node workload) at 1, 4 and 16 TiB. Flat figures mean an attempt
costs its block, not the machine (the migration-target search continues across commits).
Then the trade-off clients' pattern: real attempts at blocks in random order over a
fragmented machine (256 MiB blocks, fragmentation 0.5), most failing, until 60 are applied;
the applied ones migrate into low memory, so an attempt that re-read the machine from its
start would grow with the attempts made. Run: python benches/scale_offline.py [SIZES...]"""

from __future__ import annotations

import os
import random
import sys
import time

import memscan
from memscan.studies.tradeoff import fragmentation_workload


def main(sizes):
    print(f"load average {os.getloadavg()[0]:.2f}")
    for size in sizes:
        m = memscan.Machine.synthetic(size, block_size="2G").populate("movable-node", seed=1)
        ids = [int(b) for b in m.blocks()][-40:]
        t = time.perf_counter()
        for b in ids:
            m.offline(b, "6.1")
        dry = (time.perf_counter() - t) / len(ids)
        t = time.perf_counter()
        applied = sum(m.offline(b, "6.1", dry_run=False).applied for b in reversed(ids))
        commit = (time.perf_counter() - t) / len(ids)
        print(
            f"{size}: dry run {dry * 1e3:.2f} ms, commit {commit * 1e3:.2f} ms per attempt "
            f"({applied}/{len(ids)} applied)",
            flush=True,
        )
        del m
    for size in sizes:
        m = memscan.Machine.synthetic(size, block_size="256M")
        m.populate(fragmentation_workload(0.5), seed=1)
        ids = [int(b) for b in m.blocks()]
        random.Random(2).shuffle(ids)
        spent = {True: [0.0, 0], False: [0.0, 0]}
        for b in ids:
            t = time.perf_counter()
            ok = m.offline(b, "5.6", dry_run=False).applied
            spent[ok][0] += time.perf_counter() - t
            spent[ok][1] += 1
            if spent[True][1] == 60:
                break
        (ta, na), (tf, nf) = spent[True], spent[False]
        print(
            f"{size} shuffled: applied {ta / max(na, 1) * 1e3:.2f} ms ({na}), "
            f"failed {tf / max(nf, 1) * 1e3:.3f} ms ({nf}) per attempt",
            flush=True,
        )
        del m


if __name__ == "__main__":
    main(sys.argv[1:] or ["1T", "4T", "16T"])
