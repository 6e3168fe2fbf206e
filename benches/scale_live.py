"""Real lsmem over the live sysfs against lsmem over an exported tree on tmpfs, in one run,
and the live view's startup. Needs what tests/test_live.py needs (root, /dev/fuse, mfusepy).
Run: python benches/scale_live.py [SIZE] [BLOCK_SIZE]"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import memscan
from memscan import live


def main(size="1T", block_size="128M"):
    m = memscan.Machine.synthetic(size, block_size=block_size)
    print(f"{len(m.blocks())} blocks; load average {os.getloadavg()[0]:.2f}")
    d = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        m.export_sysfs(d, kernel="6.1")
        t = time.perf_counter()
        subprocess.run(["lsmem", "--sysroot", d, "-a"], capture_output=True, check=True)
        exported = time.perf_counter() - t
    finally:
        shutil.rmtree(d)
    t = time.perf_counter()
    live.run(m, "6.1", ["true"])
    startup = time.perf_counter() - t
    t = time.perf_counter()
    r = live.run(m, "6.1", ["lsmem", "-a"])
    lived = time.perf_counter() - t
    assert r["returncode"] == 0
    print(
        f"lsmem over an export {exported:.2f} s, over the live view {lived:.2f} s "
        f"(ratio {lived / exported:.1f}); live mount + sandbox + teardown {startup:.2f} s"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
