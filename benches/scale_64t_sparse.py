"""64 TiB sparse: one memory block in eight populated (issue 15 item 5): build, populate the
chosen blocks ("idle"), full pre-patch scan. Prints wall times, peak RSS and the model's
bytes, with the load average. Run: python benches/scale_64t_sparse.py [SIZE] [EVERY]
(target at 64T, every 8: < 60 s and < 4 GiB)."""

from __future__ import annotations

import os
import resource
import sys
import time

import memscan


def main(total: str = "64T", every: str = "8") -> None:
    t0 = time.perf_counter()
    m = memscan.Machine.synthetic(total, block_size="256M")
    t1 = time.perf_counter()
    chosen = m.blocks()[:: int(every)]
    m.populate("idle", seed=1, progress=False, blocks=chosen)
    t2 = time.perf_counter()
    s = m.scan("5.5", parallel=False, progress=False)
    t3 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    print(
        f"{total}, 1 block in {every} populated ({len(chosen)} of {len(s)}): build "
        f"{t1 - t0:.2f}s, populate {t2 - t1:.2f}s, scan {t3 - t2:.2f}s, total {t3 - t0:.2f}s; "
        f"peak RSS {rss:.2f} GiB; model bytes {m.memory_bytes() / (1 << 30):.2f} GiB; "
        f"struct pages read {s.total():,}; load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
