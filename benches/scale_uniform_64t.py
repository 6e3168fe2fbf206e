"""64 TiB with every page LRU, kept uniform (each block set whole, so sections stay compact):
the pre-patch (5.5) removable scan of every block, and the struct pages it reads.
Run: python benches/scale_uniform_64t.py [SIZE]"""

from __future__ import annotations

import os
import sys
import time

import memscan


def main(size: str = "64T") -> None:
    m = memscan.Machine.synthetic(size)
    ppb = m.geometry.pages_per_block
    for b in m.blocks():
        m.set_pages(int(b) * ppb, ppb, memscan.PageKind.LRU)
    t = time.perf_counter()
    r = m.scan("5.5", progress=False)
    dt = time.perf_counter() - t
    print(
        f"{size} every page LRU, uniform: 5.5 scan {dt:.2f}s, "
        f"struct pages read {int(r.struct_pages_read.sum()):,}; load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
