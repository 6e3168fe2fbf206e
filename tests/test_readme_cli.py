"""The README's Python example runs, and the CLI's source options work."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

from memscan.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_example_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert ns["r"].value is None and ns["r"].fault.pfn == 0x3060000
    assert ns["big"].geometry.block_size == 128 << 20
    assert ns["huge"].memory_bytes() == ns["need"]
    assert ns["twin"].shared_bytes() == ns["big"].shared_bytes() > 0


def test_cli_synthetic_arch_and_all(capsys):
    assert (
        main(["report", "--synthetic", "8G", "--arch", "arm64", "--kernel", "5.5", "--json"]) == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert d["arch"] == "arm64" and all(b["removable"] == 0 for b in d["blocks"])  # no HOTREMOVE
    assert (
        main(["report", "--synthetic", "2G", "--block-size", "128M", "-a", "--workload", "idle"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("online") >= 16
    assert main(["report", "--arch", "s390x"]) == 2
    assert "seed machine is x86_64" in capsys.readouterr().err


def test_cli_layout_and_block_size(tmp_path, capsys):
    p = tmp_path / "l.json"
    p.write_text(
        json.dumps(
            {
                "arch": "x86_64",
                "block_size": "256M",
                "ranges": [{"start": "4G", "size": "1G", "kind": "ram"}],
            }
        )
    )
    assert main(["report", "--layout", str(p), "--json", "--workload", "worst-case"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["block_size"] == 256 << 20 and len(d["blocks"]) == 4
    assert all(b["removable"] == 1 for b in d["blocks"])
    assert main(["report", "--block-size", "1G", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    # With 1 GiB blocks the pmem sections 0x60c-0x60f share block 193 with the absent
    # Reserved sections only: no memory193 directory, so nobody reads their struct pages.
    assert d["block_size"] == 1 << 30 and d["faults"] == []
    assert 193 not in [b["block"] for b in d["blocks"]] and 192 in [b["block"] for b in d["blocks"]]


def test_version_has_one_home(capsys):
    """memscan --version, memscan.__version__ and the installed metadata all say Cargo.toml's
    version (pyproject.toml takes it dynamically)."""
    import importlib.metadata

    import pytest

    import memscan

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    installed = importlib.metadata.version("memscan")
    assert (
        capsys.readouterr().out.strip()
        == f"memscan {installed}"
        == f"memscan {memscan.__version__}"
    )
    cargo = (pathlib.Path(__file__).parents[1] / "Cargo.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', cargo, re.M).group(1) == installed


def test_kernels_as_uname_names_them(capsys):
    """`uname -r` strings are read as the profile parser reads versions; a captured machine
    is reported under its own kernel; versions no profile models are refused by name."""
    import pytest

    import memscan

    m = memscan.Machine.seed()
    a = m.scan("5.5.10-200.fc31.x86_64+debug", progress=False)
    b = m.scan("5.5+debug", progress=False)
    assert a.value.tolist() == b.value.tolist() and len(a.faults) == len(b.faults) == 1
    assert m.offline(40, "6.1.0-18-amd64").errno == m.offline(40, "6.1").errno
    with pytest.raises(memscan.ArgumentError, match="5.10.0-28-amd64"):
        m.removable(40, "5.10.0-28-amd64")
    snap = pathlib.Path(__file__).parent / "groundtruth/offline-6.1-debian/snapshot.tar.xz"
    assert main(["report", "--snapshot", str(snap), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kernel"] == "6.1.0-57-cloud-amd64"


def test_every_subcommand_help_has_examples_that_parse():
    """Each subcommand's --help ends with examples, and every memscan command in them parses
    with the real parser (options and arguments exist as written)."""
    import shlex

    from memscan import cli

    p = cli.build_parser()
    for path, lines in cli.EXAMPLES.items():
        for line in lines:
            for part in line.replace("&&", "|").replace("&", "|").split("|"):
                words = shlex.split(part.split("#")[0].split(">")[0])
                if words[:1] == ["sudo"]:
                    words = words[1:]
                if words[:1] != ["memscan"]:
                    continue
                p.parse_args(words[1:])  # exits (SystemExit) on an unknown option
        q = subprocess.run(
            [sys.executable, "-m", "memscan", *path, "--help"], capture_output=True, text=True
        )
        assert q.returncode == 0 and "examples:" in q.stdout, path
