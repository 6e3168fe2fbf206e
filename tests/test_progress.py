"""Long native work reports progress as it goes and stops when the caller's callback fails;
the bar (tqdm) draws only on a terminal."""

from __future__ import annotations

import io

import pytest

import memscan
from memscan.progress import Progress


def test_populate_reports_blocks_done_up_to_the_total():
    m = memscan.Machine.synthetic("64G")
    seen = []
    m._core.populate(memscan.Workload().to_dict(), 1, lambda d, t: seen.append((d, t)))
    assert seen, "no progress reported"
    dones = [d for d, _ in seen]
    assert dones == sorted(dones)
    total = len([b for b in m.blocks().tolist()])
    assert seen[-1] == (total, total)


def test_a_failing_progress_callback_stops_the_work_and_is_raised():
    m = memscan.Machine.synthetic("64G")

    def broken(done, total):
        raise BrokenPipeError("stderr went away")

    with pytest.raises(BrokenPipeError, match="stderr went away"):
        m._core.populate(memscan.Workload().to_dict(), 1, broken)


def test_export_reports_progress(tmp_path):
    m = memscan.Machine.synthetic("16G")
    seen = []
    blocks = [(int(b), "online", "1", "Normal", [0], 0) for b in m.blocks().tolist()]
    root = tmp_path / "t"
    (root / "sys/devices/system/memory").mkdir(parents=True)
    (root / ".memscan-values").mkdir()
    m._core.write_sysfs_tree(
        str(root), m.geometry.block_size, blocks, None, lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (len(blocks), len(blocks))


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_draws_on_a_terminal_only():
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        with Progress(10, "scan", stream=stream) as bar:
            bar.set(5, 10)
            bar.update(5)
            assert bar.done == 10
    final = tty.getvalue().rstrip().split("\r")[-1]
    assert final.startswith("scan: 100%") and " 10/10 " in final, final
    assert pipe.getvalue() == ""
    quiet = Tty()
    with Progress(10, "scan", enabled=False, stream=quiet) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""
