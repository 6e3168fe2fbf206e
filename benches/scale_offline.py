"""One offline attempt's cost against machine size: dry runs and commits of the top 40
blocks (2 GiB blocks, movable-node workload) at 1, 4 and 16 TiB. Flat figures mean an attempt
costs its block, not the machine (the migration-target search continues across commits).
Run: python benches/scale_offline.py [SIZES...]"""

from __future__ import annotations

import os
import sys
import time

import memscan


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


if __name__ == "__main__":
    main(sys.argv[1:] or ["1T", "4T", "16T"])
