"""A 32 TiB synthetic layout with 256 MiB blocks (131,072 blocks): build, populate with the
idle preset, scan. Prints wall times and peak RSS. Run: python benches/scale_32t.py"""

from __future__ import annotations

import resource
import sys
import time

import memscan


def main(total: str = "32T") -> None:
    t0 = time.perf_counter()
    m = memscan.Machine.synthetic(total, block_size="256M")
    t1 = time.perf_counter()
    m.populate("idle", seed=1)
    t2 = time.perf_counter()
    s = m.scan("5.5", parallel=False, progress=False)
    t3 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    print(
        f"{total}: blocks {len(s)}; build {t1 - t0:.2f}s, populate {t2 - t1:.2f}s, scan {t3 - t2:.2f}s, "
        f"total {t3 - t0:.2f}s; peak RSS {rss:.2f} GiB; model bytes {m.memory_bytes() / (1 << 30):.2f} GiB; "
        f"struct pages read {s.total():,}; removable yes {(s.value == 1).sum()}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
