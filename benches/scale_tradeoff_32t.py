"""The trade-off study on a 32 TiB layout (256 MiB blocks), one fragmentation level.
Prints memscan's own run time and the modeled figures. Run: python benches/scale_tradeoff_32t.py"""

from __future__ import annotations

import resource
import sys
import time

import memscan
from memscan.studies import Case, tradeoff


def main(level: str = "0.5") -> None:
    case = Case("synthetic 32T/256M", lambda: memscan.Machine.synthetic("32T", block_size="256M"))
    t = time.perf_counter()
    (r,) = tradeoff([case], levels=(float(level),), request_fraction=0.001, progress=None)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    print(f"32T level {level}: memscan run time {dt:.1f}s, peak RSS {rss:.1f} GiB")
    print(
        f"  lsmem pre-patch: {r['lsmem_pre']['struct_pages_read']:,} struct pages, {r['lsmem_pre']['kernel_ns'] / 1e9:.2f} s kernel"
    )
    for k in ("drmgr_pre", "blind_post", "chmem_post"):
        c = r[k]
        print(
            f"  {k}: attempts {c['attempts']}, met {c['met']}, kernel {c['kernel_ns'] / 1e9:.2f} s, failures {c['failures']}"
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
