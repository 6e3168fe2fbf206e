"""Read-only snapshots of the live machine, and models built from them."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

import memscan
from memscan.cli import main
from memscan.errors import ParseError
from memscan.sources.snapshot import capture, parse_buddyinfo, parse_zoneinfo

KPF_READABLE = os.access("/proc/kpageflags", os.R_OK)
needs_kpf = pytest.mark.skipif(
    not KPF_READABLE, reason="/proc/kpageflags is not readable here (needs root)"
)


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    out = tmp_path_factory.mktemp("snap") / "live.tar.gz"
    meta = capture(out, progress=False)
    return out, meta


def test_capture_is_one_file_with_what_was_read(snap):
    out, meta = snap
    with tarfile.open(out) as t:
        names = set(t.getnames())
    for n in (
        "proc/iomem",
        "proc/zoneinfo",
        "proc/buddyinfo",
        "meta.json",
        "sys/devices/system/memory/block_size_bytes",
    ):
        assert n in names
    assert meta["page_size"] == os.sysconf("SC_PAGE_SIZE")
    if KPF_READABLE:
        assert "proc/kpageflags" in names and not meta["missing"]
    else:
        assert any("kpageflags" in x for x in meta["missing"])


@needs_kpf
def test_model_from_live_snapshot(snap):
    out, _ = snap
    m = memscan.Machine.from_snapshot(out)
    info = m.snapshot_info
    k = info["kpageflags"]
    assert k["pages"] == m.geometry.max_pfn or k["pages"] > 0
    # the kernel's own free-block counts and the ones read back from kpageflags agree closely
    # (not exactly: pages move between the two reads, and per-CPU pages are in neither)
    assert info["buddyinfo"]["agreement"] > 0.8
    zones = {z[1] for z in m.zones()}
    assert "Normal" in zones or "DMA32" in zones
    s = m.scan("5.5", progress=False)
    assert len(s) == len(m.blocks()) and s.faults == []
    assert m.scan("6.1", progress=False).value.min() == 1


@needs_kpf
def test_report_live_runs(capsys):
    """report --live models this machine's own kernel (uname -r) where a profile models it,
    and otherwise says so and asks for --kernel (it never silently models another)."""
    import platform

    from memscan import Machine

    release = platform.release()
    try:
        Machine.seed().scan(release, blocks=[], progress=False)
        modeled = True
    except memscan.ArgumentError:
        modeled = False
    rc = main(["report", "--live", "--json"])
    if not modeled:
        assert rc == 2
        err = capsys.readouterr().err
        assert release in err and "--kernel" in err
    else:
        assert rc == 0
        assert json.loads(capsys.readouterr().out)["kernel"] == release
    assert main(["report", "--live", "--json", "--kernel", "6.1"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["extra"]["snapshot"]["kpageflags"]["pages"] > 0
    assert d["workload"] == "none" and d["kernel"] == "6.1"
    assert main(["report", "--live", "--kernel", "5.5"]) == 0
    assert "uncertain: kpagecount is the map count" in capsys.readouterr().out


def test_parsers():
    z = parse_zoneinfo(
        "Node 0, zone      DMA\n  pages free 5\n        spanned  4095\n  start_pfn:           1\n"
        "Node 0, zone   Movable\n        spanned  0\n"
    )
    assert z == [(0, "DMA", 1, 4096)]
    with pytest.raises(ParseError, match="not a number"):
        parse_zoneinfo("Node 0, zone DMA\n  spanned  x\n")
    with pytest.raises(ParseError, match="no zone"):
        parse_zoneinfo("nothing here\n")
    assert parse_buddyinfo("Node 0, zone DMA 1 2 3\nNode 0, zone Normal 1 1 1\n") == [2, 3, 4]


def _tar(path, members):
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_bad_snapshots(tmp_path):
    with pytest.raises(ParseError, match="not a readable snapshot"):
        junk = tmp_path / "junk"
        junk.write_bytes(b"zz")
        memscan.Machine.from_snapshot(junk)
    with pytest.raises(ParseError, match="meta.json is missing"):
        memscan.Machine.from_snapshot(_tar(tmp_path / "a.tgz", {"proc/iomem": b""}))
    # compressed snapshots are decompressed once before reading (open_tar): a truncated
    # stream is refused by name, for xz as for gzip
    import gzip
    import lzma

    whole = (tmp_path / "a.tgz").read_bytes()
    xz = lzma.compress(gzip.decompress(whole))
    for name, data in (("t.tar.xz", xz[: len(xz) // 2]), ("t.tgz", whole[: len(whole) // 2])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ParseError, match=f"{name}: not a readable snapshot"):
            memscan.Machine.from_snapshot(tmp_path / name)
    meta = json.dumps({"arch": "x86_64", "page_size": 4096}).encode()
    with pytest.raises(ParseError, match="proc/iomem is missing"):
        memscan.Machine.from_snapshot(_tar(tmp_path / "b.tgz", {"meta.json": meta}))
    with pytest.raises(ParseError, match="outside the archive"):
        memscan.Machine.from_snapshot(_tar(tmp_path / "c.tgz", {"meta.json": meta, "../x": b""}))
