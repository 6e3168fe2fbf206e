from __future__ import annotations

import os

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

import memscan

# hypothesis keeps its example database and caches outside the checkout, so the suite runs
# from a read-only copy (and leaves no .hypothesis/ behind)
set_hypothesis_home_dir(
    os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "memscan",
        "hypothesis",
    )
)

GIB = 1 << 30
MIB = 1 << 20
PAGE = 4096


def tiny(
    ranges=None,
    zones=None,
    block_size="128M",
    offline_blocks=(),
    hstates=(),
    arch="x86_64",
    **extra,
):
    """A small x86 machine: 256 MiB of RAM at 4 GiB (sections 0x20, 0x21; blocks 32, 33)."""
    d = {
        "arch": arch,
        "block_size": block_size,
        "ranges": ranges
        if ranges is not None
        else [{"start": 4 * GIB, "size": "256M", "kind": "ram"}],
        "offline_blocks": list(offline_blocks),
        "hstates": [list(h) for h in hstates],
    }
    if zones is not None:
        d["zones"] = zones
    d.update(extra)
    return memscan.Machine.from_layout(d)


PFN0 = (4 * GIB) // PAGE  # first pfn of the tiny machine (0x100000)


@pytest.fixture
def m():
    return tiny()


@pytest.fixture(scope="session")
def seed():
    return memscan.Machine.seed()
