"""Populate against memory speed: build a synthetic machine, populate it ("idle" by default),
and in the same run write the same number of bytes once into fresh memory (numpy: allocate and
fill, first-touch page faults included, as populate pays them). Prints both times and their
ratio, with the load average. Run: python benches/scale_populate.py [SIZE] [PRESET]
(issue 15's target at 32T: populate within 2x of the single write)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import memscan


def write_once(nbytes: int) -> float:
    t0 = time.perf_counter()
    a = np.empty(nbytes, dtype=np.uint8)
    a.fill(0x11)
    t = time.perf_counter() - t0
    del a
    return t


def main(total: str = "4T", preset: str = "idle") -> None:
    m = memscan.Machine.synthetic(total, block_size="256M")
    need = m.memory_bytes(after_populate=True) - m.memory_bytes()
    t0 = time.perf_counter()
    m.populate(preset, seed=1, progress=False)
    pop = time.perf_counter() - t0
    del m
    once = write_once(need)
    print(
        f"{total} {preset}: populate {pop:.2f}s; writing its {need / (1 << 30):.2f} GiB of page "
        f"bytes once {once:.2f}s; ratio {pop / once:.2f}x; load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
