"""Export a 32 TiB tree (256 MiB blocks, 131,072 blocks) and time real lsmem reading it.
Run: python benches/scale_sysfs_32t.py [DIR]"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import memscan


def main(root: str = "") -> None:
    # tmpfs by default, so the figures are of memscan and lsmem, not of the disk
    root = root or tempfile.mkdtemp(
        prefix="memscan-32t-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    m = memscan.Machine.synthetic("32T", block_size="256M")
    t0 = time.perf_counter()
    info = m.export_sysfs(root, kernel="6.1")
    t1 = time.perf_counter()
    out = subprocess.run(
        ["lsmem", "--sysroot", root], check=True, capture_output=True, text=True
    ).stdout
    t2 = time.perf_counter()
    print(f"32T: {info['blocks']} blocks; export {t1 - t0:.2f}s, lsmem {t2 - t1:.2f}s")
    print(out)
    shutil.rmtree(root)


if __name__ == "__main__":
    main(*sys.argv[1:])
